"""Shared fixtures: seed reference data, a fixed clock, sample-file paths."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from file_pipeline.domain.reference import ReferenceData

DATA = Path(__file__).parent / "data"
# Friday 2026-11-20, 10:00 in Frankfurt, 04:00 in New York: before every cut-off.
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
UPDATE_GOLDEN = os.environ.get("UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="session")
def ref() -> ReferenceData:
    return ReferenceData.seed()


@pytest.fixture
def now() -> datetime:
    return NOW


def data_bytes(name: str) -> bytes:
    return (DATA / name).read_bytes()


def data_stream(name: str) -> io.BytesIO:
    return io.BytesIO(data_bytes(name))


def assert_golden(produced: bytes, name: str) -> None:
    """Compare with ``data/<name>``; ``UPDATE_GOLDEN=1`` rewrites the golden file."""
    path = DATA / name
    if UPDATE_GOLDEN or not path.exists():
        path.write_bytes(produced)
        if not UPDATE_GOLDEN:
            pytest.fail(f"golden file {name} did not exist; written, review and re-run")
    assert produced.decode("utf-8") == path.read_text(encoding="utf-8")
