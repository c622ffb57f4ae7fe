"""Time as a port, so rules about deadlines and timers are testable without sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, millisecond precision: ``2026-11-22T04:11:00.123Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FixedClock:
    """A clock stopped at one instant: ``PAYMENT_FILES_CLOCK`` (demos and tests judge execution
    dates and cut-offs at a fixed moment), and the tests' clock, moved on by :meth:`advance`."""

    def __init__(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("a clock tells aware instants: give the moment a UTC offset")
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)
