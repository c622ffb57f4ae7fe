from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from choreography.clock import FixedClock
from choreography.entities import (
    DELIVERY_EVENTS_QUEUE,
    DRONE_RELEASE_SUBSCRIPTION,
    DRONE_SCHEDULER_SUBSCRIPTION,
    PACKAGE_COMPENSATION_SUBSCRIPTION,
    PACKAGE_SUBSCRIPTION,
)
from choreography.messaging import Cause
from delivery.domain import Timing
from delivery.service import DeliveryService
from drone_scheduler.domain import default_fleet
from drone_scheduler.service import DroneSchedulerService
from ingestion.service import Accepted, Conflict, IngestionService
from notifications.service import NotificationService
from package.service import PackageService

from .fakes import (
    T0,
    InMemoryBus,
    InMemoryDeliveryRepository,
    InMemoryDroneFleet,
    InMemoryNotificationStore,
    InMemoryPackageRepository,
    RecordingEventPublisher,
    RecordingPublisher,
)
from .samples import delivery_request


@dataclass
class World:
    """The whole workload wired to fakes, the way each service's bootstrap wires real adapters."""

    clock: FixedClock
    publisher: RecordingPublisher
    events: RecordingEventPublisher
    deliveries: InMemoryDeliveryRepository
    packages: InMemoryPackageRepository
    fleet: InMemoryDroneFleet
    notifications: InMemoryNotificationStore
    ingestion: IngestionService
    package: PackageService
    drones: DroneSchedulerService
    delivery: DeliveryService
    notifier: NotificationService
    bus: InMemoryBus

    def submit(self, **overrides: Any) -> str:
        request = delivery_request(self.clock.now(), **overrides)
        outcome = self.ingestion.submit(request, Cause("http:test", None))
        assert isinstance(outcome, Accepted | Conflict)
        assert isinstance(outcome, Accepted), outcome
        return outcome.delivery_id

    def status(self, delivery_id: str) -> str:
        view = self.delivery.status(delivery_id)
        assert view is not None
        return str(view["status"])

    def notify_all(self) -> None:
        for event in self.events.published:
            self.notifier.on_event(event.id, event.type, event.data, self.clock.now())


def make_world(fleet_size: int = 5, flight_seconds: float = 0, join_timeout_seconds: float = 300,
               retry_base: float = 2, retry_max: float = 60) -> World:
    clock = FixedClock(T0)
    publisher = RecordingPublisher(clock)
    events = RecordingEventPublisher()
    deliveries = InMemoryDeliveryRepository()
    packages = InMemoryPackageRepository()
    fleet = InMemoryDroneFleet(default_fleet(fleet_size))
    notifications = InMemoryNotificationStore()
    timing = Timing(timedelta(seconds=flight_seconds))
    delivery = DeliveryService(deliveries, publisher, events, clock, timing)
    world = World(
        clock=clock, publisher=publisher, events=events, deliveries=deliveries, packages=packages, fleet=fleet,
        notifications=notifications,
        ingestion=IngestionService(delivery, publisher, clock, timedelta(seconds=join_timeout_seconds)),
        package=PackageService(packages, publisher, clock),
        drones=DroneSchedulerService(fleet, publisher, clock, timedelta(seconds=retry_base),
                                     timedelta(seconds=retry_max)),
        delivery=delivery,
        notifier=NotificationService(notifications, publisher),
        bus=InMemoryBus(publisher, clock),
    )
    world.bus.bind(PACKAGE_SUBSCRIPTION.path, lambda: world.package.requests)
    world.bus.bind(PACKAGE_COMPENSATION_SUBSCRIPTION.path, lambda: world.package.compensations)
    world.bus.bind(DRONE_SCHEDULER_SUBSCRIPTION.path, lambda: world.drones.requests)
    world.bus.bind(DRONE_RELEASE_SUBSCRIPTION.path, lambda: world.drones.releases)
    world.bus.bind(DELIVERY_EVENTS_QUEUE.name, lambda: world.delivery)
    return world


@pytest.fixture
def world() -> World:
    return make_world()
