"""Drone Scheduler's storage port: the fleet, guarded by optimistic concurrency."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from .domain import Drone, Waiter


class DroneFleet(Protocol):
    def drones(self) -> list[Drone]:
        """Every drone, each with the ``version`` it was read at."""
        ...

    def held_by(self, delivery_id: str) -> list[Drone]:
        """The drones assigned to ``delivery_id`` now (read from storage, never remembered)."""
        ...

    def try_assign(self, drone: Drone, delivery_id: str) -> Drone | None:
        """Give ``drone`` to ``delivery_id`` if it has not changed since it was read (so no drone
        is ever assigned twice); the updated drone, or None when someone else got there first."""
        ...

    def try_release(self, drone: Drone) -> Drone | None:
        """Return ``drone`` to the pool (no longer wanted) if unchanged since read; the updated
        drone or None."""
        ...

    def try_want(self, drone: Drone) -> Drone | None:
        """Mark ``drone`` wanted by a waiting delivery if unchanged since read; the updated drone
        or None. Assignments keep the mark; a release clears it."""
        ...

    def wait(self, waiter: Waiter) -> None:
        """Put ``waiter`` on the waiting list, unclaimed (again: no change but the claim)."""
        ...

    def waiters(self) -> list[Waiter]:
        """The waiting list, each with the ``version`` it was read at."""
        ...

    def waiter(self, delivery_id: str) -> Waiter | None:
        """``delivery_id``'s place on the waiting list, if it has one."""
        ...

    def try_claim(self, waiter: Waiter, at: datetime) -> Waiter | None:
        """Claim ``waiter`` (to give it a drone) if unchanged since read; the claimed waiter, or
        None when someone else changed or removed it first."""
        ...

    def stop_waiting(self, delivery_id: str) -> None:
        """Take ``delivery_id`` off the waiting list, if it is on it."""
        ...

    def add(self, drone: Drone) -> bool:
        """Add a drone to the fleet unless one with that id exists; True if added."""
        ...

    def close(self, delivery_id: str, at: datetime) -> None:
        """Remember that ``delivery_id`` is over: no drone is to be scheduled for it any more."""
        ...

    def is_closed(self, delivery_id: str) -> bool:
        ...
