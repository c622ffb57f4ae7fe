from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ops.map import app_functions

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def functions() -> tuple[Any, ...]:
    return app_functions()


@pytest.fixture(scope="session")
def bindings(functions) -> dict[str, list[dict[str, Any]]]:
    """Each function's bindings exactly as the host reads them (function.json)."""
    return {f.get_function_name(): json.loads(f.get_function_json())["bindings"] for f in functions}


@pytest.fixture(scope="session")
def servicebus_config():
    from emulators.servicebus.config import load_config

    return load_config(ROOT / "emulators" / "servicebus" / "config.json")


@pytest.fixture(scope="session")
def raw_servicebus_config() -> dict[str, Any]:
    return json.loads((ROOT / "emulators" / "servicebus" / "config.json").read_text())
