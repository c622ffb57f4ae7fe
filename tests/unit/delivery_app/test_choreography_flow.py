"""The whole choreography on fakes and the in-memory bus: every path a delivery can take."""

from __future__ import annotations

from datetime import timedelta

import pytest

from choreography.contracts import ContractRegistry
from choreography.entities import DELIVERY_EVENTS_QUEUE, PACKAGE_SUBSCRIPTION
from choreography.messaging import Cause, Incoming
from contracts.deliveries import DeliveryRequested, PackageReady
from delivery.domain import Delivery
from delivery.service import DeliveryService

from .conftest import World, make_world
from .fakes import T0
from .samples import envelope_json


def history(world: World, delivery_id: str) -> list[str]:
    view = world.delivery.status(delivery_id)
    assert view is not None
    return [h["status"] for h in view["history"]]


def test_happy_path_ships_releases_the_drone_and_announces(world: World):
    delivery_id = world.submit()
    world.bus.run_until_quiet()
    view = world.delivery.status(delivery_id)
    assert view is not None and view["status"] == "Shipped"
    assert view["droneId"] == "drone-01"  # 2.5 kg: the 5 kg drone fits best
    assert history(world, delivery_id)[0] == "Requested"
    assert {"PackageReady", "DroneScheduled", "InTransit", "Shipped", "ReleaseDrone"} <= set(
        history(world, delivery_id))
    assert world.events.types() == ["DeliveryShipped"]
    # flight time 0: shipped at the join, with no timer message; the end of the flight frees the
    # drone with no acknowledgement back to the join
    sent = world.publisher.types()
    assert "DeliveryInTransitTimer" not in sent and "DroneReleased" not in sent
    assert all(d.is_free for d in world.fleet.drones())
    world.notify_all()
    [note] = world.notifications.for_delivery(delivery_id)
    assert note.event_type == "DeliveryShipped" and "drone-01" in note.message


def test_flight_time_keeps_the_delivery_in_transit_until_the_timer():
    world = make_world(flight_seconds=60)
    delivery_id = world.submit()
    world.bus.run()
    assert world.status(delivery_id) == "InTransit"
    world.clock.advance(59)
    world.bus.run()
    assert world.status(delivery_id) == "InTransit"
    world.clock.advance(1)
    world.bus.run()
    assert world.status(delivery_id) == "Shipped"


def test_an_overweight_package_is_rejected_dead_lettered_and_its_drone_released(world: World):
    delivery_id = world.submit(package={"size": "small", "weight": 8})
    world.bus.run_until_quiet()
    view = world.delivery.status(delivery_id)
    assert view is not None
    assert (view["status"], view["reason"]) == ("Cancelled", "WeightExceedsSizeLimit")
    assert "ReleaseDrone" in history(world, delivery_id) and "DroneReleased" in history(world, delivery_id)
    assert all(d.is_free for d in world.fleet.drones())
    [letter] = world.publisher.dead_letters
    assert (letter.reason, letter.incoming.source) == ("WeightExceedsSizeLimit", "deliveries/subscriptions/package")
    assert world.events.types() == ["DeliveryFailed"]


def test_a_package_no_drone_can_carry_cancels_the_package(world: World):
    delivery_id = world.submit(package={"size": "large", "weight": 80})
    world.bus.run_until_quiet()
    view = world.delivery.status(delivery_id)
    assert view is not None
    assert (view["status"], view["reason"]) == ("Cancelled", "NoDroneCanCarryWeight")
    assert {"CancelPackage", "PackageCancelled"} <= set(history(world, delivery_id))
    package = world.packages.get(delivery_id)
    assert package is not None and package.status.value == "Cancelled"
    [letter] = world.publisher.dead_letters
    assert letter.incoming.source == "deliveries/subscriptions/drone-scheduler"


def test_more_deliveries_than_drones_all_ship_by_retrying_with_backoff():
    world = make_world(fleet_size=2, flight_seconds=30)
    ids = [world.submit(package={"weight": 1}) for _ in range(6)]
    world.bus.run()
    assert sorted(world.status(i) for i in ids).count("InTransit") == 2
    world.bus.run_until_quiet()
    assert [world.status(i) for i in ids] == ["Shipped"] * 6
    retries = world.publisher.of_type("RetryDroneScheduling")
    assert retries and all(s.message.scheduled_at is not None for s in retries)
    assert all(d.is_free for d in world.fleet.drones())


def test_no_drone_before_the_deadline_cancels_with_that_reason():
    world = make_world(fleet_size=1, flight_seconds=3600)
    first = world.submit(package={"weight": 1})
    world.bus.run()
    late = world.submit(package={"weight": 1}, deadline=(T0 + timedelta(seconds=20)).isoformat())
    world.bus.run_until_quiet(horizon_seconds=100)
    assert world.status(first) == "InTransit"
    view = world.delivery.status(late)
    assert view is not None and view["reason"] == "NoDroneAvailableBeforeDeadline"


def test_join_timeout_when_one_side_never_answers():
    world = make_world(join_timeout_seconds=300)
    world.bus.bind("deliveries/subscriptions/drone-scheduler", lambda: _Silent())
    delivery_id = world.submit()
    world.bus.run()
    assert world.status(delivery_id) == "Scheduling"
    world.bus.run_until_quiet()
    view = world.delivery.status(delivery_id)
    assert view is not None and (view["status"], view["reason"]) == ("Cancelled", "JoinTimeout")
    assert world.fleet.booking(delivery_id).closed  # the silent side was told to stop
    assert world.packages.get(delivery_id).status.value == "Cancelled"  # type: ignore[union-attr]


def test_a_late_drone_after_the_timeout_is_released_at_once():
    world = make_world(join_timeout_seconds=300)
    parked: list = []
    world.bus.bind("deliveries/subscriptions/drone-scheduler", lambda: _Parking(parked))
    delivery_id = world.submit()
    world.bus.run_until_quiet()
    assert world.status(delivery_id) == "Cancelled"
    # The scheduler finally processes the request: it must not keep the drone.
    world.drones.requests.handle(parked[0])
    world.bus.run_until_quiet()
    assert all(d.is_free for d in world.fleet.drones())


def test_redelivered_outcomes_change_nothing(world: World):
    delivery_id = world.submit()
    world.bus.run_until_quiet()
    before = (world.delivery.status(delivery_id), len(world.publisher.sent), world.events.types())
    for sent in list(world.publisher.sent):
        if sent.message.destination == DELIVERY_EVENTS_QUEUE:
            world.bus.inject(DELIVERY_EVENTS_QUEUE.name, Incoming(
                body=sent.envelope.to_json().encode(), message_id=sent.envelope.message_id,
                source=DELIVERY_EVENTS_QUEUE.name, subject=sent.envelope.type, session_id=delivery_id,
                correlation_id=delivery_id, delivery_count=2))
    world.bus.run()
    assert (world.delivery.status(delivery_id), len(world.publisher.sent), world.events.types()) == before


def test_a_duplicate_request_past_the_detection_window_makes_no_second_delivery(world: World):
    delivery_id = world.submit()
    world.bus.run_until_quiet()
    [original] = world.publisher.of_type("DeliveryRequested")
    for source in (PACKAGE_SUBSCRIPTION.path, "deliveries/subscriptions/drone-scheduler"):
        world.bus.inject(source, Incoming(body=original.envelope.to_json().encode(),
                                          message_id=original.envelope.message_id, source=source,
                                          subject="DeliveryRequested", correlation_id=delivery_id))
    world.bus.run_until_quiet()
    assert world.status(delivery_id) == "Shipped"
    assert len(world.publisher.of_type("DroneScheduled")) == 1
    assert all(d.is_free for d in world.fleet.drones())
    assert world.events.types() == ["DeliveryShipped"]


def test_an_outcome_with_an_unknown_schema_version_ends_the_delivery(world: World):
    delivery_id = world.submit()
    world.bus.bind("deliveries/subscriptions/package", lambda: _Silent())
    world.bus.run()
    body = envelope_json(PackageReady(delivery_id=delivery_id, package_id="p", size="small", weight=1),
                         delivery_id, T0, schemaVersion=9)
    world.bus.inject(DELIVERY_EVENTS_QUEUE.name, Incoming(body=body, message_id="odd", source="delivery-events",
                                                          subject="PackageReady", session_id=delivery_id,
                                                          correlation_id=delivery_id))
    world.bus.run_until_quiet()
    view = world.delivery.status(delivery_id)
    assert view is not None and (view["status"], view["reason"]) == ("Cancelled", "UnknownSchemaVersion")
    assert [letter.reason for letter in world.publisher.dead_letters] == ["UnknownSchemaVersion"]
    assert all(d.is_free for d in world.fleet.drones())


class _Silent:
    """A consumer that never answers (a service that is down for good)."""

    contracts = ContractRegistry(DeliveryRequested)

    def handle(self, received) -> None:
        pass

    def on_permanent_failure(self, incoming, received, failure) -> None:
        pass


class _Parking(_Silent):
    """A consumer that keeps requests to process them later, by hand."""

    def __init__(self, parked: list) -> None:
        self.parked = parked

    def handle(self, received) -> None:
        self.parked.append(received)


def test_every_delivery_ends_with_an_empty_outbox_and_a_cold_reader_announces_nothing_again():
    world = make_world(fleet_size=5)
    ids = [world.submit(),  # shipped
           world.submit(package={"size": "small", "weight": 8}),  # the package refuses
           world.submit(package={"size": "large", "weight": 80}),  # no drone can carry it
           world.submit(package={"size": "small", "weight": 200})]  # both sides refuse
    world.bus.run_until_quiet()
    announced = world.events.types()
    assert sorted(announced) == ["DeliveryFailed", "DeliveryFailed", "DeliveryFailed", "DeliveryShipped"]
    for delivery_id in ids:
        stored = world.deliveries.get(delivery_id)
        assert stored is not None and stored.is_over and stored.outbox == [], (delivery_id, stored.outbox)
    # A fresh instance (after a restart, or another instance of a scaled-out app) reads each record
    # cold for a message that changes nothing: nothing is announced again.
    fresh = DeliveryService(world.deliveries, world.publisher, world.events, world.clock, world.delivery.timing)
    for delivery_id in ids:
        fresh.change(delivery_id, f"late:{delivery_id}", Cause(f"late:{delivery_id}", None),
                     lambda d, now: d.join_timed_out(now))
    assert world.events.types() == announced


def _in_transit(world: World) -> None:
    timing = world.delivery.timing
    world.deliveries.add(Delivery.requested("d-1", "fp", T0))
    world.delivery.change("d-1", "m-1", Cause("m-1", None), lambda d, now: d.package_ready("p", now, now, timing))
    world.delivery.change("d-1", "m-2", Cause("m-2", None),
                          lambda d, now: d.drone_scheduled("drone-1", now, now, timing))


def _crash_before_the_outbox_is_cleared(world: World) -> None:
    real_save = world.deliveries.save

    def save(delivery: Delivery) -> None:
        if delivery.is_over and not delivery.outbox:
            raise ConnectionError("host killed after the announcement, before the outbox was cleared")
        real_save(delivery)

    world.deliveries.save = save  # type: ignore[method-assign]
    try:
        with pytest.raises(ConnectionError):
            world.delivery.change("d-1", "m-3", Cause("m-3", None), lambda d, now: d.flight_completed(now))
    finally:
        world.deliveries.save = real_save  # type: ignore[method-assign]


def test_the_acknowledgement_of_a_sent_outbox_is_proof_enough_not_to_announce_again():
    world = make_world(flight_seconds=60)
    _in_transit(world)
    _crash_before_the_outbox_is_cleared(world)
    assert world.events.types() == ["DeliveryShipped"]
    [release] = [s.envelope.message_id for s in world.publisher.sent if s.envelope.type == "ReleaseDrone"]
    fresh = DeliveryService(world.deliveries, world.publisher, world.events, world.clock, world.delivery.timing)
    fresh.change("d-1", "m-4", Cause("m-4", None), lambda d, now: d.drone_released(["drone-1"], now),
                 caused_by=release)
    assert world.events.types() == ["DeliveryShipped"]
    stored = world.deliveries.get("d-1")
    assert stored is not None and stored.outbox == []


def test_after_a_crash_between_announcing_and_clearing_the_event_may_repeat_and_is_noted_once():
    """The one at-least-once case left (README, Reliability): same event id, one notification."""
    world = make_world(flight_seconds=60)
    _in_transit(world)
    _crash_before_the_outbox_is_cleared(world)
    fresh = DeliveryService(world.deliveries, world.publisher, world.events, world.clock, world.delivery.timing)
    fresh.change("d-1", "m-late", Cause("m-late", None), lambda d, now: d.join_timed_out(now))
    assert world.events.types() == ["DeliveryShipped", "DeliveryShipped"]
    assert len({e.id for e in world.events.published}) == 1
    world.notify_all()
    assert len(world.notifications.for_delivery("d-1")) == 1
    stored = world.deliveries.get("d-1")
    assert stored is not None and stored.outbox == []


def _drone_order(world: World, ids: list[str]) -> list[str]:
    """Deliveries in the order they got a drone (the scheduler's DroneScheduled messages)."""
    scheduled = [s.envelope.correlation_id for s in world.publisher.of_type("DroneScheduled")]
    return [i for i in dict.fromkeys(scheduled) if i in ids]


def test_waiting_deliveries_get_the_drone_in_arrival_order_and_newcomers_never_overtake_them():
    world = make_world(fleet_size=1, flight_seconds=30, join_timeout_seconds=3600, retry_base=2, retry_max=60)
    ids = []
    for _ in range(8):  # one every 5 s while the only drone flies 30 s per delivery
        ids.append(world.submit(package={"weight": 1}))
        world.bus.run()
        world.clock.advance(5)
        world.bus.run()
    world.bus.run_until_quiet(horizon_seconds=7200)
    assert [world.status(i) for i in ids] == ["Shipped"] * 8
    assert _drone_order(world, ids) == ids
