"""Retrying later: the one backoff every service uses when it schedules another try of a step
(a scheduled message, never a sleep), so a short outage does not use up a message's deliveries."""

from __future__ import annotations

from datetime import timedelta


def retry_delay(attempt: int, base: timedelta, cap: timedelta) -> timedelta:
    """Exponential backoff: base, 2·base, 4·base, ... never more than ``cap``."""
    return min(base * (1 << min(attempt, 32)), cap)
