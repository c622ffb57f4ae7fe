"""Drone Scheduler's own message: a retry it schedules for itself. What it says to other
services is in :mod:`contracts.deliveries`."""

from __future__ import annotations

from pydantic import AwareDatetime

from choreography.contracts import Contract, DeliveryId


class RetryDroneScheduling(Contract):
    """Drone Scheduler's note to itself, scheduled for later: no drone was free just now."""

    TYPE = "RetryDroneScheduling"

    delivery_id: DeliveryId
    weight: float
    deadline: AwareDatetime
    attempt: int
    waiting_since: AwareDatetime | None = None  # when it joined the waiting list
