"""The Delivery saga's rules, pure: join in either order, failures, timers, late answers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from choreography.reason_codes import ReasonCode
from delivery.domain import (
    Announce,
    CancelPackage,
    Delivery,
    ReleaseDrone,
    StartFlight,
    Status,
    Timing,
)

from .fakes import T0

TIMING = Timing(flight_time=timedelta(seconds=30))
LATER = T0 + timedelta(seconds=1)


def new() -> Delivery:
    return Delivery.requested("d-1", "fp", T0)


def statuses(delivery: Delivery) -> list[str]:
    return [h.status for h in delivery.history]


def test_a_new_delivery_is_requested_by_ingestion():
    delivery = new()
    assert delivery.status is Status.REQUESTED
    assert [(h.status, h.by) for h in delivery.history] == [("Requested", "ingestion")]


def test_the_first_successful_outcome_waits_for_the_other_under_the_join_timeout_ingestion_set():
    delivery = new()
    assert delivery.package_ready("pkg-1", T0, T0, TIMING) == []
    assert delivery.status is Status.SCHEDULING


def test_a_join_timeout_ends_a_delivery_whose_request_never_went_out():
    delivery = new()  # recorded by Ingestion; DeliveryRequested was never published
    effects = delivery.join_timed_out(T0 + timedelta(minutes=5))
    assert effects == [CancelPackage(None, "JoinTimeout"), ReleaseDrone(None, "JoinTimeout"),
                       Announce("DeliveryFailed", "JoinTimeout")]
    assert delivery.status is Status.CANCELLED


def test_a_join_timeout_or_an_abort_for_a_delivery_never_recorded_changes_nothing():
    delivery = Delivery("d-never")  # Ingestion scheduled the timeout, then failed to record it
    assert delivery.join_timed_out(T0 + timedelta(minutes=5)) == []
    assert delivery.abort("MalformedMessage", T0) == []  # a hostile message on a made-up session
    assert delivery.status is Status.REQUESTED and delivery.history == []


@pytest.mark.parametrize("package_first", [True, False])
def test_both_outcomes_ok_in_either_order_start_the_flight(package_first: bool):
    delivery = new()
    steps = [lambda: delivery.package_ready("pkg-1", T0, LATER, TIMING),
             lambda: delivery.drone_scheduled("drone-03", T0, LATER, TIMING)]
    if not package_first:
        steps.reverse()
    steps[0]()
    effects = steps[1]()
    assert effects == [StartFlight("drone-03", LATER + timedelta(seconds=30))]
    assert delivery.status is Status.IN_TRANSIT
    assert delivery.drone_id == "drone-03" and delivery.package_id == "pkg-1"


def test_flight_completed_ships_releases_the_drone_and_announces():
    delivery = new()
    delivery.package_ready("pkg-1", T0, T0, TIMING)
    delivery.drone_scheduled("drone-03", T0, T0, TIMING)
    effects = delivery.flight_completed(LATER)
    assert effects == [ReleaseDrone("drone-03", None), Announce("DeliveryShipped")]
    assert delivery.status is Status.SHIPPED
    assert delivery.flight_completed(LATER) == []  # a second timer changes nothing


def test_drone_scheduled_then_package_rejected_cancels_and_releases_the_drone():
    delivery = new()
    delivery.drone_scheduled("drone-02", T0, T0, TIMING)
    effects = delivery.package_rejected("pkg-1", "WeightExceedsSizeLimit", T0, T0, TIMING)
    assert effects == [ReleaseDrone("drone-02", "WeightExceedsSizeLimit"),
                       Announce("DeliveryFailed", "WeightExceedsSizeLimit")]
    assert delivery.status is Status.CANCELLED
    assert delivery.reason == "WeightExceedsSizeLimit"


def test_a_failed_side_cancels_at_once_with_its_own_reason_while_the_other_is_still_working():
    delivery = new()
    effects = delivery.package_rejected("pkg-1", "WeightExceedsSizeLimit", T0, T0, TIMING)
    # No join timeout to wait for: the scheduler is told to stop, the delivery ends now.
    assert effects == [ReleaseDrone(None, "WeightExceedsSizeLimit"),
                       Announce("DeliveryFailed", "WeightExceedsSizeLimit")]
    assert delivery.status is Status.CANCELLED and delivery.reason == "WeightExceedsSizeLimit"
    assert delivery.join_timed_out(T0 + timedelta(minutes=5)) == []
    # The drone the scheduler found meanwhile goes straight back.
    assert delivery.drone_scheduled("drone-02", LATER, LATER, TIMING) == [
        ReleaseDrone("drone-02", "WeightExceedsSizeLimit")]
    assert delivery.reason == "WeightExceedsSizeLimit"


def test_drone_unavailable_cancels_and_cancels_the_package():
    delivery = new()
    delivery.package_ready("pkg-1", T0, T0, TIMING)
    effects = delivery.drone_unavailable("NoDroneCanCarryWeight", T0, T0, TIMING)
    assert effects == [CancelPackage("pkg-1", "NoDroneCanCarryWeight"),
                       Announce("DeliveryFailed", "NoDroneCanCarryWeight")]


def test_the_first_failure_s_reason_wins_and_a_second_failure_needs_no_compensation():
    delivery = new()
    delivery.package_rejected("pkg-1", "WeightExceedsSizeLimit", T0, T0, TIMING)
    assert delivery.drone_unavailable("NoDroneCanCarryWeight", T0, T0, TIMING) == []
    assert delivery.reason == "WeightExceedsSizeLimit"


def test_join_timeout_compensates_what_succeeded_and_tells_the_silent_side_to_stop():
    delivery = new()
    delivery.package_ready("pkg-1", T0, T0, TIMING)
    effects = delivery.join_timed_out(T0 + timedelta(minutes=5))
    assert effects == [CancelPackage("pkg-1", "JoinTimeout"), ReleaseDrone(None, "JoinTimeout"),
                       Announce("DeliveryFailed", "JoinTimeout")]
    assert delivery.status is Status.CANCELLED and delivery.reason == ReasonCode.JOIN_TIMEOUT


def test_join_timeout_after_the_join_changes_nothing():
    delivery = new()
    delivery.package_ready("pkg-1", T0, T0, TIMING)
    delivery.drone_scheduled("drone-01", T0, T0, TIMING)
    assert delivery.join_timed_out(T0 + timedelta(minutes=5)) == []
    assert delivery.status is Status.IN_TRANSIT


def test_a_late_success_after_the_end_is_compensated_at_once():
    delivery = new()
    delivery.package_ready("pkg-1", T0, T0, TIMING)
    delivery.join_timed_out(T0 + timedelta(minutes=5))
    effects = delivery.drone_scheduled("drone-04", T0, T0 + timedelta(minutes=6), TIMING)
    assert effects == [ReleaseDrone("drone-04", "JoinTimeout")]
    assert delivery.status is Status.CANCELLED


def test_a_late_failure_after_the_end_needs_nothing():
    delivery = new()
    delivery.package_ready("pkg-1", T0, T0, TIMING)
    delivery.join_timed_out(T0 + timedelta(minutes=5))
    assert delivery.drone_unavailable("NoDroneAvailableBeforeDeadline", T0, T0, TIMING) == []


def test_the_same_answer_twice_is_joined_once():
    delivery = new()
    delivery.package_ready("pkg-1", T0, T0, TIMING)
    assert delivery.package_ready("pkg-1", T0, T0, TIMING) == []
    assert statuses(delivery).count("PackageReady") == 1


def test_a_second_different_drone_is_given_back():
    delivery = new()
    delivery.drone_scheduled("drone-01", T0, T0, TIMING)
    assert delivery.drone_scheduled("drone-02", T0, T0, TIMING) == [ReleaseDrone("drone-02", None)]
    assert delivery.drone_id == "drone-01"


def test_abort_ends_a_running_delivery_and_compensates_both_sides():
    delivery = new()
    delivery.package_ready("pkg-1", T0, T0, TIMING)
    effects = delivery.abort("UnknownSchemaVersion", T0)
    assert effects == [CancelPackage("pkg-1", "UnknownSchemaVersion"), ReleaseDrone(None, "UnknownSchemaVersion"),
                       Announce("DeliveryFailed", "UnknownSchemaVersion")]
    assert delivery.abort("MalformedMessage", T0) == []


def test_history_names_each_hop_who_and_when():
    delivery = new()
    delivery.package_ready("pkg-1", T0, T0 + timedelta(seconds=1), TIMING)
    delivery.drone_scheduled("drone-01", T0 + timedelta(seconds=2), T0 + timedelta(seconds=3), TIMING)
    delivery.flight_completed(T0 + timedelta(seconds=4))
    delivery.drone_released(["drone-01"], T0 + timedelta(seconds=5))
    assert [(h.status, h.by) for h in delivery.history] == [
        ("Requested", "ingestion"), ("PackageReady", "package"), ("DroneScheduled", "drone-scheduler"),
        ("InTransit", "delivery"), ("Shipped", "delivery"), ("ReleaseDrone", "delivery"),
        ("DroneReleased", "drone-scheduler")]
    assert [h.at for h in delivery.history] == sorted(h.at for h in delivery.history)
