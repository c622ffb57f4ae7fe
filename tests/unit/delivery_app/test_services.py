"""Use cases against fakes: idempotency, tombstones, races, settings."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

import pytest

from choreography.errors import BusinessRuleViolation, ConcurrencyConflict, TransientFailure
from choreography.messaging import Cause
from choreography.reason_codes import ReasonCode
from choreography.settings import Settings, SettingsError
from contracts.deliveries import CancelPackage, Opening, ReleaseDrone
from delivery.domain import Delivery
from delivery.service import DeliveryService, RecentDeliveries
from drone_scheduler.domain import Booking, Drone, held_by
from drone_scheduler.service import DroneSchedulerService
from ingestion.domain import delivery_requested
from package.domain import PackageStatus

from .conftest import World, make_world
from .fakes import T0, Sent
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


def _scheduled_to(world: World) -> dict[str, tuple[str, float | None]]:
    return {s.envelope.correlation_id: (s.envelope.data["droneId"], s.envelope.data.get("queuedSeconds"))
            for s in world.publisher.of_type("DroneScheduled")}


def test_a_released_drone_goes_to_the_longest_waiting_delivery_it_can_carry():
    world = make_world(fleet_size=2)  # drone-01 5 kg, drone-02 10 kg
    deadline = T0 + timedelta(hours=1)
    world.drones.schedule("d-a", 1, deadline, 0, Cause("m-a", None))
    world.drones.schedule("d-b", 8, deadline, 0, Cause("m-b", None))
    world.clock.advance(1)
    world.drones.schedule("d-heavy", 9, deadline, 0, Cause("m-h", None))  # waits: only drone-02 carries 9 kg
    world.clock.advance(1)
    world.drones.schedule("d-light", 1, deadline, 0, Cause("m-l", None))  # waits too, a second later
    assert {w.delivery_id for w in world.fleet.waiters()} == {"d-heavy", "d-light"}
    assert all(d.wanted for d in world.fleet.drones())
    world.clock.advance(10)
    world.drones.release(ReleaseDrone(delivery_id="d-a"), Cause("r-a", None))  # the 5 kg drone
    assert _scheduled_to(world)["d-light"] == ("drone-01", 10.0)  # the heavy one cannot use it
    world.drones.release(ReleaseDrone(delivery_id="d-b"), Cause("r-b", None))  # the 10 kg drone
    assert _scheduled_to(world)["d-heavy"] == ("drone-02", 11.0)
    assert world.fleet.waiters() == []
    # A newcomer finds nothing free: the drones went straight from one delivery to the next.
    world.drones.schedule("d-new", 1, deadline, 0, Cause("m-n", None))
    assert "d-new" not in _scheduled_to(world)


def test_a_freed_drone_nobody_waits_for_goes_back_to_the_pool_unmarked(world: World):
    deadline = T0 + timedelta(hours=1)
    world.drones.schedule("d-1", 1, deadline, 0, CAUSE)
    world.drones.release(ReleaseDrone(delivery_id="d-1"), Cause("r-1", None))
    assert all(d.is_free and not d.wanted for d in world.fleet.drones())


def _one_drone_taken_and_d2_waiting() -> tuple[World, Sent]:
    """One drone, taken by d-1; d-2 waits for it. The world and d-2's scheduled retry."""
    world = make_world(fleet_size=1)
    deadline = T0 + timedelta(hours=1)
    world.drones.schedule("d-1", 1, deadline, 0, CAUSE)
    world.drones.schedule("d-2", 1, deadline, 0, Cause("m-2", None))  # waits
    [retry] = world.publisher.of_type("RetryDroneScheduling")
    return world, retry


def _retry_arrives(world: World, retry: Sent, cause: Cause) -> None:
    data = retry.envelope.data
    world.drones.schedule(data["deliveryId"], data["weight"], datetime.fromisoformat(data["deadline"]),
                          data["attempt"], cause, datetime.fromisoformat(data["waitingSince"]))


def test_a_handover_interrupted_by_a_crash_is_finished_by_the_waiter_s_own_retry():
    world, retry = _one_drone_taken_and_d2_waiting()
    world.publisher.fail_on = "DroneScheduled"  # the host dies after the drone changed hands
    with pytest.raises(ConnectionError):
        world.drones.release(ReleaseDrone(delivery_id="d-1"), Cause("r-1", None))
    world.publisher.fail_on = None
    assert [d.delivery_id for d in world.fleet.drones()] == ["d-2"]
    _retry_arrives(world, retry, Cause("m-2b", None))
    assert _scheduled_to(world)["d-2"][0] == "drone-01" and world.fleet.waiters() == []
    # The release, redelivered, finds d-1 holds nothing and acknowledges; the drone stays d-2's.
    world.drones.release(ReleaseDrone(delivery_id="d-1"), Cause("r-1", None))
    assert [d.delivery_id for d in world.fleet.drones()] == ["d-2"]


def test_two_drones_freed_at_once_never_both_go_to_one_waiter():
    """Two releases racing (two instances, or two threads of one) read the same waiting list:
    the waiter's claim lets only one of them hand it a drone."""
    world = make_world(fleet_size=2)
    deadline = T0 + timedelta(hours=1)
    world.drones.schedule("d-a", 1, deadline, 0, Cause("m-a", None))
    world.drones.schedule("d-b", 1, deadline, 0, Cause("m-b", None))
    world.drones.schedule("d-w", 1, deadline, 0, Cause("m-w", None))  # waits
    other = DroneSchedulerService(world.fleet, world.publisher, world.clock, timedelta(seconds=2),
                                  timedelta(seconds=60))
    stale_list = world.fleet.waiters()
    real_waiters, real_booking = world.fleet.waiters, world.fleet.booking
    world.fleet.waiters = lambda: stale_list  # type: ignore[method-assign]  # both read it before either acts
    world.drones.release(ReleaseDrone(delivery_id="d-a"), Cause("r-a", None))
    # The second read what d-w holds before the first handed it drone-01.
    world.fleet.booking = lambda d: None if d == "d-w" else real_booking(d)  # type: ignore[method-assign]
    other.release(ReleaseDrone(delivery_id="d-b"), Cause("r-b", None))
    world.fleet.waiters, world.fleet.booking = real_waiters, real_booking  # type: ignore[method-assign]
    assert [d.drone_id for d in held_by(world.fleet.drones(), "d-w")] == ["drone-01"]
    assert [d.delivery_id for d in world.fleet.drones()] == ["d-w", None]


def test_a_waiter_s_retry_does_not_take_a_free_drone_while_a_release_serves_it():
    world = make_world(fleet_size=2)
    deadline = T0 + timedelta(hours=1)
    world.drones.schedule("d-a", 1, deadline, 0, Cause("m-a", None))
    world.drones.schedule("d-b", 1, deadline, 0, Cause("m-b", None))
    world.drones.schedule("d-w", 1, deadline, 0, Cause("m-w", None))  # waits
    place = world.fleet.waiter("d-w")
    world.fleet.try_claim(place, T0)  # a release claimed it and is about to hand a drone over
    world.fleet.try_release(held_by(world.fleet.drones(), "d-b")[0])  # meanwhile a drone is free
    world.drones.schedule("d-w", 1, deadline, 1, Cause("m-w1", None), place.since)
    assert held_by(world.fleet.drones(), "d-w") == [] and "d-w" not in _scheduled_to(world)
    # A claim that old is a crashed scheduler's: the waiter's next retry serves itself.
    world.clock.advance(120)
    world.drones.schedule("d-w", 1, deadline, 2, Cause("m-w2", None), place.since)
    assert [d.drone_id for d in held_by(world.fleet.drones(), "d-w")] == ["drone-02"]
    assert world.fleet.waiter("d-w") is None


def test_a_waiter_that_ended_meanwhile_is_passed_over_and_forgotten():
    world = make_world(fleet_size=1)
    deadline = T0 + timedelta(hours=1)
    world.drones.schedule("d-1", 1, deadline, 0, CAUSE)
    world.drones.schedule("d-gone", 1, deadline, 0, Cause("m-g", None))
    world.clock.advance(1)
    world.drones.schedule("d-next", 1, deadline, 0, Cause("m-n", None))
    world.fleet.try_close("d-gone", None)  # cancelled while waiting (its ReleaseDrone not seen yet)
    world.drones.release(ReleaseDrone(delivery_id="d-1"), Cause("r-1", None))
    assert [d.delivery_id for d in world.fleet.drones()] == ["d-next"]
    assert world.fleet.waiters() == []


def _count_fleet_reads(world: World) -> dict[str, int]:
    reads = {"n": 0}
    real = world.fleet.drones

    def counting() -> list[Drone]:
        reads["n"] += 1
        return real()

    world.fleet.drones = counting  # type: ignore[method-assign]
    return reads


def test_the_scheduler_chooses_from_the_fleet_it_remembers(world: World):
    reads = _count_fleet_reads(world)
    deadline = T0 + timedelta(hours=1)
    for n in range(3):
        world.drones.schedule(f"d-{n}", 1, deadline, 0, Cause(f"m-{n}", None))
    assert reads["n"] == 1
    assert len({d.delivery_id for d in world.fleet.drones() if d.delivery_id}) == 3


class _CountingFleet:
    """The fleet, counting the storage calls the scheduler makes, by port method."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name):
        method = getattr(self.inner, name)

        def counted(*args, **kwargs):
            self.calls.append(name)
            return method(*args, **kwargs)

        return counted


def test_a_delivery_costs_the_scheduler_one_write_to_assign_and_one_to_free_and_no_read(world: World):
    deadline = T0 + timedelta(hours=1)
    world.drones.schedule("d-0", 1, deadline, 0, Cause("m-0", None))  # the first reads the fleet
    counting = _CountingFleet(world.fleet)
    world.drones.fleet = counting  # type: ignore[assignment]
    world.drones.schedule("d-1", 1, deadline, 0, CAUSE)
    world.drones.release(ReleaseDrone(delivery_id="d-1", drone_id=_scheduled_to(world)["d-1"][0]),
                         Cause("r-1", None))
    assert counting.calls == ["try_assign", "try_release"]


def test_a_drone_another_instance_took_is_not_given_twice():
    world = make_world(fleet_size=2)
    deadline = T0 + timedelta(hours=1)
    world.drones.schedule("d-1", 1, deadline, 0, CAUSE)  # remembers the fleet
    other = DroneSchedulerService(world.fleet, world.publisher, world.clock, timedelta(seconds=2),
                                  timedelta(seconds=60))
    other.schedule("d-2", 1, deadline, 0, Cause("m-2", None))  # takes the last free drone
    world.drones.schedule("d-3", 1, deadline, 0, Cause("m-3", None))  # our memory says it is free
    assert sorted(d.delivery_id or "" for d in world.fleet.drones()) == ["d-1", "d-2"]
    assert [s.envelope.correlation_id for s in world.publisher.of_type("RetryDroneScheduling")] == ["d-3"]


def test_a_drone_another_instance_released_is_found_before_anyone_waits():
    world = make_world(fleet_size=1)
    deadline = T0 + timedelta(hours=1)
    world.drones.schedule("d-1", 1, deadline, 0, CAUSE)  # our memory: the one drone is busy
    other = DroneSchedulerService(world.fleet, world.publisher, world.clock, timedelta(seconds=2),
                                  timedelta(seconds=60))
    other.release(ReleaseDrone(delivery_id="d-1"), Cause("m-2", None))
    world.drones.schedule("d-2", 1, deadline, 0, Cause("m-3", None))
    assert [d.delivery_id for d in world.fleet.drones()] == ["d-2"]
    assert world.publisher.of_type("RetryDroneScheduling") == []


def test_a_fleet_remembered_before_it_grew_does_not_refuse_a_heavy_package():
    world = make_world(fleet_size=1)  # one 5 kg drone
    deadline = T0 + timedelta(hours=1)
    world.drones.schedule("d-1", 1, deadline, 0, CAUSE)
    world.fleet.add(Drone("drone-99", 60))
    world.drones.schedule("d-2", 50, deadline, 0, Cause("m-2", None))
    assert [d.drone_id for d in held_by(world.fleet.drones(), "d-2")] == ["drone-99"]


def test_release_frees_the_drone_closes_the_delivery_and_acknowledges_a_compensation(world: World):
    world.drones.schedule("d-1", 1, T0 + timedelta(hours=1), 0, CAUSE)
    cancelled = ReleaseDrone(delivery_id="d-1", reason=ReasonCode.WEIGHT_EXCEEDS_SIZE_LIMIT)
    world.drones.release(cancelled, CAUSE)
    world.drones.release(cancelled, CAUSE)  # idempotent
    assert all(d.is_free for d in world.fleet.drones())
    assert world.fleet.booking("d-1").drone_ids == ("drone-01",)  # no other drone is ever assigned to it
    released = world.publisher.of_type("DroneReleased")
    assert released[0].envelope.data["droneIds"] == ["drone-01"]
    assert released[1].envelope.data["droneIds"] == []
    world.drones.schedule("d-1", 1, T0 + timedelta(hours=1), 0, CAUSE)  # a stale retry: ignored
    assert all(d.is_free for d in world.fleet.drones())
    assert len(world.publisher.of_type("DroneScheduled")) == 1


def test_a_crash_after_the_assignment_is_finished_by_the_redelivery_on_any_instance():
    """The assignment and the booking are one write: the redelivered request, on an instance that
    remembers nothing, finds the drone through the booking instead of taking a second one."""
    world = make_world(fleet_size=2)
    deadline = T0 + timedelta(hours=1)
    world.publisher.fail_on = "DroneScheduled"  # the host dies after the assignment was written
    with pytest.raises(ConnectionError):
        world.drones.schedule("d-1", 1, deadline, 0, CAUSE)
    world.publisher.fail_on = None
    other = DroneSchedulerService(world.fleet, world.publisher, world.clock, timedelta(seconds=2),
                                  timedelta(seconds=60))
    other.schedule("d-1", 1, deadline, 0, CAUSE)
    assert [d.delivery_id for d in world.fleet.drones()] == ["d-1", None]
    [scheduled] = world.publisher.of_type("DroneScheduled")
    assert scheduled.envelope.data["droneId"] == "drone-01"


def test_a_release_redelivered_to_an_instance_with_a_stale_memory_leaves_the_drone_s_next_delivery_alone():
    world = make_world(fleet_size=1)
    deadline = T0 + timedelta(hours=1)
    world.drones.schedule("d-1", 1, deadline, 0, CAUSE)  # remembers drone-01 as d-1's
    other = DroneSchedulerService(world.fleet, world.publisher, world.clock, timedelta(seconds=2),
                                  timedelta(seconds=60))
    other.release(ReleaseDrone(delivery_id="d-1", drone_id="drone-01"), Cause("r-1", None))  # reads it
    other.schedule("d-2", 1, deadline, 0, Cause("m-2", None))
    world.drones.release(ReleaseDrone(delivery_id="d-1", drone_id="drone-01"), Cause("r-1", None))
    assert [d.delivery_id for d in world.fleet.drones()] == ["d-2"]


def test_a_compensation_while_waiting_closes_the_booking_and_the_retry_stops():
    world, retry = _one_drone_taken_and_d2_waiting()
    world.drones.release(ReleaseDrone(delivery_id="d-2", reason=ReasonCode.JOIN_TIMEOUT), Cause("r-2", None))
    assert world.fleet.waiters() == [] and world.fleet.booking("d-2").closed
    world.drones.release(ReleaseDrone(delivery_id="d-1", drone_id="drone-01"), Cause("r-1", None))
    _retry_arrives(world, retry, Cause("m-2b", None))
    assert all(d.is_free for d in world.fleet.drones())
    assert [s.envelope.correlation_id for s in world.publisher.of_type("DroneScheduled")] == ["d-1"]


def test_the_end_of_a_flight_frees_the_drone_without_an_acknowledgement(world: World):
    """The delivery is over when it asks for the drone back: nothing needs a message back."""
    world.drones.schedule("d-1", 1, T0 + timedelta(hours=1), 0, CAUSE)
    world.drones.release(ReleaseDrone(delivery_id="d-1", drone_id="drone-01"), CAUSE)
    assert all(d.is_free for d in world.fleet.drones())
    assert world.publisher.of_type("DroneReleased") == []


def test_release_of_one_named_drone_leaves_the_others(world: World):
    fleet = world.fleet
    for drone in fleet.drones()[:2]:
        fleet.try_assign(drone, "d-1", fleet.booking("d-1"))
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


def test_a_delivery_closed_while_its_drone_is_assigned_gets_none():
    class ClosingFleet:
        """Closes the delivery just before the assignment is written, as a racing ReleaseDrone would."""

        def __init__(self, inner) -> None:
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def try_assign(self, drone: Drone, delivery_id: str, booking: Booking | None):
            assert self.inner.try_close(delivery_id, booking)
            return self.inner.try_assign(drone, delivery_id, booking)

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
    [cancel] = world.publisher.of_type("CancelPackage")
    assert cancel.envelope.message_id.startswith("CancelPackage:d-1:")
    assert cancel.envelope.data == {"deliveryId": "d-1", "packageId": "p", "reason": "JoinTimeout"}
    [event] = world.events.published
    assert (event.id, event.type, event.subject) == ("DeliveryFailed:d-1", "DeliveryFailed", "deliveries/d-1")
    assert event.data == {"deliveryId": "d-1", "status": "Cancelled", "reason": "JoinTimeout", "packageId": "p"}


def test_a_crash_between_the_save_and_the_send_leaves_an_outbox_the_next_reader_sends():
    world = make_world(flight_seconds=60)  # a flight that takes time: the timer is the outbox
    world.deliveries.add(Delivery.requested("d-1", "fp", T0))
    timing = world.delivery.timing
    world.delivery.change("d-1", "m-1", Cause("m-1", None), lambda d, now: d.package_ready("p", now, now, timing))

    def scheduled(d: Delivery, now):
        return d.drone_scheduled("drone-1", now, now, timing)

    world.publisher.fail_with = ConnectionError("the bus went away")
    with pytest.raises(ConnectionError):
        world.delivery.change("d-1", "m-2", Cause("m-2", None), scheduled)
    stored = world.deliveries.get("d-1")
    assert stored is not None and stored.status.value == "InTransit"
    assert [type(e).__name__ for e in stored.outbox] == ["StartFlight"]
    assert world.publisher.sent == []
    world.publisher.fail_with = None
    # The broker redelivers m-2, to this process or to a fresh instance: either way the saved
    # effects go out once, and m-2 is not applied twice.
    for service in (world.delivery, DeliveryService(world.deliveries, world.publisher, world.events, world.clock,
                                                    timing)):
        service.change("d-1", "m-2", Cause("m-2", None), scheduled)
    assert world.publisher.types() == ["DeliveryInTransitTimer"] * 2  # same message id: the queue keeps one
    assert {s.envelope.message_id for s in world.publisher.sent} == {"DeliveryInTransitTimer:d-1"}
    stored = world.deliveries.get("d-1")
    assert stored is not None and [h.status for h in stored.history].count("InTransit") == 1


def test_a_state_another_instance_moved_on_from_is_read_again_and_sends_nothing():
    """Instance A remembers the delivery as Scheduling; instance B joins it (InTransit). A stale
    A must not act on its copy (a join timeout there would cancel a delivery in flight)."""
    world = make_world(flight_seconds=60)  # a flight that takes time: the timer is the outbox
    world.deliveries.add(Delivery.requested("d-1", "fp", T0))
    timing = world.delivery.timing
    a = world.delivery
    b = DeliveryService(world.deliveries, world.publisher, world.events, world.clock, timing)
    a.change("d-1", "m-1", Cause("m-1", None), lambda d, now: d.package_ready("p", now, now, timing))
    b.change("d-1", "m-2", Cause("m-2", None), lambda d, now: d.drone_scheduled("drone-1", now, now, timing))
    a.change("d-1", "m-3", Cause("m-3", None), lambda d, now: d.join_timed_out(now))
    # Each reader of the record re-sends the outbox it found (same ids: the queue drops them);
    # nothing was computed from A's stale copy.
    assert set(world.publisher.types()) == {"DeliveryInTransitTimer"}
    assert {s.envelope.message_id for s in world.publisher.sent} == {"DeliveryInTransitTimer:d-1"}
    assert world.events.published == []
    assert world.status("d-1") == "InTransit"


def _count_delivery_reads(world: World) -> dict[str, int]:
    reads = {"n": 0}
    real_get = world.deliveries.get

    def counting_get(delivery_id: str) -> Delivery | None:
        reads["n"] += 1
        return real_get(delivery_id)

    world.deliveries.get = counting_get  # type: ignore[method-assign]
    return reads


def test_the_next_change_starts_from_the_state_this_process_saved():
    world = make_world(flight_seconds=60)  # a flight that takes time: the timer is the outbox
    world.deliveries.add(Delivery.requested("d-1", "fp", T0))
    timing = world.delivery.timing
    reads = _count_delivery_reads(world)
    world.delivery.change("d-1", "m-1", Cause("m-1", None), lambda d, now: d.package_ready("p", now, now, timing))
    world.delivery.change("d-1", "m-2", Cause("m-2", None),
                          lambda d, now: d.drone_scheduled("drone-1", now, now, timing))
    world.delivery.change("d-1", "m-2", Cause("m-2", None),
                          lambda d, now: d.drone_scheduled("drone-1", now, now, timing))
    assert reads["n"] == 1
    assert world.publisher.types() == ["DeliveryInTransitTimer"]


def test_a_delivery_this_process_opened_takes_its_first_outcome_unread(world: World):
    assert world.delivery.open("d-1", "fp", T0) is Opening.OPENED
    reads = _count_delivery_reads(world)
    timing = world.delivery.timing
    world.delivery.change("d-1", "m-1", Cause("m-1", None), lambda d, now: d.package_ready("p", now, now, timing))
    assert reads["n"] == 0
    # Changed meanwhile by another instance: the save fails its ETag check and the record is read.
    stored = world.deliveries.get("d-1")
    assert stored is not None and stored.status.value == "Scheduling"
    world.deliveries.save(stored)
    world.delivery.change("d-1", "m-2", Cause("m-2", None), lambda d, now: d.drone_scheduled("x", now, now, timing))
    assert reads["n"] == 2 and world.status("d-1") == "Shipped"


def test_a_change_that_changes_nothing_is_not_written(world: World):
    world.deliveries.add(Delivery.requested("d-1", "fp", T0))
    timing = world.delivery.timing
    world.delivery.change("d-1", "m-1", Cause("m-1", None), lambda d, now: d.package_ready("p", now, now, timing))
    world.delivery.change("d-1", "m-2", Cause("m-2", None),
                          lambda d, now: d.drone_scheduled("drone-1", now, now, timing))
    before = world.deliveries.get("d-1")
    world.delivery.change("d-1", "m-3", Cause("m-3", None), lambda d, now: d.join_timed_out(now))
    after = world.deliveries.get("d-1")
    assert before is not None and after is not None and after.version == before.version


def test_recent_deliveries_hand_out_copies_and_drop_the_least_recent():
    recent = RecentDeliveries(capacity=2)
    for name in ("d-1", "d-2"):
        recent.put(Delivery.requested(name, "fp", T0))
    copy_of_one = recent.get("d-1")
    assert copy_of_one is not None
    copy_of_one.status = copy_of_one.status.CANCELLED  # a change that then fails must not leak in
    assert recent.get("d-1").status.value == "Requested"  # type: ignore[union-attr]
    recent.put(Delivery.requested("d-3", "fp", T0))  # d-2 is now the least recently used
    assert recent.get("d-2") is None and recent.get("d-1") is not None
    recent.forget("d-1")
    assert recent.get("d-1") is None


# -- notifications -----------------------------------------------------------------------------
def test_notifications_only_for_the_outcome_events(world: World):
    assert world.notifier.on_event("e-1", "DeliveryShipped", {"deliveryId": "d-1", "droneId": "drone-01"}, T0)
    assert world.notifier.on_event("e-2", "DeliveryFailed", {"deliveryId": "d-2", "reason": "JoinTimeout"}, T0)
    assert world.notifier.on_event("e-3", "SomethingElse", {"deliveryId": "d-3"}, T0) is None
    assert world.notifier.on_event("e-4", "DeliveryShipped", "not an object", T0) is None
    assert "JoinTimeout" in world.notifications.for_delivery("d-2")[0].message


@pytest.mark.parametrize(("event_id", "delivery_id"), [
    ("e-1", "d/1"), ("e-1", "d#1?"), ("e-1", "d\x01"), ("e-1", "d" * 2048), ("e-1", 42), ("e-1", ["d-1"]),
    ("e/1", "d-1"), ("e\\1", "d-1"), ("e#1", "d-1"), ("e\x7f", "d-1"), ("e" * 600, "d-1"), ("\ud800", "d-1"),
])
def test_an_event_whose_ids_can_never_be_stored_is_dead_lettered_once_not_retried(world: World, event_id,
                                                                                  delivery_id):
    data = {"deliveryId": delivery_id, "droneId": "drone-01"}
    assert world.notifier.on_event(event_id, "DeliveryShipped", data, T0) is None  # returns: no retry
    assert world.notifications.rows == {}
    [letter] = world.publisher.dead_letters
    assert letter.reason == "MalformedMessage" and letter.incoming.source == "eventgrid:deliveries/notifications"
    assert len(letter.incoming.message_id) <= 128 and json.loads(letter.incoming.body)["data"] == data


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
