"""Use cases against fakes: idempotency, tombstones, races, settings."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from choreography.errors import BusinessRuleViolation, TransientFailure
from choreography.messaging import Cause
from choreography.reason_codes import ReasonCode
from choreography.settings import Settings, SettingsError
from delivery.domain import Delivery
from delivery.ports import ConcurrencyConflict
from drone_scheduler.domain import Drone
from drone_scheduler.messages import ReleaseDrone
from ingestion.domain import delivery_requested
from package.domain import PackageStatus
from package.messages import CancelPackage

from .conftest import World, make_world
from .fakes import T0
from .samples import delivery_request

CAUSE = Cause("m-1", None)


def requested(world: World, **overrides):
    request = delivery_request(world.clock.now(), **overrides)
    return delivery_requested(request, request.delivery_id or "")


# -- package ---------------------------------------------------------------------------------
def test_package_accept_upserts_and_answers_ready_on_the_session(world: World):
    event = requested(world)
    world.package.accept(event, CAUSE)
    world.package.accept(event, CAUSE)  # redelivery: same row, same message id
    package = world.packages.get(event.delivery_id)
    assert package is not None and package.status is PackageStatus.READY and package.weight_kg == 2.5
    sent = world.publisher.of_type("PackageReady")
    assert {s.envelope.message_id for s in sent} == {f"PackageReady:{event.delivery_id}"}
    assert sent[0].message.session_id == event.delivery_id
    assert sent[0].message.destination.name == "delivery-events"


def test_package_accept_raises_for_an_impossible_package(world: World):
    with pytest.raises(BusinessRuleViolation):
        world.package.accept(requested(world, package={"size": "medium", "weight": 26}), CAUSE)
    assert world.publisher.sent == []


def test_cancel_before_the_request_leaves_a_tombstone_the_request_respects(world: World):
    event = requested(world)
    world.package.cancel(CancelPackage(delivery_id=event.delivery_id, reason=ReasonCode.JOIN_TIMEOUT), CAUSE)
    world.package.accept(event, CAUSE)
    package = world.packages.get(event.delivery_id)
    assert package is not None and package.status is PackageStatus.CANCELLED
    assert world.publisher.types() == ["PackageCancelled"]


def test_cancel_is_idempotent(world: World):
    event = requested(world)
    world.package.accept(event, CAUSE)
    command = CancelPackage(delivery_id=event.delivery_id, package_id="pkg-1")
    world.package.cancel(command, CAUSE)
    world.package.cancel(command, CAUSE)
    acknowledgements = world.publisher.of_type("PackageCancelled")
    assert len(acknowledgements) == 2 and len({s.envelope.message_id for s in acknowledgements}) == 1
    package = world.packages.get(event.delivery_id)
    assert package is not None and package.status is PackageStatus.CANCELLED and package.package_id == "pkg-1"


# -- drone scheduler -----------------------------------------------------------------------------
def test_schedule_takes_the_best_fit_and_a_redelivery_gets_the_same_drone(world: World):
    deadline = T0 + timedelta(hours=1)
    world.drones.schedule("d-1", 7, deadline, 0, CAUSE)
    world.drones.schedule("d-1", 7, deadline, 0, CAUSE)
    held = [d for d in world.fleet.drones() if d.delivery_id == "d-1"]
    assert [d.drone_id for d in held] == ["drone-02"]
    assert len({s.envelope.message_id for s in world.publisher.of_type("DroneScheduled")}) == 1


def test_no_free_drone_schedules_a_retry_with_backoff():
    world = make_world(fleet_size=1, retry_base=2, retry_max=10)
    deadline = T0 + timedelta(hours=1)
    world.drones.schedule("d-1", 1, deadline, 0, CAUSE)
    world.drones.schedule("d-2", 1, deadline, 3, CAUSE)
    [retry] = world.publisher.of_type("RetryDroneScheduling")
    assert retry.message.scheduled_at == T0 + timedelta(seconds=10)  # 2 * 2**3 = 16, capped at 10
    assert retry.envelope.data["attempt"] == 4
    assert retry.envelope.message_id == "RetryDroneScheduling:d-2:4"
    assert retry.message.destination.name == "deliveries"


def test_release_frees_the_drone_closes_the_delivery_and_acknowledges(world: World):
    world.drones.schedule("d-1", 1, T0 + timedelta(hours=1), 0, CAUSE)
    world.drones.release(ReleaseDrone(delivery_id="d-1"), CAUSE)
    world.drones.release(ReleaseDrone(delivery_id="d-1"), CAUSE)  # idempotent
    assert all(d.is_free for d in world.fleet.drones())
    assert world.fleet.is_closed("d-1")
    released = world.publisher.of_type("DroneReleased")
    assert released[0].envelope.data["droneIds"] == ["drone-01"]
    assert released[1].envelope.data["droneIds"] == []
    world.drones.schedule("d-1", 1, T0 + timedelta(hours=1), 0, CAUSE)  # a stale retry: ignored
    assert all(d.is_free for d in world.fleet.drones())


def test_release_of_one_named_drone_leaves_the_others(world: World):
    fleet = world.fleet
    for drone in fleet.drones()[:2]:
        fleet.try_assign(drone, "d-1")
    world.drones.release(ReleaseDrone(delivery_id="d-1", drone_id="drone-02"), CAUSE)
    assert [d.drone_id for d in fleet.drones() if d.delivery_id == "d-1"] == ["drone-01"]


def test_concurrent_deliveries_for_the_last_drone_get_it_once():
    world = make_world(fleet_size=1)
    barrier = threading.Barrier(10)
    errors: list[BaseException] = []

    def schedule(n: int) -> None:
        barrier.wait()
        try:
            world.drones.schedule(f"d-{n}", 1, T0 + timedelta(hours=1), 0, Cause(f"m-{n}", None))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=schedule, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(world.publisher.of_type("DroneScheduled")) == 1
    assert len(world.publisher.of_type("RetryDroneScheduling")) == 9
    [drone] = world.fleet.drones()
    assert drone.delivery_id == world.publisher.of_type("DroneScheduled")[0].envelope.correlation_id


def test_a_drone_assigned_while_the_delivery_was_closed_goes_back():
    class ClosingFleet:
        """Closes the delivery right after the assignment, as a racing ReleaseDrone would."""

        def __init__(self, inner) -> None:
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def try_assign(self, drone: Drone, delivery_id: str):
            assigned = self.inner.try_assign(drone, delivery_id)
            self.inner.close(delivery_id, T0)
            return assigned

    world = make_world()
    world.drones.fleet = ClosingFleet(world.fleet)  # type: ignore[assignment]
    world.drones.schedule("d-1", 1, T0 + timedelta(hours=1), 0, CAUSE)
    assert all(d.is_free for d in world.fleet.drones())
    assert world.publisher.sent == []


# -- delivery --------------------------------------------------------------------------------
def test_delivery_retries_a_lost_etag_race_then_gives_up_as_transient(world: World):
    world.deliveries.add(Delivery.requested("d-1", "fp", T0))
    real_save = world.deliveries.save
    calls = {"n": 0}

    def flaky_save(delivery: Delivery) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConcurrencyConflict("raced")
        real_save(delivery)

    world.deliveries.save = flaky_save  # type: ignore[method-assign]
    world.delivery.change("d-1", "m-1", CAUSE, lambda d, now: d.package_ready("p", now, now,
                                                                               world.delivery.timing))
    assert calls["n"] == 2 and world.status("d-1") == "Scheduling"

    def always_conflict(delivery: Delivery) -> None:
        raise ConcurrencyConflict("raced")

    world.deliveries.save = always_conflict  # type: ignore[method-assign]
    with pytest.raises(TransientFailure):
        world.delivery.change("d-1", "m-2", CAUSE, lambda d, now: d.drone_scheduled("x", now, now,
                                                                                    world.delivery.timing))


def test_delivery_commands_have_deterministic_ids_per_cause(world: World):
    world.deliveries.add(Delivery.requested("d-1", "fp", T0))
    world.delivery.change("d-1", "m-1", Cause("m-1", None),
                          lambda d, now: d.package_ready("p", now, now, world.delivery.timing))
    world.delivery.change("d-1", "m-2", Cause("m-2", None), lambda d, now: d.join_timed_out(now))
    [join_timer] = world.publisher.of_type("JoinTimeout")
    assert join_timer.envelope.message_id == "JoinTimeout:d-1"
    assert join_timer.message.scheduled_at == T0 + timedelta(minutes=5)
    assert join_timer.message.session_id == "d-1"
    [cancel] = world.publisher.of_type("CancelPackage")
    assert cancel.envelope.message_id.startswith("CancelPackage:d-1:")
    assert cancel.envelope.data == {"deliveryId": "d-1", "packageId": "p", "reason": "JoinTimeout"}
    [event] = world.events.published
    assert (event.id, event.type, event.subject) == ("DeliveryFailed:d-1", "DeliveryFailed", "deliveries/d-1")
    assert event.data == {"deliveryId": "d-1", "status": "Cancelled", "reason": "JoinTimeout", "packageId": "p"}


# -- notifications -----------------------------------------------------------------------------
def test_notifications_only_for_the_outcome_events(world: World):
    assert world.notifier.on_event("e-1", "DeliveryShipped", {"deliveryId": "d-1", "droneId": "drone-01"}, T0)
    assert world.notifier.on_event("e-2", "DeliveryFailed", {"deliveryId": "d-2", "reason": "JoinTimeout"}, T0)
    assert world.notifier.on_event("e-3", "SomethingElse", {"deliveryId": "d-3"}, T0) is None
    assert world.notifier.on_event("e-4", "DeliveryShipped", "not an object", T0) is None
    assert "JoinTimeout" in world.notifications.for_delivery("d-2")[0].message


# -- settings ----------------------------------------------------------------------------------
def test_settings_defaults_and_overrides():
    defaults = Settings.from_env({})
    assert (defaults.flight_time, defaults.join_timeout, defaults.drone_retry_base) == (
        timedelta(0), timedelta(seconds=300), timedelta(seconds=2))
    custom = Settings.from_env({"FLIGHT_TIME_SECONDS": "1.5", "JOIN_TIMEOUT_SECONDS": "10",
                                "ServiceBusConnection": "Endpoint=sb://x", "AzureWebJobsStorage": "s"})
    assert custom.flight_time == timedelta(seconds=1.5) and custom.join_timeout == timedelta(seconds=10)
    assert custom.service_bus_connection == "Endpoint=sb://x" and custom.storage_connection == "s"


@pytest.mark.parametrize("value", ["soon", "-1", "inf"])
def test_settings_refuse_nonsense(value: str):
    with pytest.raises(SettingsError, match="FLIGHT_TIME_SECONDS"):
        Settings.from_env({"FLIGHT_TIME_SECONDS": value})


def test_a_missing_connection_is_named():
    with pytest.raises(SettingsError, match="ServiceBusConnection"):
        Settings().require("", "ServiceBusConnection")
