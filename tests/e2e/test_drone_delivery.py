"""Drone delivery end to end through devhost: HTTP in, Service Bus choreography, Event Grid out.

Everything runs as real processes (Azurite, our Service Bus and Event Grid emulators, devhost
running function_app.py); the tests only use HTTP and the real SDKs.  Waits poll with generous
deadlines; no assertion is about how long anything took.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import time
from typing import Any

from azure.data.tables import TableServiceClient

from .conftest import App, call, delivery, hops


def _rows(app: App, table: str, query: str, **params: Any) -> list[dict[str, Any]]:
    service = TableServiceClient.from_connection_string(app.stack.storage_connection)
    return list(service.get_table_client(table).query_entities(query, parameters=params))


def _drone_of(result: dict[str, Any]) -> str | None:
    for hop in result["history"]:
        if hop["status"] == "DroneScheduled":  # "drone-05", or "drone-05 after 1.2 s in line"
            return (hop.get("detail") or "").split()[0] or None
    return None


def test_happy_path_ships_and_announces_on_event_grid(app: App) -> None:
    body = delivery("medium", 9.5)
    code, accepted, headers = app.submit(body)
    assert code == 202
    assert accepted["deliveryId"] == body["deliveryId"]
    assert headers["Location"].endswith(f"/api/deliveries/{body['deliveryId']}")
    assert accepted["statusUrl"].endswith(f"/api/deliveries/{body['deliveryId']}")

    result = app.wait_final(body["deliveryId"])
    assert result["status"] == "Shipped" and not result.get("reason")
    steps = hops(result)
    for step in ("Requested", "PackageReady", "DroneScheduled", "InTransit", "Shipped", "ReleaseDrone"):
        assert step in steps, steps
    assert steps.index("InTransit") < steps.index("Shipped")
    assert all({"status", "at", "by"} <= set(h) for h in result["history"])

    app.wait_event("DeliveryShipped", body["deliveryId"])
    # The Event Grid-triggered listener downstream recorded a notification.
    deadline = time.monotonic() + 60
    while not _rows(app, "notifications", "PartitionKey eq @d", d=body["deliveryId"]):
        assert time.monotonic() < deadline, "no notification recorded for the shipped delivery"
        time.sleep(0.3)


def test_package_over_its_weight_limit_is_cancelled_and_drone_released(app: App) -> None:
    body = delivery("small", 8.0)
    assert app.submit(body)[0] == 202
    result = app.wait_final(body["deliveryId"])
    assert (result["status"], result["reason"]) == ("Cancelled", "WeightExceedsSizeLimit")
    steps = hops(result)
    assert "PackageRejected" in steps
    assert "ReleaseDrone" in steps  # the drone side did not fail: told to stop, or to give its drone back
    app.wait_status(body["deliveryId"], "DroneReleased")  # a compensation is acknowledged
    app.wait_event("DeliveryFailed", body["deliveryId"])


def test_no_drone_can_carry_cancels_and_compensates_the_package(app: App) -> None:
    body = delivery("large", 85.0)
    assert app.submit(body)[0] == 202
    result = app.wait_final(body["deliveryId"])
    assert (result["status"], result["reason"]) == ("Cancelled", "NoDroneCanCarryWeight")
    steps = hops(result)
    assert "DroneUnavailable" in steps
    if "PackageReady" in steps:
        assert "CancelPackage" in steps


def test_same_request_twice_is_one_delivery_and_a_changed_one_conflicts(app: App) -> None:
    body = delivery("small", 3.0)
    first = app.submit(body)
    again = app.submit(body)
    assert first[0] == again[0] == 202
    assert first[1]["deliveryId"] == again[1]["deliveryId"]
    changed = dict(body, dropoffLocation="Tacoma")
    code, _, headers = app.submit(changed)
    assert code == 409
    assert headers["Content-Type"].startswith("application/problem+json")
    result = app.wait_final(body["deliveryId"])
    assert result["status"] == "Shipped"
    assert hops(result).count("Requested") == 1
    time.sleep(1)  # give a second shipment, if there were one, the chance to show up
    shipped = [e for e in app.events(type_="DeliveryShipped") if body["deliveryId"] in json.dumps(e)]
    assert len(shipped) == 1


def test_bad_requests_get_problem_details_and_publish_nothing(app: App) -> None:
    body = delivery()
    broken = dict(body, ownerId="", packageInfo=dict(body["packageInfo"], size="huge", weight=-1))
    code, problem, headers = app.submit(broken)
    assert code == 400 and headers["Content-Type"].startswith("application/problem+json")
    text = json.dumps(problem)
    for field in ("ownerId", "packageInfo.size", "packageInfo.weight"):
        assert field in text, (field, problem)
    assert app.status(body["deliveryId"])[0] == 404  # nothing was accepted

    code, problem, _ = call("POST", f"{app.api}/deliveries", raw=b"not json", headers={"Content-Type": "text/plain"})
    assert code == 415
    code, problem, _ = call("POST", f"{app.api}/deliveries", raw=b"{" + b" " * (70 * 1024) + b"}")
    assert code == 413
    assert app.status("never-submitted")[0] == 404


def test_accepted_work_survives_a_host_crash(app: App) -> None:
    body = delivery("small", 1.5)
    assert app.submit(body)[0] == 202
    app.stack.kill_devhost()  # SIGKILL while the choreography is in flight
    app.stack.start_devhost()
    result = app.wait_final(body["deliveryId"])
    assert result["status"] == "Shipped"


def test_concurrent_deliveries_compete_for_the_one_drone_that_can_carry_them(app: App) -> None:
    # Only the 60 kg drone can carry 50 kg: six deliveries at once must take turns, never share it.
    bodies = [delivery("large", 50.0) for _ in range(6)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda b: app.submit(b)[0], bodies))
    assert codes == [202] * 6
    results = [app.wait_final(b["deliveryId"], timeout=240) for b in bodies]
    assert [r["status"] for r in results] == ["Shipped"] * 6
    drones = {_drone_of(r) for r in results}
    assert len(drones) == 1, drones
    windows = []
    for r in results:
        at = {h["status"]: h["at"] for h in r["history"]}
        windows.append((at["DroneScheduled"], at["ReleaseDrone"]))
    windows.sort()
    for (_, end), (start, _) in itertools.pairwise(windows):
        assert end <= start, f"drone assigned twice at once: {windows}"
