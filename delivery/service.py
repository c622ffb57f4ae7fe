"""Delivery use cases: apply each outcome to the saga, carry out the effects, answer status queries.

Idempotency and effects: a change is saved in one ETag-guarded write together with the id of
the message applied (so a redelivery is recognised and skipped) and the effects it produced
(an outbox in the record). The effects are sent *after* that write, with deterministic message
ids. A crash between the write and the send leaves the outbox in the record: whoever next reads
the record from storage sends it first, then applies its own message. Service Bus duplicate
detection drops a repeated command; Event Grid does not drop a repeated event, so an outbox that
announced is cleared in storage as soon as it is sent, and the next change overwrites any other.
A crash between the announcement and that clearing write is the one case where an event goes
out twice (same id): Event Grid subscribers must be idempotent by event id.

Because nothing is sent before the write succeeds, the service can start from the state it
saved itself last time (:class:`RecentDeliveries`) instead of reading the record for every
message: a state another instance has since moved on from fails the ETag check and is read
afresh, and it never sent anything.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from choreography.clock import Clock, isoformat
from choreography.contracts import ContractRegistry
from choreography.entities import DELIVERIES_TOPIC, DELIVERY_EVENTS_QUEUE
from choreography.errors import ConcurrencyConflict, PermanentFailure, TransientFailure
from choreography.handling import unexpected
from choreography.idempotency import message_id, short_hash
from choreography.messaging import Cause, EventPublisher, Incoming, Outgoing, OutgoingEvent, Publisher, Received
from choreography.reason_codes import ReasonCode
from contracts.deliveries import CancelPackage as CancelPackageCommand
from contracts.deliveries import (
    DroneReleased,
    DroneScheduled,
    DroneUnavailable,
    JoinTimeout,
    Opening,
    PackageCancelled,
    PackageReady,
    PackageRejected,
)
from contracts.deliveries import ReleaseDrone as ReleaseDroneCommand

from . import domain
from .domain import Delivery, Effect, Status, Timing
from .messages import DeliveryInTransitTimer
from .ports import DeliveryExists, DeliveryRepository

Change = Callable[[Delivery, datetime], list[Effect]]
SAVE_ATTEMPTS = 3
RECENT_DELIVERIES = 4096  # saved states kept per process; a miss costs one Table read


class RecentDeliveries:
    """The last states this process saved *and* whose outbox it sent, least recent dropped first.

    Only ever a starting point for the next change: the save is ETag-guarded, so a copy that is
    stale (another instance changed the record) conflicts, is forgotten and the record is read.
    """

    def __init__(self, capacity: int = RECENT_DELIVERIES) -> None:
        self._capacity = capacity
        self._states: OrderedDict[str, Delivery] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, delivery_id: str) -> Delivery | None:
        with self._lock:
            state = self._states.get(delivery_id)
            if state is None:
                return None
            self._states.move_to_end(delivery_id)
        return copy.deepcopy(state)  # the caller mutates its copy; a failed change must not leak in

    def put(self, delivery: Delivery) -> None:
        state = copy.deepcopy(delivery)
        with self._lock:
            self._states[delivery.delivery_id] = state
            self._states.move_to_end(delivery.delivery_id)
            while len(self._states) > self._capacity:
                self._states.popitem(last=False)

    def forget(self, delivery_id: str) -> None:
        with self._lock:
            self._states.pop(delivery_id, None)


class DeliveryService:
    """Consumer of the session queue ``delivery-events`` (session = delivery id)."""

    contracts = ContractRegistry(PackageReady, PackageRejected, DroneScheduled, DroneUnavailable,
                                 DeliveryInTransitTimer, JoinTimeout, PackageCancelled, DroneReleased)

    def __init__(self, deliveries: DeliveryRepository, publisher: Publisher, events: EventPublisher,
                 clock: Clock, timing: Timing, recent: RecentDeliveries | None = None) -> None:
        self.deliveries = deliveries
        self.publisher = publisher
        self.events = events
        self.clock = clock
        self.timing = timing
        self.recent = recent if recent is not None else RecentDeliveries()

    def handle(self, received: Received) -> None:
        at = received.envelope.occurred_at
        timing = self.timing
        match received.payload:
            case PackageReady() as ready:
                self.apply(received, lambda d, now: d.package_ready(ready.package_id, at, now, timing))
            case PackageRejected() as rejected:
                self.apply(received, lambda d, now: d.package_rejected(rejected.package_id, rejected.reason.value, at,
                                                                       now, timing))
            case DroneScheduled() as scheduled:
                self.apply(received, lambda d, now: d.drone_scheduled(scheduled.drone_id, at, now, timing,
                                                                      scheduled.queued_seconds))
            case DroneUnavailable() as unavailable:
                self.apply(received, lambda d, now: d.drone_unavailable(unavailable.reason.value, at, now, timing))
            case JoinTimeout():
                self.apply(received, lambda d, now: d.join_timed_out(now))
            case DeliveryInTransitTimer():
                self.apply(received, lambda d, now: d.flight_completed(now))
            case PackageCancelled():
                self.apply(received, lambda d, now: d.package_cancelled(at))
            case DroneReleased() as released:
                self.apply(received, lambda d, now: d.drone_released(list(released.drone_ids), at))
            case _:
                unexpected(received)

    def on_permanent_failure(self, incoming: Incoming, received: Received | None,
                             failure: PermanentFailure) -> None:
        """A delivery-events message that can never be applied ends its delivery (if still running)
        with the failure's reason, compensating both sides."""
        delivery_id = received.envelope.correlation_id if received else incoming.delivery_id
        if not delivery_id:
            return
        cause = received.cause if received else incoming.cause
        self.change(delivery_id, incoming.message_id, cause, lambda d, now: d.abort(failure.reason.value, now))

    # -- the one way a delivery changes -------------------------------------------------------
    def apply(self, received: Received, change: Change) -> None:
        self.change(received.envelope.correlation_id, received.envelope.message_id, received.cause, change,
                    caused_by=received.envelope.causation_id)

    def change(self, delivery_id: str, applied_message_id: str, cause: Cause, change: Change,
               caused_by: str | None = None) -> None:
        """Apply ``change`` once. ``caused_by`` is the message that led to the one applied: when it
        is a command of the stored outbox (an acknowledgement), that outbox was sent whole, its
        announcement first, so finding it in storage is no reason to send it again."""
        for _ in range(SAVE_ATTEMPTS):
            delivery = self.recent.get(delivery_id)
            if delivery is None:
                delivery = self.deliveries.get(delivery_id) or Delivery(delivery_id)
                if caused_by is None or caused_by not in _command_ids(delivery):
                    self._send_outbox(delivery)  # its writer may have crashed before sending it
            if applied_message_id in delivery.processed:
                self.recent.put(delivery)
                return  # a redelivery or duplicate: already applied
            before = delivery.fingerprint()
            effects = change(delivery, self.clock.now())
            if not effects and delivery.fingerprint() == before:
                # Nothing changed and nothing to do (e.g. a join timeout after the join): there
                # is nothing to record, and applying it again would be the same no-op.
                return
            delivery.processed.add(applied_message_id)
            delivery.outbox, delivery.outbox_cause = effects, cause
            try:
                self.deliveries.save(delivery)
            except ConcurrencyConflict:
                self.recent.forget(delivery_id)
                continue
            self._send_outbox(delivery)
            self.recent.put(delivery)
            return
        raise TransientFailure(f"delivery {delivery_id}: lost {SAVE_ATTEMPTS} optimistic-concurrency races")

    def _send_outbox(self, delivery: Delivery) -> None:
        """Send the stored effects: the announcement first, then the commands (so a command's
        acknowledgement proves the announcement went out). An outbox that announced is cleared
        in storage at once: Event Grid does not drop a repeated event id, so it must not be found
        and sent again by the next reader (after a restart, or on another instance)."""
        if not delivery.outbox or delivery.outbox_cause is None:
            return
        cause = delivery.outbox_cause
        messages: list[Outgoing] = []
        events: list[OutgoingEvent] = []
        for effect in delivery.outbox:
            if isinstance(effect, domain.Announce):
                events.append(announcement(delivery, effect))
            else:
                messages.append(command_for(delivery.delivery_id, effect, cause))
        if events:
            self.events.publish(events, cause)
        if messages:
            self.publisher.send(messages, cause)
        if events:
            delivery.outbox, delivery.outbox_cause = [], None
            try:
                self.deliveries.save(delivery)
            except ConcurrencyConflict:
                # Another change was saved meanwhile, its own outbox in place of this one. This
                # copy is stale: its next save fails the ETag check and the record is read afresh.
                pass

    # -- the records, for Ingestion (contracts.deliveries.DeliveryRecords) ---------------------
    def open(self, delivery_id: str, request_fingerprint: str, at: datetime) -> Opening:
        opened = Delivery.requested(delivery_id, request_fingerprint, at)
        try:
            self.deliveries.add(opened)
        except DeliveryExists:
            existing = self.deliveries.get(delivery_id)
        else:
            # Its first outcome, most often handled in this process, starts from here unread.
            self.recent.put(opened)
            return Opening.OPENED
        if existing is None or existing.request_fingerprint != request_fingerprint:
            return Opening.CONFLICT
        return Opening.REQUESTED if existing.status is Status.REQUESTED else Opening.UNDER_WAY

    def status(self, delivery_id: str) -> dict[str, Any] | None:
        delivery = self.deliveries.get(delivery_id)
        return status_view(delivery) if delivery else None


def command_for(delivery_id: str, effect: Effect, cause: Cause) -> Outgoing:
    """The message that carries out ``effect``; ids are deterministic per (effect, cause)."""
    if isinstance(effect, domain.StartFlight):
        timer = DeliveryInTransitTimer(delivery_id=delivery_id, drone_id=effect.drone_id)
        return Outgoing(DELIVERY_EVENTS_QUEUE, timer,
                        message_id("DeliveryInTransitTimer", delivery_id), delivery_id, session_id=delivery_id,
                        scheduled_at=effect.lands_at)
    if isinstance(effect, domain.CancelPackage):
        return Outgoing(DELIVERIES_TOPIC,
                        CancelPackageCommand(delivery_id=delivery_id, package_id=effect.package_id,
                                             reason=_reason(effect.reason)),
                        message_id("CancelPackage", delivery_id, short_hash(cause.message_id)), delivery_id)
    if isinstance(effect, domain.ReleaseDrone):
        return Outgoing(DELIVERIES_TOPIC,
                        ReleaseDroneCommand(delivery_id=delivery_id, drone_id=effect.drone_id,
                                            reason=_reason(effect.reason)),
                        message_id("ReleaseDrone", delivery_id, short_hash(cause.message_id)), delivery_id)
    raise TypeError(f"no command for {effect!r}")


def _command_ids(delivery: Delivery) -> set[str]:
    """Message ids of the commands in the stored outbox (what an acknowledgement is caused by)."""
    if delivery.outbox_cause is None:
        return set()
    return {command_for(delivery.delivery_id, effect, delivery.outbox_cause).message_id
            for effect in delivery.outbox if isinstance(effect, domain.CancelPackage | domain.ReleaseDrone)}


def announcement(delivery: Delivery, effect: domain.Announce) -> OutgoingEvent:
    data: dict[str, Any] = {"deliveryId": delivery.delivery_id, "status": delivery.status.value}
    if effect.reason:
        data["reason"] = effect.reason
    if delivery.package_id:
        data["packageId"] = delivery.package_id
    if delivery.drone_id:
        data["droneId"] = delivery.drone_id
    return OutgoingEvent(id=f"{effect.event_type}:{delivery.delivery_id}", type=effect.event_type,
                         subject=f"deliveries/{delivery.delivery_id}", data=data,
                         correlation_id=delivery.delivery_id)


def status_view(delivery: Delivery) -> dict[str, Any]:
    """``GET /api/deliveries/{id}``: ``{deliveryId, status, reason?, droneId?, history}``."""
    view: dict[str, Any] = {"deliveryId": delivery.delivery_id, "status": delivery.status.value}
    if delivery.reason:
        view["reason"] = delivery.reason
    if delivery.drone_id:
        view["droneId"] = delivery.drone_id
    history = []
    for entry in delivery.history:
        item = {"status": entry.status, "at": isoformat(entry.at), "by": entry.by}
        if entry.reason:
            item["reason"] = entry.reason
        if entry.detail:
            item["detail"] = entry.detail
        history.append(item)
    view["history"] = history
    return view


def _reason(value: str | None) -> ReasonCode | None:
    return ReasonCode(value) if value else None

