"""Drone Scheduler's contracts: events it publishes and commands it executes."""

from __future__ import annotations

from pydantic import AwareDatetime

from choreography.contracts import Contract, DeliveryId
from choreography.keys import TableKey
from choreography.reason_codes import ReasonCode


class DroneScheduled(Contract):
    TYPE = "DroneScheduled"

    delivery_id: DeliveryId
    drone_id: TableKey
    capacity_kg: float
    queued_seconds: float | None = None  # how long the delivery waited for a drone, if it did


class DroneUnavailable(Contract):
    TYPE = "DroneUnavailable"

    delivery_id: DeliveryId
    reason: ReasonCode
    description: str = ""


class RetryDroneScheduling(Contract):
    """Drone Scheduler's note to itself, scheduled for later: no drone was free just now."""

    TYPE = "RetryDroneScheduling"

    delivery_id: DeliveryId
    weight: float
    deadline: AwareDatetime
    attempt: int
    waiting_since: AwareDatetime | None = None  # when it joined the waiting list


class ReleaseDrone(Contract):
    """The delivery ended (shipped or cancelled): return its drone to the pool. ``droneId`` is
    absent when the delivery was cancelled before a drone was known; the scheduler then also
    stops scheduling for that delivery."""

    TYPE = "ReleaseDrone"

    delivery_id: DeliveryId
    drone_id: TableKey | None = None
    reason: ReasonCode | None = None


class DroneReleased(Contract):
    TYPE = "DroneReleased"

    delivery_id: DeliveryId
    drone_ids: list[str] = []
