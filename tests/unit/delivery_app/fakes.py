"""In-memory fakes of every port, held to the same tests as the real adapters (ports_contract.py),
and an in-memory bus that routes messages the way the Service Bus entities do."""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from choreography.clock import FixedClock
from choreography.contracts import Envelope
from choreography.entities import (
    DELIVERIES_TOPIC,
    DRONE_RELEASE_SUBSCRIPTION,
    DRONE_SCHEDULER_SUBSCRIPTION,
    PACKAGE_COMPENSATION_SUBSCRIPTION,
    PACKAGE_SUBSCRIPTION,
)
from choreography.errors import ConcurrencyConflict
from choreography.handling import Consumer, consume
from choreography.messaging import Cause, DeadLetter, Incoming, Outgoing, OutgoingEvent, stamp
from delivery.domain import Delivery
from delivery.ports import DeliveryExists
from drone_scheduler.domain import Booking, Drone, Waiter
from drone_scheduler.ports import BookingChanged
from notifications.domain import Notification
from package.domain import Package

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


@dataclass
class Sent:
    message: Outgoing
    envelope: Envelope


class RecordingPublisher:
    """Stamps exactly like the Service Bus publisher and keeps what it 'sent'."""

    def __init__(self, clock: FixedClock, fail_with: BaseException | None = None) -> None:
        self.clock = clock
        self.sent: list[Sent] = []
        self.dead_letters: list[DeadLetter] = []
        self.fail_with = fail_with
        self.fail_on: str | None = None  # a message type whose send fails (the bus went away then)
        self._lock = threading.Lock()

    def send(self, messages: Sequence[Outgoing], cause: Cause) -> list[Envelope]:
        if self.fail_with is not None:
            raise self.fail_with
        if self.fail_on is not None and any(self.fail_on == m.payload.TYPE for m in messages):
            raise ConnectionError(f"the bus went away while sending {self.fail_on}")
        envelopes = [stamp(m, cause, self.clock.now()) for m in messages]
        with self._lock:
            self.sent += [Sent(m, e) for m, e in zip(messages, envelopes, strict=True)]
        return envelopes

    def dead_letter(self, letter: DeadLetter) -> None:
        with self._lock:
            self.dead_letters.append(letter)

    def types(self) -> list[str]:
        return [s.envelope.type for s in self.sent]

    def of_type(self, type_name: str) -> list[Sent]:
        return [s for s in self.sent if s.envelope.type == type_name]


class RecordingEventPublisher:
    def __init__(self) -> None:
        self.published: list[OutgoingEvent] = []

    def publish(self, events: Sequence[OutgoingEvent], cause: Cause) -> None:
        self.published += list(events)

    def types(self) -> list[str]:
        return [e.type for e in self.published]


class InMemoryDeliveryRepository:
    def __init__(self) -> None:
        self._rows: dict[str, tuple[Delivery, str]] = {}
        self._versions = itertools.count(1)
        self._lock = threading.Lock()

    def get(self, delivery_id: str) -> Delivery | None:
        with self._lock:
            row = self._rows.get(delivery_id)
            if row is None:
                return None
            delivery = copy.deepcopy(row[0])
            delivery.version = row[1]
            return delivery

    def add(self, delivery: Delivery) -> None:
        with self._lock:
            if delivery.delivery_id in self._rows:
                raise DeliveryExists(delivery.delivery_id)
            self._store(delivery)

    def save(self, delivery: Delivery) -> None:
        with self._lock:
            row = self._rows.get(delivery.delivery_id)
            if delivery.version is None:
                if row is not None:
                    raise ConcurrencyConflict(delivery.delivery_id)
            elif row is None or row[1] != delivery.version:
                raise ConcurrencyConflict(delivery.delivery_id)
            self._store(delivery)

    def _store(self, delivery: Delivery) -> None:
        version = f"v{next(self._versions)}"
        stored = copy.deepcopy(delivery)
        stored.version = version
        self._rows[delivery.delivery_id] = (stored, version)
        delivery.version = version


class InMemoryPackageRepository:
    def __init__(self) -> None:
        self.rows: dict[str, Package] = {}

    def get(self, delivery_id: str) -> Package | None:
        return self.rows.get(delivery_id)

    def add(self, package: Package) -> bool:
        return self.rows.setdefault(package.delivery_id, package) is package

    def upsert(self, package: Package) -> None:
        self.rows[package.delivery_id] = package


class InMemoryDroneFleet:
    def __init__(self, drones: Sequence[Drone] = ()) -> None:
        self._drones: dict[str, Drone] = {}
        self._bookings: dict[str, Booking] = {}
        self._waiting: dict[str, Waiter] = {}
        self._versions = itertools.count(1)
        self._lock = threading.RLock()  # try_assign holds it across the drone's replace
        for drone in drones:
            self.add(drone)

    def drones(self) -> list[Drone]:
        with self._lock:
            return sorted(self._drones.values(), key=lambda d: d.drone_id)

    def drone(self, drone_id: str) -> Drone | None:
        with self._lock:
            return self._drones.get(drone_id)

    def booking(self, delivery_id: str) -> Booking | None:
        with self._lock:
            return self._bookings.get(delivery_id)

    def _booking_unchanged(self, delivery_id: str, booking: Booking | None) -> bool:
        current = self._bookings.get(delivery_id)
        return current is None if booking is None else current is not None and current.version == booking.version

    def _replace(self, drone: Drone, delivery_id: str | None, wanted: bool) -> Drone | None:
        with self._lock:
            current = self._drones.get(drone.drone_id)
            if current is None or current.version != drone.version:
                return None
            updated = replace(current, delivery_id=delivery_id, wanted=wanted, version=f"v{next(self._versions)}")
            self._drones[drone.drone_id] = updated
            return updated

    def try_assign(self, drone: Drone, delivery_id: str, booking: Booking | None) -> Drone | None:
        with self._lock:  # one transaction: both unchanged, or nothing written
            if not self._booking_unchanged(delivery_id, booking):
                raise BookingChanged(delivery_id)
            assigned = self._replace(drone, delivery_id, drone.wanted)
            if assigned is not None:
                booked = (*(booking.drone_ids if booking else ()), drone.drone_id)
                self._bookings[delivery_id] = Booking(delivery_id, booked, False, f"v{next(self._versions)}")
            return assigned

    def try_close(self, delivery_id: str, booking: Booking | None) -> bool:
        with self._lock:
            if not self._booking_unchanged(delivery_id, booking):
                return False
            self._bookings[delivery_id] = Booking(delivery_id, booking.drone_ids if booking else (), True,
                                                  f"v{next(self._versions)}")
            return True

    def try_release(self, drone: Drone) -> Drone | None:
        return self._replace(drone, None, False)

    def try_want(self, drone: Drone) -> Drone | None:
        return self._replace(drone, drone.delivery_id, True)

    def wait(self, waiter: Waiter) -> None:
        with self._lock:
            self._waiting[waiter.delivery_id] = replace(waiter, claimed_at=None, version=f"v{next(self._versions)}")

    def waiters(self) -> list[Waiter]:
        with self._lock:
            return list(self._waiting.values())

    def waiter(self, delivery_id: str) -> Waiter | None:
        with self._lock:
            return self._waiting.get(delivery_id)

    def try_claim(self, waiter: Waiter, at: datetime) -> Waiter | None:
        with self._lock:
            current = self._waiting.get(waiter.delivery_id)
            if current is None or current.version != waiter.version:
                return None
            claimed = replace(current, claimed_at=at, version=f"v{next(self._versions)}")
            self._waiting[waiter.delivery_id] = claimed
            return claimed

    def stop_waiting(self, delivery_id: str) -> None:
        with self._lock:
            self._waiting.pop(delivery_id, None)

    def add(self, drone: Drone) -> bool:
        if drone.drone_id >= "~":
            raise ValueError("a drone id must sort before '~'")
        with self._lock:
            if drone.drone_id in self._drones:
                return False
            self._drones[drone.drone_id] = replace(drone, version=f"v{next(self._versions)}")
            return True


class InMemoryNotificationStore:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Notification] = {}

    def record(self, notification: Notification) -> None:
        self.rows[(notification.delivery_id, notification.event_id)] = notification

    def for_delivery(self, delivery_id: str) -> list[Notification]:
        return sorted((n for (d, _), n in self.rows.items() if d == delivery_id), key=lambda n: n.event_id)


# -- an in-memory broker with the app's routing ---------------------------------------------
# Which subscription receives which label: the same table as emulators/servicebus/config.json
# (tests/contract checks that config against the consumers' contracts).
TOPIC_ROUTES: dict[str, set[str]] = {
    PACKAGE_SUBSCRIPTION.path: {"DeliveryRequested"},
    PACKAGE_COMPENSATION_SUBSCRIPTION.path: {"CancelPackage"},
    DRONE_SCHEDULER_SUBSCRIPTION.path: {"DeliveryRequested", "RetryDroneScheduling"},
    DRONE_RELEASE_SUBSCRIPTION.path: {"ReleaseDrone"},
}


@dataclass(order=True)
class _Queued:
    visible_at: datetime
    seq: int
    source: str = field(compare=False)
    incoming: Incoming = field(compare=False)


class InMemoryBus:
    """Delivers what a RecordingPublisher sent to the consumers bound to each entity, with the
    subscription routing of the real config, duplicate detection by message id, and scheduled
    messages held until the clock reaches them."""

    def __init__(self, publisher: RecordingPublisher, clock: FixedClock) -> None:
        self.publisher = publisher
        self.clock = clock
        self.consumers: dict[str, Callable[[], Consumer]] = {}
        self._seen = 0
        self._queue: list[_Queued] = []
        self._ids: set[tuple[str, str]] = set()
        self._seq = itertools.count()
        self.delivered: list[tuple[str, str]] = []  # (entity, type)

    def bind(self, source: str, consumer: Callable[[], Consumer]) -> None:
        self.consumers[source] = consumer

    def _collect(self) -> None:
        for sent in self.publisher.sent[self._seen:]:
            message, envelope = sent.message, sent.envelope
            if message.destination == DELIVERIES_TOPIC:
                targets = [path for path, labels in TOPIC_ROUTES.items() if envelope.type in labels]
                dedupe_key = DELIVERIES_TOPIC.name
            else:
                targets = [message.destination.name]
                dedupe_key = message.destination.name
            if (dedupe_key, envelope.message_id) in self._ids:
                continue  # duplicate detection
            self._ids.add((dedupe_key, envelope.message_id))
            for target in targets:
                incoming = Incoming(body=envelope.to_json().encode(), message_id=envelope.message_id, source=target,
                                    subject=envelope.type, session_id=message.session_id,
                                    correlation_id=envelope.correlation_id, content_type="application/json",
                                    application_properties=envelope.properties())
                visible = message.scheduled_at or self.clock.now()
                self._queue.append(_Queued(visible, next(self._seq), target, incoming))
        self._seen = len(self.publisher.sent)

    def inject(self, source: str, incoming: Incoming) -> None:
        self._queue.append(_Queued(self.clock.now(), next(self._seq), source, incoming))

    def run(self, max_steps: int = 10_000) -> int:
        """Deliver every message visible now (and what they cause); returns how many."""
        steps = 0
        while steps < max_steps:
            self._collect()
            ready = sorted(q for q in self._queue if q.visible_at <= self.clock.now())
            if not ready:
                return steps
            item = ready[0]
            self._queue.remove(item)
            consumer = self.consumers.get(item.source)
            if consumer is not None:
                consume(item.incoming, consumer(), self.publisher)
                self.delivered.append((item.source, item.incoming.subject or ""))
            steps += 1
        raise AssertionError("the bus did not settle")

    def pending(self) -> list[tuple[datetime, str, str | None]]:
        self._collect()
        return sorted((q.visible_at, q.source, q.incoming.subject) for q in self._queue)

    def run_until_quiet(self, horizon_seconds: float = 3600) -> None:
        """Run, advancing the clock to each next scheduled message, until nothing is left."""
        end = self.clock.now() + timedelta(seconds=horizon_seconds)
        while True:
            self.run()
            pending = self.pending()
            if not pending or pending[0][0] > end:
                return
            wait = (pending[0][0] - self.clock.now()).total_seconds()
            self.clock.advance(max(wait, 0.0))
