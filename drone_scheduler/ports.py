"""Drone Scheduler's storage port: the fleet, guarded by optimistic concurrency."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from .domain import Booking, Drone, Waiter


class BookingChanged(Exception):
    """The delivery's booking is not as it was read (or was created since it was read as absent):
    read it again. Nothing was written."""


class DroneFleet(Protocol):
    def drones(self) -> list[Drone]:
        """Every drone, each with the ``version`` it was read at."""
        ...

    def drone(self, drone_id: str) -> Drone | None:
        """One drone as stored now (a point read), or None when the fleet has no such drone."""
        ...

    def booking(self, delivery_id: str) -> Booking | None:
        """``delivery_id``'s booking as stored now (a point read), or None when it has none."""
        ...

    def try_assign(self, drone: Drone, delivery_id: str, booking: Booking | None) -> Drone | None:
        """In one transaction: give ``drone`` to ``delivery_id`` and add it to the delivery's
        booking, read as ``booking`` (None: it had none). Nothing is written unless both are
        unchanged since they were read. The updated drone; None when the drone changed (someone
        else got there first: so no drone is ever assigned twice); BookingChanged when the
        booking did."""
        ...

    def try_close(self, delivery_id: str, booking: Booking | None) -> bool:
        """Close the delivery's booking, read as ``booking`` (None: it had none), if unchanged
        since read: no drone is to be assigned to it any more. False when it changed."""
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
