"""Drone Scheduler use cases: schedule a drone for a delivery (or retry later); release it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from choreography.clock import Clock
from choreography.contracts import Contract, ContractRegistry
from choreography.entities import DELIVERIES_TOPIC, DELIVERY_EVENTS_QUEUE
from choreography.errors import PermanentFailure
from choreography.handling import Route
from choreography.idempotency import message_id, short_hash
from choreography.messaging import Cause, Incoming, Outgoing, Publisher, Received
from choreography.reason_codes import ReasonCode
from ingestion.messages import DeliveryRequested

from .domain import Drone, candidates, held_by, next_attempt_at
from .messages import DroneReleased, DroneScheduled, DroneUnavailable, ReleaseDrone, RetryDroneScheduling
from .ports import DroneFleet

ASSIGN_ROUNDS = 3  # re-read the fleet this many times when racing schedulers take our candidates


def to_delivery(payload: Contract, delivery_id: str, msg_id: str) -> Outgoing:
    return Outgoing(DELIVERY_EVENTS_QUEUE, payload, msg_id, delivery_id, session_id=delivery_id)


class DroneSchedulerService:
    def __init__(self, fleet: DroneFleet, publisher: Publisher, clock: Clock, retry_base: timedelta,
                 retry_max: timedelta) -> None:
        self.fleet = fleet
        self.publisher = publisher
        self.clock = clock
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.requests = SchedulingRequests(self)
        self.releases = ReleaseRequests(self)

    def schedule(self, delivery_id: str, weight_kg: float, deadline: datetime, attempt: int, cause: Cause) -> None:
        """Assign a free drone able to carry ``weight_kg`` and say ``DroneScheduled``; if none is
        free, schedule ``RetryDroneScheduling`` with backoff. Raises BusinessRuleViolation when no
        drone could ever carry it, or none came free before the deadline."""
        if self.fleet.is_closed(delivery_id):
            return  # the delivery ended (timeout, cancellation) while we were retrying
        for _ in range(ASSIGN_ROUNDS):
            fleet = self.fleet.drones()
            mine = held_by(fleet, delivery_id)
            if mine:  # a redelivery, or a duplicate request: same drone, same answer
                self._scheduled(mine[0], delivery_id, cause)
                return
            options = candidates(fleet, weight_kg, spread_by=delivery_id)
            if not options:
                break
            for drone in options:
                assigned = self.fleet.try_assign(drone, delivery_id)
                if assigned is None:
                    continue  # another scheduler took it since we read the fleet
                if self.fleet.is_closed(delivery_id):
                    self.fleet.try_release(assigned)  # called off while we were assigning
                    return
                self._scheduled(assigned, delivery_id, cause)
                return
        at = next_attempt_at(self.clock.now(), attempt, self.retry_base, self.retry_max, deadline)
        retry = RetryDroneScheduling(delivery_id=delivery_id, weight=weight_kg, deadline=deadline, attempt=attempt + 1)
        self.publisher.send([Outgoing(DELIVERIES_TOPIC, retry,
                                      message_id("RetryDroneScheduling", delivery_id, str(attempt + 1)),
                                      delivery_id, scheduled_at=at)], cause)

    def _scheduled(self, drone: Drone, delivery_id: str, cause: Cause) -> None:
        event = DroneScheduled(delivery_id=delivery_id, drone_id=drone.drone_id, capacity_kg=drone.capacity_kg)
        self.publisher.send([to_delivery(event, delivery_id, message_id("DroneScheduled", delivery_id))], cause)

    def unavailable(self, delivery_id: str, reason: ReasonCode, description: str, cause: Cause) -> None:
        event = DroneUnavailable(delivery_id=delivery_id, reason=reason, description=description)
        self.publisher.send([to_delivery(event, delivery_id, message_id("DroneUnavailable", delivery_id))], cause)

    def release(self, command: ReleaseDrone, cause: Cause) -> None:
        """Compensation and end of flight, idempotent: stop scheduling for the delivery, return
        its drone(s) to the pool, acknowledge with ``DroneReleased``."""
        self.fleet.close(command.delivery_id, self.clock.now())
        released: list[str] = []
        for _ in range(ASSIGN_ROUNDS):
            held = [d for d in held_by(self.fleet.drones(), command.delivery_id)
                    if command.drone_id is None or d.drone_id == command.drone_id]
            if not held:
                break
            released += [d.drone_id for d in held if self.fleet.try_release(d) is not None]
        event = DroneReleased(delivery_id=command.delivery_id, drone_ids=released)
        self.publisher.send([to_delivery(event, command.delivery_id,
                                         message_id("DroneReleased", command.delivery_id,
                                                    short_hash(cause.message_id)))], cause)


class SchedulingRequests:
    """Consumer of subscription ``drone-scheduler`` (``DeliveryRequested``, ``RetryDroneScheduling``)."""

    contracts = ContractRegistry(DeliveryRequested, RetryDroneScheduling)

    def __init__(self, service: DroneSchedulerService) -> None:
        self.service = service

    @property
    def routes(self) -> Mapping[type[Contract], Route]:
        return {DeliveryRequested: self.delivery_requested, RetryDroneScheduling: self.retry}

    def delivery_requested(self, received: Received) -> None:
        request: Any = received.payload
        self.service.schedule(request.delivery_id, request.package_info.weight, request.deadline, 0, received.cause)

    def retry(self, received: Received) -> None:
        retry: Any = received.payload
        self.service.schedule(retry.delivery_id, retry.weight, retry.deadline, retry.attempt, received.cause)

    def on_permanent_failure(self, incoming: Incoming, received: Received | None,
                             failure: PermanentFailure) -> None:
        """Delivery hears ``DroneUnavailable`` with the reason, and compensates the package."""
        delivery_id = received.envelope.correlation_id if received else incoming.delivery_id
        if delivery_id:
            self.service.unavailable(delivery_id, failure.reason, failure.description,
                                     received.cause if received else incoming.cause)


class ReleaseRequests:
    """Consumer of subscription ``drone-release`` (``ReleaseDrone``): the compensation function."""

    contracts = ContractRegistry(ReleaseDrone)

    def __init__(self, service: DroneSchedulerService) -> None:
        self.service = service

    @property
    def routes(self) -> Mapping[type[Contract], Route]:
        return {ReleaseDrone: self.release_drone}

    def release_drone(self, received: Received) -> None:
        command: Any = received.payload
        self.service.release(command, received.cause)

    def on_permanent_failure(self, incoming: Incoming, received: Received | None,
                             failure: PermanentFailure) -> None:
        """An unreadable ReleaseDrone is only dead-lettered: nothing to compensate."""
