"""Drone Scheduler rules: which drone takes a package, and how long to wait when none is free.

The seeded fleet (``python -m drone_scheduler.seed``): five drones, capacities in kilograms

==========  ========
drone       capacity
==========  ========
drone-01    5 kg
drone-02    10 kg
drone-03    20 kg
drone-04    40 kg
drone-05    60 kg
==========  ========

(``--fleet-size N`` repeats that pattern for N drones.) A package heavier than every drone in
the fleet can carry (over 60 kg) can never be delivered: a permanent ``NoDroneCanCarryWeight``.
A package some drone could carry, when none of those is free *right now*, is transient: the
scheduler tries again later with exponential backoff (a scheduled message, never a sleep), and
gives up with ``NoDroneAvailableBeforeDeadline`` once the next attempt would fall after the
delivery's deadline. Among the free drones able to carry it, the smallest is chosen, keeping
the big ones for heavy packages.

Fairness: a delivery that had to wait joins a waiting list (with the time it started waiting)
and marks every drone able to carry it as *wanted*. A wanted drone is never simply freed when
its delivery ends: it goes straight to the delivery that has waited longest among those it can
carry (:func:`first_in_line`), so a request arriving later cannot take it first, and none is
starved by its own backoff. The backoff retries stay, as the safety net after a crash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from choreography.errors import BusinessRuleViolation
from choreography.reason_codes import ReasonCode
from choreography.retry import retry_delay

CAPACITY_PATTERN_KG: tuple[float, ...] = (5.0, 10.0, 20.0, 40.0, 60.0)


@dataclass(frozen=True)
class Drone:
    drone_id: str
    capacity_kg: float
    delivery_id: str | None = None  # None: free
    version: str | None = None  # storage ETag the drone was read with
    wanted: bool = False  # a waiting delivery could use it: on release it is handed over

    @property
    def is_free(self) -> bool:
        return self.delivery_id is None


def default_fleet(size: int = len(CAPACITY_PATTERN_KG)) -> list[Drone]:
    width = max(2, len(str(size)))
    return [Drone(f"drone-{i + 1:0{width}d}", CAPACITY_PATTERN_KG[i % len(CAPACITY_PATTERN_KG)])
            for i in range(size)]


# A claim on a waiter lasts this long: a release hands it a drone within milliseconds, so an
# older claim belongs to a scheduler that crashed mid-way, and the waiter is free to serve again.
CLAIM_TTL = timedelta(seconds=60)


@dataclass(frozen=True)
class Waiter:
    """A delivery waiting for a drone, since it first found none free. Whoever gives it a drone
    (a release handing one over, or its own retry) first *claims* it, ETag-guarded, so two
    schedulers can never both give it one."""

    delivery_id: str
    weight_kg: float
    since: datetime
    deadline: datetime
    claimed_at: datetime | None = field(default=None, compare=False)
    version: str | None = field(default=None, compare=False)  # storage ETag it was read at

    def claimable(self, now: datetime) -> bool:
        return self.claimed_at is None or now - self.claimed_at > CLAIM_TTL


@dataclass(frozen=True)
class Booking:
    """What the scheduler keeps of one delivery, in one record read by a point read: the drones it
    was given (written in the same transaction as each assignment, so it never misses one) or
    that it is closed (it ended before it got a drone: none is to be scheduled for it any more).
    A booking with drones needs no closing: such a delivery is answered with its drone, never
    given another, and the drone entity says whether it still holds it."""

    delivery_id: str
    drone_ids: tuple[str, ...] = ()
    closed: bool = False
    version: str | None = field(default=None, compare=False)  # storage ETag it was read at

    @property
    def settled(self) -> bool:
        """No drone is to be assigned for this delivery: it has one, or it is over."""
        return bool(self.drone_ids) or self.closed


def first_in_line(waiters: Iterable[Waiter], drone: Drone, now: datetime) -> list[Waiter]:
    """Who a freed ``drone`` goes to, in order: the waiters it can carry whose deadline has not
    passed and nobody is serving, longest waiting first (ties by delivery id, so every scheduler
    agrees)."""
    fitting = [w for w in waiters if w.weight_kg <= drone.capacity_kg and w.deadline > now and w.claimable(now)]
    return sorted(fitting, key=lambda w: (w.since, w.delivery_id))


def held_by(fleet: Iterable[Drone], delivery_id: str) -> list[Drone]:
    return [drone for drone in fleet if drone.delivery_id == delivery_id]


def candidates(fleet: Iterable[Drone], weight_kg: float, spread_by: str = "") -> list[Drone]:
    """Free drones able to carry ``weight_kg``, best fit first; may be empty (all busy).
    Raises BusinessRuleViolation when no drone of the fleet could ever carry it.

    Among drones of the same capacity the order depends on ``spread_by`` (the delivery id): the
    same ring of drone ids, entered at a point of the delivery's own. Concurrent schedulers then
    try different drones first instead of all racing for the same one and losing the ETag check
    to each other, at one hash per capacity (not one per drone: fleets have hundreds)."""
    drones = list(fleet)
    capable = [drone for drone in drones if drone.capacity_kg >= weight_kg]
    if not capable:
        heaviest = max((drone.capacity_kg for drone in drones), default=0.0)
        raise BusinessRuleViolation(f"{weight_kg:g} kg is more than any drone in the fleet carries "
                                    f"(at most {heaviest:g} kg)", ReasonCode.NO_DRONE_CAN_CARRY)
    by_capacity: dict[float, list[Drone]] = {}
    for drone in capable:
        if drone.is_free:
            by_capacity.setdefault(drone.capacity_kg, []).append(drone)
    ordered: list[Drone] = []
    for capacity in sorted(by_capacity):
        ring = sorted(by_capacity[capacity], key=lambda d: d.drone_id)
        start = _spread(f"{spread_by}/{capacity:g}", len(ring)) if spread_by else 0
        ordered.extend(ring[start:] + ring[:start])
    return ordered


def _spread(key: str, size: int) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % size


def next_attempt_at(now: datetime, attempt: int, base: timedelta, cap: timedelta, deadline: datetime) -> datetime:
    """When to look for a drone again; BusinessRuleViolation if that is past the deadline."""
    at = now + retry_delay(attempt, base, cap)
    if at > deadline:
        raise BusinessRuleViolation(f"no drone was free before the deadline {deadline.isoformat()} "
                                    f"(after {attempt + 1} attempts)", ReasonCode.NO_DRONE_BEFORE_DEADLINE)
    return at
