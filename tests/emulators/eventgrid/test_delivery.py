"""Push delivery to real webhooks: validation handshakes, schemas, filters, retries,
dead-lettering and isolation between subscribers. Retry delays are scaled by 0.001."""

from __future__ import annotations

import threading

import requests
from azure.core.credentials import AzureKeyCredential
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, EventGridPublisherClient

from .conftest import CE_KEY, CE_TOPIC, EG_KEY, EG_TOPIC, unique, wait_until


def publish_eg(emulator, *events: EventGridEvent) -> None:
    EventGridPublisherClient(emulator.topic_endpoint(EG_TOPIC), AzureKeyCredential(EG_KEY)).send(list(events))


def publish_ce(emulator, *events: CloudEvent) -> None:
    EventGridPublisherClient(emulator.topic_endpoint(CE_TOPIC), AzureKeyCredential(CE_KEY)).send(list(events))


def delivery_of(emulator, topic: str, event_id: str, subscription: str) -> dict | None:
    for event in emulator.events(topic):
        if event["id"] == str(event_id):
            return next((d for d in event["deliveries"] if d["subscription"] == subscription), None)
    return None


def wait_status(emulator, topic: str, event_id: str, subscription: str, status: str) -> dict:
    return wait_until(
        lambda: (d := delivery_of(emulator, topic, event_id, subscription)) and d["status"] == status and d,
        f"delivery of {event_id} to {subscription} to become {status}",
    )


def test_webhook_delivery_after_validation_handshake(emulator, subscriber, subscriptions):
    # Shaped like the local Functions host's Event Grid trigger URL, which is an ordinary webhook.
    hook = "/runtime/webhooks/eventgrid"
    resp = subscriptions(
        EG_TOPIC, "webhook-eg", {"endpoint": subscriber.url(hook + "?functionName=on_order")}
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["deliverySchema"] == "EventGridSchema"  # defaults to the topic's schema

    [validation] = subscriber.requests_to(hook, kind="SubscriptionValidation")
    [vevent] = validation.json
    assert vevent["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent"
    assert vevent["data"]["validationCode"]

    event = EventGridEvent(
        subject="orders/1", event_type=unique("Order.Placed"), data={"total": 5}, data_version="2"
    )
    publish_eg(emulator, event)
    [note] = subscriber.wait_notifications(hook, 1)
    assert note.path == hook + "?functionName=on_order"  # the query string is kept
    assert note.headers["content-type"].startswith("application/json")
    assert note.headers["aeg-subscription-name"] == "WEBHOOK-EG"
    assert note.headers["aeg-delivery-count"] == "0"
    assert note.headers["aeg-data-version"] == "2"
    body = note.json
    assert isinstance(body, list) and len(body) == 1  # one event per POST, still an array
    assert body[0]["id"] == str(event.id) and body[0]["data"] == {"total": 5}

    d = wait_status(emulator, EG_TOPIC, event.id, "webhook-eg", "delivered")
    assert d["attempts"] == 1 and d["lastStatusCode"] == 200


def test_failed_validation_handshake_is_400_and_not_created(emulator, subscriber, subscriptions):
    subscriber.route("/wrong", handshake="wrong")
    subscriber.route("/refuse", handshake="refuse")
    for path in ("/wrong", "/refuse"):
        resp = subscriptions(EG_TOPIC, "bad-handshake", {"endpoint": subscriber.url(path)})
        assert resp.status_code == 400, resp.text
        assert "handshake" in resp.json()["error"]["message"]
    dead = subscriptions(EG_TOPIC, "unreachable", {"endpoint": "http://127.0.0.1:9/nothing"})
    assert dead.status_code == 400
    names = [
        s["name"] for s in requests.get(emulator.url(f"/topics/{EG_TOPIC}/subscriptions"), timeout=10).json()
    ]
    assert "bad-handshake" not in names and "unreachable" not in names


def test_cloudevents_subscription_uses_options_handshake(emulator, subscriber, subscriptions):
    resp = subscriptions(CE_TOPIC, "webhook-ce", {"endpoint": subscriber.url("/ce")})
    assert resp.status_code == 201, resp.text
    [options] = subscriber.requests_to("/ce", method="OPTIONS")
    assert options.headers["webhook-request-origin"] == "eventgrid.azure.net"
    assert subscriber.requests_to("/ce", kind="SubscriptionValidation") == []

    event = CloudEvent(source="/drones/1", type=unique("Drone.Ready"), data={"ok": True}, subject="drones/1")
    publish_ce(emulator, event)
    [note] = subscriber.wait_notifications("/ce", 1)
    assert note.headers["content-type"].startswith("application/cloudevents+json")
    assert note.json["id"] == event.id and note.json["data"] == {"ok": True}  # a single structured event
    wait_status(emulator, CE_TOPIC, event.id, "webhook-ce", "delivered")

    subscriber.route("/ce-bad", handshake="wrong")
    bad = subscriptions(CE_TOPIC, "webhook-ce-bad", {"endpoint": subscriber.url("/ce-bad")})
    assert bad.status_code == 400
    assert "WebHook-Allowed-Origin" in bad.json()["error"]["message"]


def test_event_grid_events_converted_for_cloudevents_subscription(emulator, subscriber, subscriptions):
    resp = subscriptions(
        EG_TOPIC, "eg-to-ce", {"endpoint": subscriber.url("/conv"), "deliverySchema": "CloudEventSchemaV1_0"}
    )
    assert resp.status_code == 201, resp.text
    event = EventGridEvent(
        subject="orders/9", event_type=unique("Order.Shipped"), data={"n": 9}, data_version="3"
    )
    publish_eg(emulator, event)
    [note] = subscriber.wait_notifications("/conv", 1)
    ce = note.json
    assert ce["specversion"] == "1.0"
    assert ce["type"] == event.event_type and ce["subject"] == "orders/9" and ce["data"] == {"n": 9}
    assert ce["source"].endswith("/topics/orders")
    assert ce["dataschema"] == "#3"

    # Azure cannot deliver CloudEvents input as Event Grid schema; neither can the emulator.
    refused = subscriptions(
        CE_TOPIC, "ce-to-eg", {"endpoint": subscriber.url("/x"), "deliverySchema": "EventGridSchema"}
    )
    assert refused.status_code == 400


def test_event_type_and_subject_filters(emulator, subscriber, subscriptions):
    wanted, other = unique("Filter.Wanted"), unique("Filter.Other")
    assert (
        subscriptions(
            CE_TOPIC,
            "by-type",
            {"endpoint": subscriber.url("/types"), "includedEventTypes": [wanted.upper()]},
        ).status_code
        == 201
    )
    assert (
        subscriptions(
            CE_TOPIC,
            "by-subject",
            {
                "endpoint": subscriber.url("/subjects"),
                "subjectBeginsWith": "/drones/",
                "subjectEndsWith": ".json",
            },
        ).status_code
        == 201
    )

    events = [
        CloudEvent(source="/s", type=wanted, subject="/drones/1.json", data={}),  # both
        CloudEvent(
            source="/s", type=other, subject="/DRONES/2.JSON", data={}
        ),  # subject only (case-insensitive)
        CloudEvent(source="/s", type=wanted, subject="/parcels/3.json", data={}),  # type only
        CloudEvent(source="/s", type=other, subject="/drones/4.xml", data={}),  # neither
    ]
    publish_ce(emulator, *events)
    by_type = subscriber.wait_notifications("/types", 2)
    by_subject = subscriber.wait_notifications("/subjects", 2)
    assert {n.json["id"] for n in by_type} == {events[0].id, events[2].id}
    assert {n.json["id"] for n in by_subject} == {events[0].id, events[1].id}

    listed = {e["id"]: e for e in emulator.events(CE_TOPIC) if e["id"] in {ev.id for ev in events}}
    assert {d["subscription"] for d in listed[events[3].id]["deliveries"]} == set()
    assert {d["subscription"] for d in listed[events[0].id]["deliveries"]} == {"by-type", "by-subject"}


def test_retry_after_500_then_success(emulator, subscriber, subscriptions):
    subscriber.route("/flaky", statuses=[500, 503, 200])
    assert subscriptions(EG_TOPIC, "flaky", {"endpoint": subscriber.url("/flaky")}).status_code == 201
    event = EventGridEvent(subject="s", event_type=unique("Retry"), data={}, data_version="1")
    publish_eg(emulator, event)

    d = wait_status(emulator, EG_TOPIC, event.id, "flaky", "delivered")
    assert d["attempts"] == 3
    notes = subscriber.notifications("/flaky")
    assert [n.headers["aeg-delivery-count"] for n in notes] == ["0", "1", "2"]
    assert all(n.json[0]["id"] == str(event.id) for n in notes)


def test_pending_delivery_shows_last_error(emulator, subscriber, subscriptions):
    subscriber.route("/down", statuses=[500])
    assert subscriptions(EG_TOPIC, "down", {"endpoint": subscriber.url("/down")}).status_code == 201
    event = EventGridEvent(subject="s", event_type=unique("Down"), data={}, data_version="1")
    publish_eg(emulator, event)
    d = wait_until(
        lambda: (x := delivery_of(emulator, EG_TOPIC, event.id, "down")) and x["attempts"] >= 2 and x,
        "two failed attempts",
    )
    assert d["status"] == "pending"
    assert d["lastStatusCode"] == 500 and "HTTP 500" in d["lastError"]
    assert emulator.events(EG_TOPIC, type=event.event_type, status="pending")


def test_400_from_subscriber_dead_letters_without_retry(emulator, subscriber, subscriptions):
    subscriber.route("/reject", statuses=[400])
    assert subscriptions(EG_TOPIC, "reject", {"endpoint": subscriber.url("/reject")}).status_code == 201
    event = EventGridEvent(subject="s", event_type=unique("Rejected"), data={}, data_version="1")
    publish_eg(emulator, event)

    d = wait_status(emulator, EG_TOPIC, event.id, "reject", "dead-lettered")
    assert d["attempts"] == 1 and d["lastStatusCode"] == 400
    assert d["deadLetterReason"] == "NonRetriableStatus400"
    assert len(subscriber.notifications("/reject")) == 1  # dead-lettered is final: no retry follows
    dead = emulator.events(EG_TOPIC, type=event.event_type, status="dead-lettered")
    assert [e["id"] for e in dead] == [str(event.id)]


def test_max_delivery_attempts_then_dead_letter(emulator, subscriber, subscriptions):
    subscriber.route("/always-500", statuses=[500])
    body = {"endpoint": subscriber.url("/always-500"), "maxDeliveryAttempts": 3}
    assert subscriptions(EG_TOPIC, "limited", body).status_code == 201
    event = EventGridEvent(subject="s", event_type=unique("Limited"), data={}, data_version="1")
    publish_eg(emulator, event)
    d = wait_status(emulator, EG_TOPIC, event.id, "limited", "dead-lettered")
    assert d["attempts"] == 3 and d["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"
    assert len(subscriber.notifications("/always-500")) == 3


def test_slow_subscriber_blocks_neither_publishing_nor_others(emulator, subscriber, subscriptions):
    gate = threading.Event()
    subscriber.route("/slow", gate=gate)
    assert subscriptions(CE_TOPIC, "slow", {"endpoint": subscriber.url("/slow")}).status_code == 201
    assert subscriptions(CE_TOPIC, "fast", {"endpoint": subscriber.url("/fast")}).status_code == 201
    try:
        first = CloudEvent(source="/s", type=unique("Slow"), data={})
        publish_ce(emulator, first)
        subscriber.wait_notifications("/slow", 1)  # the slow subscriber now holds its request

        second = CloudEvent(source="/s", type=unique("Slow"), data={})
        publish_ce(emulator, second)  # returns although the slow subscriber has not answered
        fast = subscriber.wait_notifications("/fast", 2)
        assert {n.json["id"] for n in fast} == {first.id, second.id}
        assert delivery_of(emulator, CE_TOPIC, first.id, "slow")["status"] == "pending"
    finally:
        gate.set()
    wait_status(emulator, CE_TOPIC, first.id, "slow", "delivered")
    wait_status(emulator, CE_TOPIC, second.id, "slow", "delivered")


def test_deleted_subscription_gets_nothing_more(emulator, subscriber, subscriptions):
    assert subscriptions(CE_TOPIC, "short-lived", {"endpoint": subscriber.url("/gone")}).status_code == 201
    listed = requests.get(emulator.url(f"/topics/{CE_TOPIC}/subscriptions/short-lived"), timeout=10).json()
    assert listed["endpoint"] == subscriber.url("/gone")
    resp = requests.delete(emulator.url(f"/topics/{CE_TOPIC}/subscriptions/short-lived"), timeout=10)
    assert resp.status_code == 200
    assert (
        requests.delete(emulator.url(f"/topics/{CE_TOPIC}/subscriptions/short-lived"), timeout=10).status_code
        == 404
    )

    event = CloudEvent(source="/s", type=unique("AfterDelete"), data={})
    publish_ce(emulator, event)
    [listed_event] = emulator.events(CE_TOPIC, type=event.type)
    assert all(d["subscription"] != "short-lived" for d in listed_event["deliveries"])
    assert subscriber.notifications("/gone") == []


def test_subscription_body_is_validated(emulator, subscriber, subscriptions):
    cases = [
        ({"endpoint": "ftp://x"}, "endpoint"),
        ({"endpoint": subscriber.url("/v"), "maxDeliveryAttempts": 31}, "maxDeliveryAttempts"),
        ({"endpoint": subscriber.url("/v"), "eventTimeToLiveInMinutes": 0}, "eventTimeToLiveInMinutes"),
        ({"endpoint": subscriber.url("/v"), "includeEventTypes": ["typo"]}, "unknown key"),
        ({"endpoint": subscriber.url("/v"), "name": "other-name"}, "differs"),
    ]
    for body, expected in cases:
        resp = subscriptions(EG_TOPIC, "validated", body)
        assert resp.status_code == 400, body
        assert expected in resp.json()["error"]["message"]
    assert subscriptions("no-such-topic", "x-sub", {"endpoint": subscriber.url("/v")}).status_code == 404


def test_time_to_live_expiry_dead_letters(emulator, subscriber, subscriptions):
    # 1 minute scaled by 0.001 is 60 ms: the 10 ms, 30 ms retries fit, the 60 ms one does not.
    subscriber.route("/ttl", statuses=[503])
    body = {"endpoint": subscriber.url("/ttl"), "eventTimeToLiveInMinutes": 1}
    assert subscriptions(EG_TOPIC, "short-ttl", body).status_code == 201
    event = EventGridEvent(subject="s", event_type=unique("Ttl"), data={}, data_version="1")
    publish_eg(emulator, event)
    d = wait_status(emulator, EG_TOPIC, event.id, "short-ttl", "dead-lettered")
    assert d["deadLetterReason"] == "TimeToLiveExceeded"
    assert d["attempts"] < 30
