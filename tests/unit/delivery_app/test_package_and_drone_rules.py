"""Package limits and drone choice, pure."""

from __future__ import annotations

from datetime import timedelta

import pytest

from choreography.errors import BusinessRuleViolation
from choreography.reason_codes import ReasonCode
from choreography.retry import retry_delay
from drone_scheduler.domain import Drone, candidates, default_fleet, held_by, next_attempt_at
from package.domain import WEIGHT_LIMITS_KG, check_package

from .fakes import T0


@pytest.mark.parametrize(("size", "weight"), [("small", 0.1), ("small", 5), ("medium", 25), ("large", 100)])
def test_packages_within_their_size_limit_are_accepted(size: str, weight: float):
    check_package(size, weight)


@pytest.mark.parametrize(("size", "weight", "reason"), [
    ("small", 5.01, ReasonCode.WEIGHT_EXCEEDS_SIZE_LIMIT),
    ("medium", 30, ReasonCode.WEIGHT_EXCEEDS_SIZE_LIMIT),
    ("large", 100.5, ReasonCode.WEIGHT_EXCEEDS_SIZE_LIMIT),
    ("huge", 1, ReasonCode.UNKNOWN_PACKAGE_SIZE),
    ("small", 0, ReasonCode.INVALID_PACKAGE_WEIGHT),
    ("small", -2, ReasonCode.INVALID_PACKAGE_WEIGHT),
    ("small", float("nan"), ReasonCode.INVALID_PACKAGE_WEIGHT),
])
def test_impossible_packages_are_rejected_with_a_reason(size: str, weight: float, reason: ReasonCode):
    with pytest.raises(BusinessRuleViolation) as failure:
        check_package(size, weight)
    assert failure.value.reason is reason


def test_the_documented_limits():
    assert WEIGHT_LIMITS_KG == {"small": 5.0, "medium": 25.0, "large": 100.0}


def test_the_default_fleet():
    assert [(d.drone_id, d.capacity_kg) for d in default_fleet()] == [
        ("drone-01", 5), ("drone-02", 10), ("drone-03", 20), ("drone-04", 40), ("drone-05", 60)]
    assert len({d.drone_id for d in default_fleet(12)}) == 12


def test_smallest_free_drone_that_fits_comes_first():
    fleet = [Drone("a", 60), Drone("b", 10), Drone("c", 5), Drone("d", 20, delivery_id="busy")]
    assert [d.drone_id for d in candidates(fleet, 8)] == ["b", "a"]


def test_all_capable_drones_busy_is_an_empty_choice_not_a_failure():
    fleet = [Drone("a", 60, delivery_id="x"), Drone("b", 5)]
    assert candidates(fleet, 30) == []


def test_no_drone_able_to_carry_it_is_permanent():
    with pytest.raises(BusinessRuleViolation) as failure:
        candidates(default_fleet(), 61)
    assert failure.value.reason is ReasonCode.NO_DRONE_CAN_CARRY


def test_held_by_finds_a_deliverys_drone():
    fleet = [Drone("a", 5, "d-1"), Drone("b", 5)]
    assert [d.drone_id for d in held_by(fleet, "d-1")] == ["a"]


def test_backoff_doubles_and_is_capped():
    base, cap = timedelta(seconds=2), timedelta(seconds=30)
    assert [retry_delay(n, base, cap).total_seconds() for n in range(6)] == [2, 4, 8, 16, 30, 30]
    assert retry_delay(10_000, base, cap) == cap


def test_no_retry_past_the_deadline():
    base, cap = timedelta(seconds=2), timedelta(seconds=30)
    assert next_attempt_at(T0, 0, base, cap, T0 + timedelta(seconds=5)) == T0 + timedelta(seconds=2)
    with pytest.raises(BusinessRuleViolation) as failure:
        next_attempt_at(T0, 2, base, cap, T0 + timedelta(seconds=5))
    assert failure.value.reason is ReasonCode.NO_DRONE_BEFORE_DEADLINE


def test_equal_drones_are_tried_in_an_order_that_differs_per_delivery() -> None:
    fleet = [Drone(f"d{i}", 10.0) for i in range(8)] + [Drone("small", 5.0)]
    orders = {tuple(d.drone_id for d in candidates(fleet, 6, spread_by=f"delivery-{n}")) for n in range(20)}
    assert len({order[0] for order in orders}) > 1  # concurrent schedulers do not all race for one drone
    assert all("small" not in order for order in orders)
    assert candidates(fleet, 6, spread_by="x") == candidates(fleet, 6, spread_by="x")  # stable per delivery
    assert candidates(fleet, 4, spread_by="x")[0].drone_id == "small"  # best fit still first
