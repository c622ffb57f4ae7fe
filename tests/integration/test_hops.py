"""Each hop of the choreography: the decorated functions called with real trigger objects,
wired (through their own bootstrap and the app settings) to Azurite and the emulators."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
from azure.data.tables import TableServiceClient
from azure.functions.servicebus import ServiceBusMessage as ServiceBusTrigger

from drone_scheduler.domain import Drone, default_fleet
from drone_scheduler.handlers import drone_scheduler_on_request
from package.handlers import package_on_delivery_requested
from tests.support.waiting import wait_until
from tests.unit.delivery_app.samples import new_id, request_body

from .conftest import Mailbox
from .hops import (
    BASE,
    DEADLETTER,
    DRONE_RELEASE,
    DRONE_SCHEDULER,
    EVENTS,
    PACKAGE,
    Hops,
    get_status,
    health,
    json_of,
    post,
    set_fleet,
)

pytestmark = pytest.mark.usefixtures("app")


@pytest.fixture
def fleet(tables: TableServiceClient):
    return set_fleet(tables, default_fleet())


def nothing_more(mailbox: Mailbox, entity: str, delivery_id: str, subject: str | None = None) -> list[str]:
    """Subjects still arriving on ``entity`` for ``delivery_id`` up to a sentinel sent now, but
    the join timeout Ingestion scheduled at submission (it comes JOIN_TIMEOUT_SECONDS later
    whatever the step under test did)."""
    session = delivery_id if entity == EVENTS else None
    sentinel = mailbox.send_sentinel("deliveries" if entity.startswith("deliveries/") else entity,
                                     subject=subject or "Sentinel", session_id=session)
    arrived = mailbox.drain_until_sentinel(entity, sentinel, session_id=session)
    return [m.subject or "" for m in arrived if m.delivery_id == delivery_id and m.subject != "JoinTimeout"]


# -- ingestion ---------------------------------------------------------------------------------
def test_post_accepts_records_and_publishes_delivery_requested(hops: Hops, mailbox: Mailbox):
    body = request_body(datetime.now(UTC))
    response = post(body)
    assert response.status_code == 202
    reply = json_of(response)
    assert reply == {"deliveryId": body["deliveryId"], "statusUrl": f"{BASE}/deliveries/{body['deliveryId']}"}
    assert response.headers["Location"] == reply["statusUrl"]
    for entity in (PACKAGE, DRONE_SCHEDULER):
        message = hops.take(entity, "DeliveryRequested", body["deliveryId"])
        assert message.message_id == f"DeliveryRequested:{body['deliveryId']}"
        assert json.loads(message.body)["data"]["packageInfo"]["packageId"] == "pkg-1"
    status = hops.status(body["deliveryId"])
    assert status["status"] == "Requested"
    assert [(h["status"], h["by"]) for h in status["history"]] == [("Requested", "ingestion")]


def test_the_same_request_twice_is_one_delivery_and_another_body_is_a_conflict(hops: Hops, mailbox: Mailbox):
    body = request_body(datetime.now(UTC))
    assert post(body).status_code == 202
    again = post(body)
    assert again.status_code == 202 and json_of(again)["deliveryId"] == body["deliveryId"]
    conflict = post({**body, "ownerId": "someone-else"})
    assert conflict.status_code == 409 and conflict.mimetype == "application/problem+json"
    assert nothing_more(mailbox, PACKAGE, body["deliveryId"], subject="DeliveryRequested") == ["DeliveryRequested"]


def test_rejected_requests_publish_nothing(mailbox: Mailbox):
    body = request_body(datetime.now(UTC), ownerId="", package={"size": "gigantic"})
    bad = post(body)
    assert bad.status_code == 400 and bad.mimetype == "application/problem+json"
    assert {e["field"] for e in json_of(bad)["errors"]} == {"ownerId", "packageInfo.size"}
    assert post(b"<xml/>", "application/xml").status_code == 415
    assert post(b"{nope", "application/json").status_code == 400
    assert post({**request_body(datetime.now(UTC)), "padding": "x" * 70_000}).status_code == 413
    assert nothing_more(mailbox, PACKAGE, body["deliveryId"], subject="DeliveryRequested") == []
    assert get_status(body["deliveryId"]).status_code == 404


def test_unknown_delivery_is_404_and_health_is_200():
    assert get_status(new_id()).status_code == 404
    assert get_status("not a valid/id").status_code == 404
    assert health().status_code == 200


# -- package -----------------------------------------------------------------------------------
def test_package_records_the_package_and_answers_on_the_deliverys_session(hops: Hops, tables, mailbox):
    delivery_id = hops.submit()
    request = hops.package(delivery_id)
    ready = hops.take(EVENTS, "PackageReady", delivery_id)
    assert ready.session_id == delivery_id and ready.message_id == f"PackageReady:{delivery_id}"
    assert ready.application_properties["causationId"] == request.message_id
    row = tables.get_table_client("packages").get_entity(delivery_id, "package")
    assert (row["status"], row["packageId"], row["weightKg"]) == ("Ready", "pkg-1", 2.5)
    package_on_delivery_requested(request.trigger(delivery_count=2))  # redelivered
    assert nothing_more(mailbox, EVENTS, delivery_id) == []  # the second PackageReady was a duplicate


def test_an_overweight_package_is_rejected_and_dead_lettered_with_its_reason(hops: Hops, mailbox: Mailbox):
    delivery_id = hops.submit(package={"size": "small", "weight": 8})
    request = hops.package(delivery_id)
    rejected = json.loads(hops.take(EVENTS, "PackageRejected", delivery_id).body)
    assert rejected["data"]["reason"] == "WeightExceedsSizeLimit"
    [copy] = mailbox.take(DEADLETTER, lambda m: m.correlation_id == delivery_id)
    assert copy.body == request.body and copy.subject == "DeliveryRequested"
    assert copy.application_properties["DeadLetterReason"] == "WeightExceedsSizeLimit"
    assert copy.application_properties["DeadLetterSource"] == PACKAGE
    assert "5 kg" in copy.application_properties["DeadLetterErrorDescription"]


def test_a_malformed_request_is_dead_lettered_and_the_saga_still_hears_of_it(hops: Hops, mailbox: Mailbox):
    delivery_id = new_id()
    message = ServiceBusTrigger(body=b'{"type": "DeliveryRequested", "data": ', message_id=f"x-{delivery_id}",
                                     correlation_id=delivery_id, subject="DeliveryRequested", label="DeliveryRequested",
                                     application_properties={}, user_properties={}, delivery_count=1)
    package_on_delivery_requested(message)  # returns: the host completes it, no retry loop
    rejected = json.loads(hops.take(EVENTS, "PackageRejected", delivery_id).body)
    assert rejected["data"]["reason"] == "MalformedMessage"
    [copy] = mailbox.take(DEADLETTER, lambda m: m.correlation_id == delivery_id)
    assert copy.application_properties["DeadLetterReason"] == "MalformedMessage"


def test_an_unknown_schema_version_is_permanent(hops: Hops, mailbox: Mailbox):
    delivery_id = hops.submit()
    request = hops.take(PACKAGE, "DeliveryRequested", delivery_id)
    document = json.loads(request.body)
    document["schemaVersion"] = 7
    request.body = json.dumps(document).encode()
    package_on_delivery_requested(request.trigger())
    rejected = json.loads(hops.take(EVENTS, "PackageRejected", delivery_id).body)
    assert rejected["data"]["reason"] == "UnknownSchemaVersion"
    [copy] = mailbox.take(DEADLETTER, lambda m: m.correlation_id == delivery_id)
    assert copy.application_properties["DeadLetterReason"] == "UnknownSchemaVersion"


# -- drone scheduler -----------------------------------------------------------------------------
def test_the_scheduler_assigns_the_best_fit_drone(hops: Hops, fleet):
    delivery_id = hops.submit(package={"size": "medium", "weight": 15})
    hops.drone(delivery_id)
    scheduled = json.loads(hops.take(EVENTS, "DroneScheduled", delivery_id).body)
    assert scheduled["data"]["droneId"] == "drone-03"
    assert [d.drone_id for d in fleet.drones() if d.delivery_id == delivery_id] == ["drone-03"]


def test_concurrent_deliveries_competing_for_the_last_drone(hops: Hops, tables, mailbox: Mailbox):
    fleet = set_fleet(tables, [Drone("drone-last", 10)])
    ids = [hops.submit(package={"weight": 1}) for _ in range(6)]
    requests = [hops.take(DRONE_SCHEDULER, "DeliveryRequested", i) for i in ids]
    barrier = threading.Barrier(len(requests))
    errors: list[BaseException] = []

    def schedule(message) -> None:
        barrier.wait()
        try:
            drone_scheduler_on_request(message.trigger())
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=schedule, args=(m,)) for m in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    [drone] = fleet.drones()
    winner = drone.delivery_id
    assert winner in ids
    hops.take(EVENTS, "DroneScheduled", winner)
    losers = [i for i in ids if i != winner]
    retries = mailbox.take(DRONE_SCHEDULER, lambda m: m.subject == "RetryDroneScheduling" and m.delivery_id in losers,
                           count=len(losers))
    assert {m.delivery_id for m in retries} == set(losers)
    assert all(json.loads(m.body)["data"]["attempt"] == 1 for m in retries)
    assert all(nothing_more(mailbox, EVENTS, loser) == [] for loser in losers[:2])  # no second assignment

    # The drone comes back to the pool; the next retry gets it.
    fleet.try_release(fleet.drones()[0])
    next_retry = next(m for m in retries if m.delivery_id == losers[0])
    drone_scheduler_on_request(next_retry.trigger())
    assert json.loads(hops.take(EVENTS, "DroneScheduled", losers[0]).body)["data"]["droneId"] == "drone-last"


def test_a_scheduler_that_dies_after_the_assignment_gives_the_same_drone_on_redelivery(
        hops: Hops, fleet, monkeypatch: pytest.MonkeyPatch):
    """The assignment and the delivery's booking are one transaction: the broker's redelivery, on
    a fresh instance that remembers nothing, finds the drone through the booking, not a second."""
    from choreography.runtime import reset_runtime, runtime

    delivery_id = hops.submit(package={"size": "medium", "weight": 15})
    request = hops.take(DRONE_SCHEDULER, "DeliveryRequested", delivery_id)

    def dies(*args: object, **kwargs: object) -> None:
        raise ConnectionError("the host died after the assignment was written")

    monkeypatch.setattr(runtime().publisher, "send", dies)
    with pytest.raises(ConnectionError):
        drone_scheduler_on_request(request.trigger())
    monkeypatch.undo()
    reset_runtime()
    assert [d.drone_id for d in fleet.drones() if d.delivery_id == delivery_id] == ["drone-03"]
    drone_scheduler_on_request(request.trigger(delivery_count=2))
    scheduled = json.loads(hops.take(EVENTS, "DroneScheduled", delivery_id).body)
    assert scheduled["data"]["droneId"] == "drone-03"
    assert [d.drone_id for d in fleet.drones() if d.delivery_id == delivery_id] == ["drone-03"]


def test_a_package_no_drone_can_carry_is_unavailable_for_good(hops: Hops, fleet, mailbox: Mailbox):
    delivery_id = hops.submit(package={"size": "large", "weight": 75})
    hops.drone(delivery_id)
    unavailable = json.loads(hops.take(EVENTS, "DroneUnavailable", delivery_id).body)
    assert unavailable["data"]["reason"] == "NoDroneCanCarryWeight"
    [copy] = mailbox.take(DEADLETTER, lambda m: m.correlation_id == delivery_id)
    assert copy.application_properties["DeadLetterSource"] == DRONE_SCHEDULER


# -- delivery: the join ------------------------------------------------------------------------------
@pytest.mark.parametrize("package_first", [True, False], ids=["package-first", "drone-first"])
def test_the_join_in_either_order_ships_and_releases_the_drone(hops: Hops, fleet, mailbox, package_first: bool):
    delivery_id = hops.submit()
    hops.package(delivery_id)
    hops.drone(delivery_id)
    first, second = ("PackageReady", "DroneScheduled") if package_first else ("DroneScheduled", "PackageReady")
    hops.outcome(delivery_id, first)
    assert hops.status(delivery_id)["status"] == "Scheduling"
    hops.outcome(delivery_id, second)
    assert hops.status(delivery_id)["status"] == "InTransit"
    hops.outcome(delivery_id, "DeliveryInTransitTimer")  # FLIGHT_TIME_SECONDS=0.2
    status = hops.status(delivery_id)
    assert (status["status"], status["droneId"]) == ("Shipped", "drone-01")
    [event] = hops.announced(delivery_id, "DeliveryShipped")
    assert event["event"]["data"]["status"] == "Shipped"
    hops.release_drone(delivery_id)
    assert all(d.is_free for d in fleet.drones())
    assert hops.history(delivery_id)[-1] == "ReleaseDrone"
    # the end of a flight is not acknowledged: the delivery needs nothing more from the drone
    assert nothing_more(mailbox, EVENTS, delivery_id) == []


def test_a_redelivered_outcome_is_applied_once(hops: Hops, fleet, mailbox: Mailbox):
    delivery_id = hops.submit()
    hops.package(delivery_id)
    ready = hops.outcome(delivery_id, "PackageReady")
    hops.deliver(ready, delivery_count=2)
    hops.deliver(ready, delivery_count=3)
    assert hops.history(delivery_id).count("PackageReady") == 1
    timers = mailbox.take(EVENTS, lambda m: m.subject == "JoinTimeout", session_id=delivery_id)
    assert len(timers) == 1
    assert nothing_more(mailbox, EVENTS, delivery_id) == []


def test_a_crash_mid_handler_is_redelivered_and_completes_exactly_once(hops: Hops, fleet, mailbox,
                                                                       monkeypatch: pytest.MonkeyPatch):
    from choreography.runtime import reset_runtime

    delivery_id = hops.submit()
    hops.package(delivery_id)
    hops.drone(delivery_id)
    hops.outcome(delivery_id, "PackageReady")
    hops.outcome(delivery_id, "DroneScheduled")
    timer = hops.take(EVENTS, "DeliveryInTransitTimer", delivery_id)
    monkeypatch.setenv("EventGridTopicKey", "a-wrong-key")  # Event Grid refuses: the handler raises
    reset_runtime()
    with pytest.raises(Exception, match=r"(?i)unauthori|401|auth"):
        hops.deliver(timer)
    # The change was saved with its effects (the outbox) before they were sent; the announcement
    # that failed is still owed, and the redelivery makes it.
    assert hops.status(delivery_id)["status"] == "Shipped"
    assert [e for e in hops.eventgrid.events(type="DeliveryShipped")
            if e["event"].get("subject") == f"deliveries/{delivery_id}"] == []
    monkeypatch.undo()
    reset_runtime()
    hops.deliver(timer, delivery_count=2)  # the broker's redelivery
    assert hops.status(delivery_id)["status"] == "Shipped"
    assert len(hops.announced(delivery_id, "DeliveryShipped")) == 1
    hops.take(DRONE_RELEASE, "ReleaseDrone", delivery_id)
    assert nothing_more(mailbox, DRONE_RELEASE, delivery_id, subject="ReleaseDrone") == []  # re-send deduplicated


def test_a_rejected_package_cancels_the_delivery_and_releases_its_drone(hops: Hops, fleet, mailbox):
    delivery_id = hops.submit(package={"size": "small", "weight": 9})
    hops.package(delivery_id)
    hops.drone(delivery_id)
    hops.outcome(delivery_id, "DroneScheduled")
    hops.outcome(delivery_id, "PackageRejected")
    status = hops.status(delivery_id)
    assert (status["status"], status["reason"]) == ("Cancelled", "WeightExceedsSizeLimit")
    command = json.loads(hops.release_drone(delivery_id).body)
    assert command["data"] == {"deliveryId": delivery_id, "droneId": "drone-02", "reason": "WeightExceedsSizeLimit"}
    assert all(d.is_free for d in fleet.drones())
    [failed] = hops.announced(delivery_id, "DeliveryFailed")
    assert failed["event"]["data"]["reason"] == "WeightExceedsSizeLimit"
    mailbox.take(DEADLETTER, lambda m: m.correlation_id == delivery_id)


def test_join_timeout_cancels_and_compensates_both_sides(hops: Hops, fleet, tables, mailbox: Mailbox):
    delivery_id = hops.submit()
    hops.package(delivery_id)
    hops.outcome(delivery_id, "PackageReady")  # Drone Scheduler never answers
    timeout = hops.take(EVENTS, "JoinTimeout", delivery_id)  # JOIN_TIMEOUT_SECONDS=2, scheduled on the session
    assert timeout.scheduled_enqueue_time_utc is not None
    hops.deliver(timeout)
    status = hops.status(delivery_id)
    assert (status["status"], status["reason"]) == ("Cancelled", "JoinTimeout")
    hops.cancel_package(delivery_id)
    row = tables.get_table_client("packages").get_entity(delivery_id, "package")
    assert row["status"] == "Cancelled"
    hops.outcome(delivery_id, "PackageCancelled")
    hops.release_drone(delivery_id)  # no drone yet: tells the scheduler to stop
    hops.outcome(delivery_id, "DroneReleased")
    hops.drone(delivery_id)  # the scheduler finally gets to the request: too late, nothing assigned
    assert all(d.is_free for d in fleet.drones())
    assert nothing_more(mailbox, EVENTS, delivery_id) == []
    [failed] = hops.announced(delivery_id, "DeliveryFailed")
    assert failed["event"]["data"]["reason"] == "JoinTimeout"
    assert {"CancelPackage", "PackageCancelled", "ReleaseDrone", "DroneReleased"} <= set(hops.history(delivery_id))


def test_a_package_no_drone_can_carry_cancels_the_package(hops: Hops, fleet, tables):
    delivery_id = hops.submit(package={"size": "large", "weight": 90})
    hops.package(delivery_id)
    hops.drone(delivery_id)
    hops.outcome(delivery_id, "PackageReady")
    hops.outcome(delivery_id, "DroneUnavailable")
    status = hops.status(delivery_id)
    assert (status["status"], status["reason"]) == ("Cancelled", "NoDroneCanCarryWeight")
    hops.cancel_package(delivery_id)
    assert tables.get_table_client("packages").get_entity(delivery_id, "package")["status"] == "Cancelled"


# -- notifications: fan-out beyond the workflow -------------------------------------------------------
def test_the_event_grid_listener_records_one_notification_per_event(hops: Hops, fleet, tables):
    delivery_id = hops.submit()
    hops.package(delivery_id)
    hops.drone(delivery_id)
    hops.outcome(delivery_id, "PackageReady")
    hops.outcome(delivery_id, "DroneScheduled")
    hops.outcome(delivery_id, "DeliveryInTransitTimer")
    [shipped] = hops.announced(delivery_id, "DeliveryShipped")
    hops.notify(shipped)
    hops.notify(shipped)  # Event Grid delivers at least once
    rows = list(tables.get_table_client("notifications").query_entities(
        "PartitionKey eq @pk", parameters={"pk": delivery_id}))
    assert [(r["RowKey"], r["eventType"]) for r in rows] == [(f"DeliveryShipped:{delivery_id}", "DeliveryShipped")]
    assert "drone-01" in rows[0]["message"]


def test_the_listener_also_takes_event_grid_schema_events(tables):
    from notifications.handlers import notifications_on_delivery_event

    delivery_id = new_id()
    notifications_on_delivery_event(func.EventGridEvent(
        id=f"DeliveryFailed:{delivery_id}", data={"deliveryId": delivery_id, "reason": "JoinTimeout"},
        topic="/topics/deliveries", subject=f"deliveries/{delivery_id}", event_type="DeliveryFailed",
        event_time=datetime.now(UTC) - timedelta(seconds=1), data_version="1.0"))
    row = wait_until(lambda: list(tables.get_table_client("notifications").query_entities(
        "PartitionKey eq @pk", parameters={"pk": delivery_id})), "the notification row")[0]
    assert row["eventType"] == "DeliveryFailed" and "JoinTimeout" in row["message"]
