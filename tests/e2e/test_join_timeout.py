"""The saga's join timeout, end to end: one outcome never arrives in time, so Delivery compensates.

A dedicated stack with long flights keeps all five drones in the air; a sixth delivery gets its
``PackageReady`` at once but no drone, so its drone outcome is still pending when the join
timeout fires.  Delivery must cancel it with ``JoinTimeout`` and undo the package side.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .conftest import App, delivery, hops, start_stack


@pytest.fixture(scope="module")
def slow_flights() -> Iterator[App]:
    stack = start_stack(FLIGHT_TIME_SECONDS="120", JOIN_TIMEOUT_SECONDS="10", DRONE_RETRY_BASE_SECONDS="1",
                        DRONE_RETRY_MAX_SECONDS="2")
    try:
        yield App(stack)
    finally:
        stack.stop()


def test_missing_outcome_times_out_and_compensates(slow_flights: App) -> None:
    app = slow_flights
    flying = [delivery("small", 1.0) for _ in range(5)]
    for body in flying:
        assert app.submit(body)[0] == 202
    for body in flying:
        app.wait_status(body["deliveryId"], "InTransit")

    late = delivery("small", 1.0, deadline_minutes=60)
    assert app.submit(late)[0] == 202
    result = app.wait_final(late["deliveryId"])
    assert (result["status"], result["reason"]) == ("Cancelled", "JoinTimeout")
    steps = hops(result)
    assert "PackageReady" in steps and "CancelPackage" in steps
    assert "DroneScheduled" not in steps
    app.wait_event("DeliveryFailed", late["deliveryId"])
