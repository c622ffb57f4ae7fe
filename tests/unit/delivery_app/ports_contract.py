"""One test class per port, subclassed for the in-memory fake (tests/unit) and for the real
Azure Table Storage adapter on Azurite (tests/integration), so both are held to the same tests.

Each subclass provides the fixture named by the class (``deliveries``, ``packages``, ``fleet``,
``notifications``) returning a fresh, empty store.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from choreography.errors import ConcurrencyConflict
from choreography.messaging import Cause
from delivery.domain import (
    Announce,
    CancelPackage,
    Delivery,
    ReleaseDrone,
    StartFlight,
    Status,
    Timing,
)
from delivery.ports import DeliveryExists
from drone_scheduler.domain import Drone, Waiter, default_fleet
from drone_scheduler.ports import BookingChanged
from notifications.domain import Notification
from package.domain import Package, PackageStatus

from .fakes import T0
from .samples import new_id


class DeliveryRepositoryContract:
    def test_a_missing_delivery_is_none(self, deliveries):
        assert deliveries.get(new_id()) is None

    def test_add_then_get_round_trips_everything(self, deliveries):
        delivery = Delivery.requested(new_id(), "fingerprint", T0)
        delivery.package_ready("pkg-1", T0, T0, Timing())
        delivery.drone_unavailable("NoDroneCanCarryWeight", T0 + timedelta(seconds=1), T0, Timing())
        delivery.processed.add("m-1")
        delivery.outbox = [StartFlight("drone-1", T0), StartFlight(None, T0),
                           CancelPackage("pkg-1", "JoinTimeout"), ReleaseDrone(None, None),
                           Announce("DeliveryFailed", "NoDroneCanCarryWeight"), Announce("DeliveryShipped")]
        delivery.outbox_cause = Cause("m-1", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "d-1")
        deliveries.add(delivery)
        assert delivery.version is not None
        loaded = deliveries.get(delivery.delivery_id)
        assert loaded is not None
        assert loaded.version == delivery.version
        assert (loaded.status, loaded.reason) == (Status.CANCELLED, "NoDroneCanCarryWeight")
        assert loaded.package == delivery.package and loaded.drone == delivery.drone
        assert loaded.history == delivery.history
        assert loaded.processed.ids == ["m-1"]
        assert loaded.request_fingerprint == "fingerprint" and loaded.created_at == T0
        assert loaded.outbox == delivery.outbox and loaded.outbox_cause == delivery.outbox_cause

    def test_add_refuses_a_taken_id(self, deliveries):
        delivery = Delivery.requested(new_id(), "a", T0)
        deliveries.add(delivery)
        with pytest.raises(DeliveryExists):
            deliveries.add(Delivery.requested(delivery.delivery_id, "b", T0))

    def test_save_replaces_when_unchanged_and_moves_the_version(self, deliveries):
        delivery = Delivery.requested(new_id(), "a", T0)
        deliveries.add(delivery)
        first = delivery.version
        delivery.package_ready("pkg-1", T0, T0, Timing())
        deliveries.save(delivery)
        assert delivery.version != first
        loaded = deliveries.get(delivery.delivery_id)
        assert loaded is not None and loaded.status is Status.SCHEDULING

    def test_save_from_a_stale_read_conflicts(self, deliveries):
        delivery = Delivery.requested(new_id(), "a", T0)
        deliveries.add(delivery)
        one, two = deliveries.get(delivery.delivery_id), deliveries.get(delivery.delivery_id)
        one.package_ready("pkg-1", T0, T0, Timing())
        deliveries.save(one)
        two.drone_scheduled("drone-1", T0, T0, Timing())
        with pytest.raises(ConcurrencyConflict):
            deliveries.save(two)

    def test_save_of_a_never_stored_delivery_adds_it_once(self, deliveries):
        delivery = Delivery(new_id())
        deliveries.save(delivery)
        assert deliveries.get(delivery.delivery_id) is not None
        with pytest.raises(ConcurrencyConflict):
            deliveries.save(Delivery(delivery.delivery_id))


class PackageRepositoryContract:
    def test_upsert_is_idempotent_and_replaces(self, packages):
        delivery_id = new_id()
        assert packages.get(delivery_id) is None
        ready = Package(delivery_id, "pkg-1", "small", 2.5, "books", PackageStatus.READY, T0)
        packages.upsert(ready)
        packages.upsert(ready)
        assert packages.get(delivery_id) == ready
        cancelled = Package(delivery_id, "pkg-1", "small", 2.5, "books", PackageStatus.CANCELLED, T0)
        packages.upsert(cancelled)
        assert packages.get(delivery_id) == cancelled

    def test_add_inserts_once_and_never_replaces(self, packages):
        delivery_id = new_id()
        ready = Package(delivery_id, "pkg-1", "small", 2.5, "books", PackageStatus.READY, T0)
        assert packages.add(ready) is True
        tombstone = Package(delivery_id, None, None, None, None, PackageStatus.CANCELLED, T0)
        assert packages.add(tombstone) is False
        assert packages.get(delivery_id) == ready

    def test_a_tombstone_has_no_details(self, packages):
        tombstone = Package(new_id(), None, None, None, None, PackageStatus.CANCELLED, T0)
        packages.upsert(tombstone)
        assert packages.get(tombstone.delivery_id) == tombstone


class DroneFleetContract:
    def test_add_is_idempotent(self, fleet):
        drones = default_fleet(3)
        assert [fleet.add(d) for d in drones] == [True, True, True]
        assert [fleet.add(d) for d in drones] == [False, False, False]
        listed = fleet.drones()
        assert [(d.drone_id, d.capacity_kg, d.delivery_id) for d in listed] == [
            ("drone-01", 5, None), ("drone-02", 10, None), ("drone-03", 20, None)]
        assert all(d.version for d in listed)

    def test_assign_and_release_with_a_fresh_read(self, fleet):
        fleet.add(Drone("drone-01", 5))
        [drone] = fleet.drones()
        assigned = fleet.try_assign(drone, "d-1", None)
        assert assigned is not None and assigned.delivery_id == "d-1" and assigned.version != drone.version
        assert fleet.drones()[0].delivery_id == "d-1"
        released = fleet.try_release(fleet.drones()[0])
        assert released is not None and released.is_free and fleet.drones()[0].is_free

    def test_an_assignment_books_the_drone_in_the_same_write(self, fleet):
        for drone in default_fleet(3):
            fleet.add(drone)
        one, two, three = fleet.drones()
        assert fleet.booking("d-1") is None
        fleet.try_assign(one, "d-1", None)
        fleet.try_assign(two, "d-2", None)
        booking = fleet.booking("d-1")
        assert booking is not None and booking.drone_ids == ("drone-01",) and not booking.closed and booking.version
        assert fleet.try_assign(three, "d-1", booking) is not None  # a second one, over the booking as read
        assert fleet.booking("d-1").drone_ids == ("drone-01", "drone-03")
        assert fleet.booking("d-2").drone_ids == ("drone-02",)
        assert fleet.drone("drone-03").delivery_id == "d-1" and fleet.drone("drone-99") is None
        assert [d.drone_id for d in fleet.drones()] == ["drone-01", "drone-02", "drone-03"]  # bookings are no drones

    def test_an_assignment_over_a_changed_booking_writes_nothing(self, fleet):
        for drone in default_fleet(2):
            fleet.add(drone)
        one, two = fleet.drones()
        fleet.try_assign(one, "d-1", None)
        with pytest.raises(BookingChanged):
            fleet.try_assign(two, "d-1", None)  # read as absent, but there is one now
        assert fleet.drone("drone-02").is_free and fleet.booking("d-1").drone_ids == ("drone-01",)
        stale = fleet.booking("d-1")
        assert fleet.try_close("d-1", stale)
        with pytest.raises(BookingChanged):
            fleet.try_assign(fleet.drone("drone-02"), "d-1", stale)
        assert fleet.drone("drone-02").is_free

    def test_an_assignment_of_a_changed_drone_books_nothing(self, fleet):
        fleet.add(Drone("drone-01", 5))
        [stale] = fleet.drones()
        assert fleet.try_want(stale) is not None
        assert fleet.try_assign(stale, "d-1", None) is None
        assert fleet.booking("d-1") is None and fleet.drone("drone-01").is_free

    def test_a_closed_booking_is_remembered_and_closed_once_per_read(self, fleet):
        delivery_id = new_id()
        assert fleet.try_close(delivery_id, None)
        assert not fleet.try_close(delivery_id, None)  # read as absent: it is not any more
        booking = fleet.booking(delivery_id)
        assert booking is not None and booking.closed and booking.drone_ids == () and booking.settled
        assert fleet.try_close(delivery_id, booking)
        assert not fleet.try_close(delivery_id, booking)  # stale

    def test_a_drone_id_must_sort_before_the_bookings(self, fleet):
        with pytest.raises(ValueError, match="sort before"):
            fleet.add(Drone("~drone", 5))

    def test_a_wanted_mark_stays_through_assignments_and_goes_with_a_release(self, fleet):
        fleet.add(Drone("drone-01", 5))
        marked = fleet.try_want(fleet.try_assign(fleet.drones()[0], "d-1", None))
        assert marked is not None and marked.wanted and marked.delivery_id == "d-1"
        assert fleet.drones()[0].wanted and fleet.drone("drone-01").wanted
        handed = fleet.try_assign(fleet.drones()[0], "d-2", None)
        assert handed is not None and handed.wanted and fleet.drones()[0].wanted
        assert fleet.try_want(marked) is None  # stale
        released = fleet.try_release(fleet.drones()[0])
        assert released is not None and not released.wanted and not fleet.drones()[0].wanted

    def test_the_waiting_list(self, fleet):
        first = Waiter("d-1", 2.5, T0, T0 + timedelta(hours=1))
        second = Waiter("d-2", 40, T0 + timedelta(seconds=1), T0 + timedelta(hours=2))
        fleet.wait(first)
        fleet.wait(second)
        fleet.wait(first)  # again: no change
        assert sorted(fleet.waiters(), key=lambda w: w.delivery_id) == [first, second]
        fleet.stop_waiting("d-1")
        fleet.stop_waiting("d-1")  # again, and for one never listed: no error
        fleet.stop_waiting("d-never")
        assert fleet.waiters() == [second]
        assert fleet.waiter("d-2") == second and fleet.waiter("d-1") is None

    def test_a_waiter_is_claimed_once(self, fleet):
        fleet.wait(Waiter("d-1", 2.5, T0, T0 + timedelta(hours=1)))
        place = fleet.waiter("d-1")
        claimed = fleet.try_claim(place, T0 + timedelta(seconds=5))
        assert claimed is not None and claimed.claimed_at == T0 + timedelta(seconds=5)
        assert fleet.waiter("d-1").claimed_at == T0 + timedelta(seconds=5)
        assert fleet.try_claim(place, T0 + timedelta(seconds=6)) is None  # the second claimer loses
        fleet.stop_waiting("d-1")
        assert fleet.try_claim(claimed, T0 + timedelta(seconds=7)) is None  # gone: nothing to claim
        fleet.wait(place)  # back on the list: unclaimed
        assert fleet.waiter("d-1").claimed_at is None

    def test_a_stale_read_cannot_assign(self, fleet):
        fleet.add(Drone("drone-01", 5))
        [stale] = fleet.drones()
        assert fleet.try_assign(stale, "d-1", None) is not None
        assert fleet.try_assign(stale, "d-2", None) is None
        assert fleet.try_release(stale) is None
        assert fleet.drones()[0].delivery_id == "d-1"

    def test_racing_assignments_of_one_drone_have_one_winner(self, fleet):
        fleet.add(Drone("drone-01", 5))
        [drone] = fleet.drones()
        barrier = threading.Barrier(8)
        results: list[Drone | None] = []

        def race(n: int) -> None:
            barrier.wait()
            results.append(fleet.try_assign(drone, f"d-{n}", None))

        threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        assert fleet.drones()[0].delivery_id == winners[0].delivery_id


class NotificationStoreContract:
    def test_recording_the_same_event_twice_keeps_one(self, notifications):
        delivery_id = new_id()
        note = Notification(delivery_id, f"DeliveryShipped:{delivery_id}", "DeliveryShipped", "shipped", T0)
        notifications.record(note)
        notifications.record(note)
        assert notifications.for_delivery(delivery_id) == [note]
        assert notifications.for_delivery(new_id()) == []
