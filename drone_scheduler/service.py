"""Drone Scheduler use cases: schedule a drone for a delivery (or retry later); release it.

Storage calls per delivery: what the scheduler knows of a delivery is one record, its
*booking* (:class:`~drone_scheduler.domain.Booking`), written in the same transaction as each
assignment: a redelivered request finds the drone it got before, whichever instance assigned it,
because its assignment fails on the booking that exists and the booking is then read. So a
delivery's assignment is one write and no read, and the end of its flight one write (the drone
freed). The free drones to choose from come from :class:`KnownFleet`, this process's memory of
the fleet, rather than a read of the whole fleet. A choice made from a stale memory fails its
ETag check; and the fleet is read afresh before a request is told to wait for a drone.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from choreography.clock import Clock
from choreography.contracts import Contract, ContractRegistry
from choreography.entities import DELIVERIES_TOPIC, DELIVERY_EVENTS_QUEUE
from choreography.errors import BusinessRuleViolation, PermanentFailure, TransientFailure
from choreography.handling import unexpected
from choreography.idempotency import message_id, short_hash
from choreography.messaging import Cause, Incoming, Outgoing, Publisher, Received
from choreography.reason_codes import ReasonCode
from contracts.deliveries import DeliveryRequested, DroneReleased, DroneScheduled, DroneUnavailable, ReleaseDrone

from .domain import Booking, Drone, Waiter, candidates, first_in_line, next_attempt_at
from .messages import RetryDroneScheduling
from .ports import BookingChanged, DroneFleet

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

    def get(self, drone_id: str) -> Drone | None:
        with self._lock:
            return None if self._drones is None else self._drones.get(drone_id)

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
        deadline. A delivery whose booking names a drone is answered with it; a closed one gets
        nothing."""
        # A first request reads no booking: it almost never has one, and when it does (a
        # redelivery, a duplicate, a compensation that came first) the assignment transaction
        # fails on it and it is read then. A retry has waited, so things may have happened.
        booking = self.fleet.booking(delivery_id) if attempt > 0 else None
        read = attempt > 0
        if booking is not None and self._settled(booking, cause, waiting_since):
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
                try:
                    assigned = self.fleet.try_assign(drone, delivery_id, booking)
                except BookingChanged:
                    booking, read = self.fleet.booking(delivery_id), True
                    if booking is not None and self._settled(booking, cause, waiting_since):
                        return
                    continue
                if assigned is None:
                    continue  # changed since we saw it: another scheduler took it
                self.known.update(assigned)
                self._scheduled(assigned, delivery_id, cause, waiting_since)
                return
            if not options and remembered is None:
                break  # a fresh read with no free drone able to carry it: wait
        if not read:
            # About to wait: a redelivered request that got its drone before must not.
            booking = self.fleet.booking(delivery_id)
            if booking is not None and self._settled(booking, cause, waiting_since):
                return
        since = waiting_since or self.clock.now()
        # The retry first: past the deadline it raises (NoDroneAvailableBeforeDeadline) before
        # the delivery joins a waiting list it could never leave by a retry.
        self._retry_later(delivery_id, weight_kg, deadline, attempt, cause, since)
        self._wait(Waiter(delivery_id, weight_kg, since, deadline), fleet)

    def _settled(self, booking: Booking, cause: Cause, waiting_since: datetime | None) -> bool:
        """Answer a delivery whose booking settles it, and say so: one holding a booked drone (a
        redelivery, a duplicate request, a drone handed over while it waited) hears of it again;
        one whose booked drones were all released (only its own ReleaseDrone does that) or that
        is closed is over, and hears nothing. False when the booking settles nothing."""
        if not booking.settled:
            return False
        # Rare (redeliveries, retries): the drones are read from storage, the truth of who holds them.
        held = [drone for drone in map(self.fleet.drone, booking.drone_ids)
                if drone is not None and drone.delivery_id == booking.delivery_id]
        if held:
            self._scheduled(held[0], booking.delivery_id, cause, waiting_since)
        else:
            self.fleet.stop_waiting(booking.delivery_id)  # over, maybe while it was waiting
        return True

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
            booking = self.fleet.booking(waiter.delivery_id)
            if booking is not None and booking.settled:
                self.fleet.stop_waiting(waiter.delivery_id)  # over, or served after a crash
                continue
            if self.fleet.try_claim(waiter, now) is None:
                continue  # another scheduler is serving it
            try:
                assigned = self.fleet.try_assign(drone, waiter.delivery_id, booking)
            except BookingChanged:
                self.fleet.stop_waiting(waiter.delivery_id)  # served or closed since we read it
                continue
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
        """Compensation and end of flight, idempotent: return the delivery's drone(s) to the pool
        (or hand them to a waiting delivery), and close a booking that has none, so no drone is
        scheduled for it any more. A compensation (the command names a reason) is acknowledged
        with ``DroneReleased``, for the delivery's history; the end of a flight is not: the
        delivery is over and needs nothing more from the drone.

        A command naming its drone needs no booking read: the delivery heard of that drone, so
        its booking names it (and, naming a drone, never needs closing)."""
        delivery_id = command.delivery_id
        drone_ids = (command.drone_id,) if command.drone_id is not None else self._close(delivery_id)
        released = [drone_id for drone_id in drone_ids if self._free(drone_id, delivery_id, cause)]
        if command.reason is None:
            return
        event = DroneReleased(delivery_id=delivery_id, drone_ids=released)
        self.publisher.send([to_delivery(event, delivery_id,
                                         message_id("DroneReleased", delivery_id, short_hash(cause.message_id)))],
                            cause)

    def _close(self, delivery_id: str) -> tuple[str, ...]:
        """The drones the delivery's booking names; when it names none, the booking is closed
        first (so no drone is assigned to it any more) and the delivery leaves the waiting list."""
        for _ in range(ASSIGN_ROUNDS):
            booking = self.fleet.booking(delivery_id)
            if booking is not None and booking.drone_ids:
                return booking.drone_ids
            if (booking is not None and booking.closed) or self.fleet.try_close(delivery_id, booking):
                self.fleet.stop_waiting(delivery_id)
                return ()
            # else an assignment or another close got there first: read it again
        raise TransientFailure(f"delivery {delivery_id}: its booking kept changing while it was closed")

    def _free(self, drone_id: str, delivery_id: str, cause: Cause) -> bool:
        """Return ``drone_id`` to the pool, or hand it over, if ``delivery_id`` still holds it;
        False when it does not (released before: this is a redelivery). The drone as this process
        last wrote it is tried first; a stale copy fails its ETag check and storage is read."""
        drone = self.known.get(drone_id)
        for _ in range(ASSIGN_ROUNDS):
            if drone is None or drone.delivery_id != delivery_id:
                drone = self.fleet.drone(drone_id)
                if drone is None or drone.delivery_id != delivery_id:
                    return False
            result = (self._hand_over(drone, cause) if drone.wanted else None) or self.fleet.try_release(drone)
            if result is not None:
                self.known.update(result)
                return True
            drone = None  # it changed since read (a wanted mark, a racing release): read it again
        raise TransientFailure(f"drone {drone_id} of delivery {delivery_id} kept changing while it was released")


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
