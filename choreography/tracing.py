"""W3C Trace Context ``traceparent`` values: one trace per delivery request, one span per hop."""

from __future__ import annotations

import re
import secrets

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def new_traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def child_traceparent(parent: str | None) -> str:
    """A new span in ``parent``'s trace; a new trace when ``parent`` is absent or not valid."""
    match = _TRACEPARENT.match((parent or "").strip().lower())
    if not match or match.group(1) == "0" * 32:
        return new_traceparent()
    return f"00-{match.group(1)}-{secrets.token_hex(8)}-{match.group(3)}"


def trace_id(traceparent: str) -> str | None:
    match = _TRACEPARENT.match(traceparent.strip().lower())
    return match.group(1) if match else None
