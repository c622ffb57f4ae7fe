"""The bad-input corpus runs against one real stack (Azurite, both emulators, devhost): every
hostile input must end cleanly (a 4xx problem with our own words, a rejection with a reason, a
dead letter with a reason) and leave the stack serving good work."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import App, call, delivery, start_stack

# What a parser, a runtime or a stack trace says; never what a caller should read.
LEAKS = re.compile(r"Traceback|File \"|Error\b|Exception|Expecting value|codec can't|recursion|"
                   r"Exceeds the limit|line \d+ column \d+ \(char", re.IGNORECASE)


@pytest.fixture(scope="package")
def app() -> Iterator[App]:
    stack = start_stack(JOIN_TIMEOUT_SECONDS="60")
    try:
        yield App(stack)
    finally:
        stack.stop()


def assert_clean_refusal(code: int, body: Any, headers: dict[str, str], statuses: tuple[int, ...] = ()) -> None:
    """A 4xx (or one of ``statuses``), ``application/problem+json``, in our own words."""
    assert code < 500, (code, body)
    if statuses:
        assert code in statuses, (code, body)
    if code >= 400:
        assert headers.get("Content-Type", "").startswith("application/problem+json"), (code, headers, body)
        assert isinstance(body, dict) and body.get("status") == code, body
        leaked = LEAKS.search(str(body.get("detail", "")) + str(body.get("title", "")))
        assert leaked is None, f"problem leaks {leaked.group(0)!r}: {body}"


def still_serving(app: App) -> None:
    """A good delivery still ships end to end."""
    body = delivery()
    code, answer, _ = app.submit(body)
    assert code == 202, answer
    assert app.wait_final(body["deliveryId"], timeout=180)["status"] == "Shipped"


def wait_for(predicate: Any, what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


__all__ = ["App", "assert_clean_refusal", "call", "delivery", "still_serving", "wait_for"]
