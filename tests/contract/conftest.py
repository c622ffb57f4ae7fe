from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def indexed_functions() -> tuple[Any, ...]:
    """``app.get_functions()`` once per process: a second call on the same app raises."""
    import function_app

    return tuple(function_app.app.get_functions())


@pytest.fixture(scope="session")
def functions() -> tuple[Any, ...]:
    return indexed_functions()


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
