"""Drone Scheduler use cases: schedule a drone for a delivery (or retry later); release it.

Reads per request: the drones already held by the delivery are always read from storage (a
redelivered request must find the drone it got before, whichever instance assigned it), but
the free drones to choose from come from :class:`KnownFleet`, this process's memory of the
fleet, rather than a read of the whole fleet. A choice made from a stale memory fails its ETag
check; and the fleet is read afresh before a request is told to wait for a drone.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from choreography.clock import Clock
from choreography.contracts import Contract, ContractRegistry
from choreography.entities import DELIVERIES_TOPIC, DELIVERY_EVENTS_QUEUE
from choreography.errors import BusinessRuleViolation, PermanentFailure
from choreography.handling import unexpected
from choreography.idempotency import message_id, short_hash
from choreography.messaging import Cause, Incoming, Outgoing, Publisher, Received
from choreography.reason_codes import ReasonCode
from contracts.deliveries import DeliveryRequested, DroneReleased, DroneScheduled, DroneUnavailable, ReleaseDrone

from .domain import Drone, Waiter, candidates, first_in_line, next_attempt_at
from .messages import RetryDroneScheduling
from .ports import DroneFleet

ASSIGN_ROUNDS = 3  # re-read the fleet this many times when racing schedulers take our candidates


def to_delivery(payload: Contract, delivery_id: str, msg_id: str) -> Outgoing:
    return Outgoing(DELIVERY_EVENTS_QUEUE, payload, msg_id, delivery_id, session_id=delivery_id)


class KnownFleet:
    """The fleet as this process last read or wrote it, each drone at the version it saw."""

    def __init__(self) -> None:
        self._drones: dict[str, Drone] | None = None
        self._lock = threading.Lock()

    def drones(self) -> list[Drone] | None:
        """The remembered fleet, or None before the first read."""
        with self._lock:
            return None if self._drones is None else list(self._drones.values())

    def reset(self, drones: list[Drone]) -> list[Drone]:
        with self._lock:
            self._drones = {drone.drone_id: drone for drone in drones}
        return drones

    def update(self, drone: Drone) -> None:
        with self._lock:
            if self._drones is not None:
                self._drones[drone.drone_id] = drone


class DroneSchedulerService:
    def __init__(self, fleet: DroneFleet, publisher: Publisher, clock: Clock, retry_base: timedelta,
                 retry_max: timedelta) -> None:
        self.fleet = fleet
        self.publisher = publisher
        self.clock = clock
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.known = KnownFleet()
        self.requests = SchedulingRequests(self)
        self.releases = ReleaseRequests(self)

    def schedule(self, delivery_id: str, weight_kg: float, deadline: datetime, attempt: int, cause: Cause,
                 waiting_since: datetime | None = None) -> None:
        """Assign a free drone able to carry ``weight_kg`` and say ``DroneScheduled``; if none is
        free, join the waiting list and schedule ``RetryDroneScheduling`` with backoff. Raises
        BusinessRuleViolation when no drone could ever carry it, or none came free before the
        deadline."""
        if attempt > 0 and self.fleet.is_closed(delivery_id):
            self.fleet.stop_waiting(delivery_id)
            return  # the delivery ended (timeout, cancellation) while we were retrying
        mine = self.fleet.held_by(delivery_id)
        if mine:  # a redelivery, a duplicate request, or a drone handed over while we waited
            self._scheduled(mine[0], delivery_id, cause, waiting_since)
            return
        if waiting_since is not None and not self._claim_own_place(delivery_id):
            # A release is handing it a drone right now (its DroneScheduled follows): look later.
            self._retry_later(delivery_id, weight_kg, deadline, attempt, cause, waiting_since)
            return
        for round_ in range(ASSIGN_ROUNDS + 1):
            remembered = self.known.drones() if round_ == 0 else None
            fleet = remembered if remembered is not None else self.known.reset(self.fleet.drones())
            try:
                options = candidates(fleet, weight_kg, spread_by=delivery_id)
            except BusinessRuleViolation:
                if remembered is not None:
                    continue  # judge "no drone can ever carry it" on a fresh read only
                raise
            for drone in options:
                assigned = self.fleet.try_assign(drone, delivery_id)
                if assigned is None:
                    continue  # changed since we saw it: another scheduler took it
                self.known.update(assigned)
                if self.fleet.is_closed(delivery_id):  # called off while we were assigning
                    released = self.fleet.try_release(assigned)
                    if released is not None:
                        self.known.update(released)
                    return
                self._scheduled(assigned, delivery_id, cause, waiting_since)
                return
            if not options and remembered is None:
                break  # a fresh read with no free drone able to carry it: wait
        since = waiting_since or self.clock.now()
        # The retry first: past the deadline it raises (NoDroneAvailableBeforeDeadline) before
        # the delivery joins a waiting list it could never leave by a retry.
        self._retry_later(delivery_id, weight_kg, deadline, attempt, cause, since)
        self._wait(Waiter(delivery_id, weight_kg, since, deadline), fleet)

    def _claim_own_place(self, delivery_id: str) -> bool:
        """A waiter's own retry claims its place before it takes a free drone, as a release does
        before handing one over: so both can never give it a drone. False while someone holds
        the claim (a claim older than ``CLAIM_TTL`` is a crashed scheduler's and is taken over)."""
        place = self.fleet.waiter(delivery_id)
        if place is None:
            return True  # not on the list (any more): nobody else is serving it
        return place.claimable(self.clock.now()) and self.fleet.try_claim(place, self.clock.now()) is not None

    def _retry_later(self, delivery_id: str, weight_kg: float, deadline: datetime, attempt: int, cause: Cause,
                     since: datetime) -> None:
        at = next_attempt_at(self.clock.now(), attempt, self.retry_base, self.retry_max, deadline)
        retry = RetryDroneScheduling(delivery_id=delivery_id, weight=weight_kg, deadline=deadline, attempt=attempt + 1,
                                     waiting_since=since)
        self.publisher.send([Outgoing(DELIVERIES_TOPIC, retry,
                                      message_id("RetryDroneScheduling", delivery_id, str(attempt + 1)),
                                      delivery_id, scheduled_at=at)], cause)

    def _wait(self, waiter: Waiter, fleet: list[Drone]) -> None:
        """Join the waiting list, then mark the drones able to carry it (a release hands a marked
        drone to the longest waiting). In that order: a drone marked before its waiter is listed
        would find nobody at its release and go back to the pool."""
        self.fleet.wait(waiter)
        for drone in fleet:
            if drone.capacity_kg >= waiter.weight_kg and not drone.wanted:
                marked = self.fleet.try_want(drone)
                if marked is not None:  # else it changed meanwhile; the retry looks again
                    self.known.update(marked)

    def _scheduled(self, drone: Drone, delivery_id: str, cause: Cause, waiting_since: datetime | None = None) -> None:
        queued = None
        if waiting_since is not None:
            self.fleet.stop_waiting(delivery_id)
            queued = max((self.clock.now() - waiting_since).total_seconds(), 0.0)
        event = DroneScheduled(delivery_id=delivery_id, drone_id=drone.drone_id, capacity_kg=drone.capacity_kg,
                               queued_seconds=queued)
        self.publisher.send([to_delivery(event, delivery_id, message_id("DroneScheduled", delivery_id))], cause)

    def _hand_over(self, drone: Drone, cause: Cause) -> Drone | None:
        """A wanted drone whose delivery ended goes to the longest waiting delivery it can carry:
        the drone, now theirs, or None when nobody can take it (or it changed meanwhile)."""
        now = self.clock.now()
        for waiter in first_in_line(self.fleet.waiters(), drone, now):
            if self.fleet.is_closed(waiter.delivery_id) or self.fleet.held_by(waiter.delivery_id):
                self.fleet.stop_waiting(waiter.delivery_id)  # over, or served after a crash
                continue
            if self.fleet.try_claim(waiter, now) is None:
                continue  # another scheduler is serving it
            assigned = self.fleet.try_assign(drone, waiter.delivery_id)
            if assigned is None:
                self.fleet.wait(waiter)  # the drone changed meanwhile: the waiter keeps its place
                return None
            self.known.update(assigned)
            self._scheduled(assigned, waiter.delivery_id, cause, waiter.since)
            return assigned
        return None

    def unavailable(self, delivery_id: str, reason: ReasonCode, description: str, cause: Cause) -> None:
        event = DroneUnavailable(delivery_id=delivery_id, reason=reason, description=description)
        self.publisher.send([to_delivery(event, delivery_id, message_id("DroneUnavailable", delivery_id))], cause)

    def release(self, command: ReleaseDrone, cause: Cause) -> None:
        """Compensation and end of flight, idempotent: stop scheduling for the delivery, return
        its drone(s) to the pool. A compensation (the command names a reason) is acknowledged with
        ``DroneReleased``, for the delivery's history; the end of a flight is not: the delivery is
        over and needs nothing more from the drone."""
        self.fleet.close(command.delivery_id, self.clock.now())
        self.fleet.stop_waiting(command.delivery_id)
        released: list[str] = []
        for _ in range(ASSIGN_ROUNDS):
            held = [d for d in self.fleet.held_by(command.delivery_id)
                    if command.drone_id is None or d.drone_id == command.drone_id]
            results = [(self._hand_over(d, cause) if d.wanted else None) or self.fleet.try_release(d)
                       for d in held]
            for result in results:
                if result is not None:
                    self.known.update(result)
                    released.append(result.drone_id)
            if all(result is not None for result in results):
                break  # else one changed between the read and the release: read again
        if command.reason is None:
            return
        event = DroneReleased(delivery_id=command.delivery_id, drone_ids=released)
        self.publisher.send([to_delivery(event, command.delivery_id,
                                         message_id("DroneReleased", command.delivery_id,
                                                    short_hash(cause.message_id)))], cause)


class SchedulingRequests:
    """Consumer of subscription ``drone-scheduler`` (``DeliveryRequested``, ``RetryDroneScheduling``)."""

    contracts = ContractRegistry(DeliveryRequested, RetryDroneScheduling)

    def __init__(self, service: DroneSchedulerService) -> None:
        self.service = service

    def handle(self, received: Received) -> None:
        match received.payload:
            case DeliveryRequested() as request:
                self.service.schedule(request.delivery_id, request.package_info.weight, request.deadline, 0,
                                      received.cause)
            case RetryDroneScheduling() as retry:
                self.service.schedule(retry.delivery_id, retry.weight, retry.deadline, retry.attempt, received.cause,
                                      retry.waiting_since)
            case _:
                unexpected(received)

    def on_permanent_failure(self, incoming: Incoming, received: Received | None,
                             failure: PermanentFailure) -> None:
        """Delivery hears ``DroneUnavailable`` with the reason, and compensates the package."""
        delivery_id = received.envelope.correlation_id if received else incoming.delivery_id
        if delivery_id:
            self.service.fleet.stop_waiting(delivery_id)  # no drone before its deadline: it waits no more
            self.service.unavailable(delivery_id, failure.reason, failure.description,
                                     received.cause if received else incoming.cause)


class ReleaseRequests:
    """Consumer of subscription ``drone-release`` (``ReleaseDrone``): the compensation function."""

    contracts = ContractRegistry(ReleaseDrone)

    def __init__(self, service: DroneSchedulerService) -> None:
        self.service = service

    def handle(self, received: Received) -> None:
        match received.payload:
            case ReleaseDrone() as command:
                self.service.release(command, received.cause)
            case _:
                unexpected(received)

    def on_permanent_failure(self, incoming: Incoming, received: Received | None,
                             failure: PermanentFailure) -> None:
        """An unreadable ReleaseDrone is only dead-lettered: nothing to compensate."""
