"""Polling against a generous deadline: tests finish as soon as the condition holds and never
assert how long something took."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

DEADLINE = 60.0  # seconds


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = DEADLINE, interval: float = 0.05) -> Any:
    """The first truthy value of ``predicate()``; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
