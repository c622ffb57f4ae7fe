"""Event Grid: the emulator delivers to devhost's system webhook exactly as Azure would
(handshakes first), and the output binding publishes through the real SDK."""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from azure.core.credentials import AzureKeyCredential
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, EventGridPublisherClient

from devstack.stack import DevHost, EventGridEmulator

from .conftest import EG_KEY, Records
from .support import wait_until


def webhook(devhost: DevHost, function: str) -> str:
    return devhost.url(f"/runtime/webhooks/eventgrid?functionName={function}")


@pytest.fixture(scope="module")
def subscribed(devhost: DevHost, eventgrid: EventGridEmulator) -> EventGridEmulator:
    """Subscriptions added through the management API, so the emulator runs the handshakes."""
    for topic, function in (("notifications", "eg_notifications"), ("cloud", "eg_cloud")):
        resp = requests.put(f"{eventgrid.base_url}/topics/{topic}/subscriptions/devhost-{function.replace('_', '-')}",
                            json={"endpoint": webhook(devhost, function)}, timeout=60)
        assert resp.status_code in (200, 201), resp.text  # a failed handshake would be 400
    return eventgrid


def test_event_grid_schema_event_is_delivered_after_the_validation_handshake(
        subscribed: EventGridEmulator, records: Records, tag: str) -> None:
    client = EventGridPublisherClient(subscribed.topic_endpoint("notifications"), AzureKeyCredential(EG_KEY))
    event = EventGridEvent(subject=f"orders/{tag}", event_type="Sample.Happened", data={"tag": tag, "x": 1},
                           data_version="1.0")
    client.send([event])
    [seen] = records.wait(tag, 1, "eg_notifications")
    assert seen["id"] == str(event.id)
    assert seen["event_type"] == "Sample.Happened"
    assert seen["subject"] == f"orders/{tag}"
    assert seen["data"] == {"tag": tag, "x": 1}
    assert seen["kind"] == "EventGridEvent"


def test_cloud_event_is_delivered_after_the_options_handshake(
        subscribed: EventGridEmulator, records: Records, tag: str) -> None:
    client = EventGridPublisherClient(subscribed.topic_endpoint("cloud"), AzureKeyCredential(EG_KEY))
    event = CloudEvent(source="/sample", type="Sample.Cloud", data={"tag": tag})
    client.send([event])
    [seen] = records.wait(tag, 1, "eg_cloud")
    assert seen["id"] == event.id
    assert (seen["type"], seen["source"], seen["kind"]) == ("Sample.Cloud", "/sample", "CloudEvent")


def test_failing_function_answers_500_so_event_grid_retries(
        subscribed: EventGridEmulator, records: Records, tag: str) -> None:
    client = EventGridPublisherClient(subscribed.topic_endpoint("notifications"), AzureKeyCredential(EG_KEY))
    client.send([EventGridEvent(subject="s", event_type="Sample.Failing", data={"tag": tag, "fail": True},
                                data_version="1.0")])
    records.wait(tag, 2, "eg_notifications")  # the emulator retried after devhost's 500

    def attempts() -> int:
        for item in subscribed.events("notifications"):
            if item["event"]["data"].get("tag") == tag:
                return max((d.get("attempts", 0) for d in item["deliveries"]), default=0)
        return 0

    wait_until(lambda: attempts() >= 2, "two delivery attempts recorded by the emulator")


class TestWebhookContract:
    def test_validation_handshake_echoes_the_code(self, devhost: DevHost) -> None:
        code = str(uuid.uuid4())
        event = [{"id": "1", "topic": "t", "subject": "",
                  "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                  "eventTime": "2024-01-01T00:00:00Z", "dataVersion": "2", "metadataVersion": "1",
                  "data": {"validationCode": code, "validationUrl": "https://example.invalid"}}]
        resp = requests.post(webhook(devhost, "eg_notifications"), json=event,
                             headers={"aeg-event-type": "SubscriptionValidation"}, timeout=30)
        assert resp.status_code == 200
        assert resp.json() == {"validationResponse": code}

    def test_options_handshake_allows_the_origin(self, devhost: DevHost) -> None:
        resp = requests.options(webhook(devhost, "eg_cloud"), headers={"WebHook-Request-Origin": "eventgrid.azure.net"},
                                timeout=30)
        assert resp.status_code == 200
        assert resp.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"

    def test_unknown_function_is_404_and_missing_event_type_is_400(self, devhost: DevHost) -> None:
        assert requests.post(webhook(devhost, "nope"), json=[], headers={"aeg-event-type": "Notification"},
                             timeout=30).status_code == 404
        assert requests.post(webhook(devhost, "eg_notifications"), json=[], timeout=30).status_code == 400

    def test_notification_success_is_202_and_failure_is_500(self, devhost: DevHost, records: Records, tag: str) -> None:
        def event(**data: object) -> dict:
            return {"id": str(uuid.uuid4()), "subject": "s", "eventType": "T", "eventTime": "2024-01-01T00:00:00Z",
                    "dataVersion": "1", "data": {"tag": tag, **data}}

        ok = requests.post(webhook(devhost, "eg_notifications"), json=[event(), event()],
                           headers={"aeg-event-type": "Notification"}, timeout=30)
        assert ok.status_code == 202
        assert len(records.wait(tag, 2, "eg_notifications")) == 2  # one invocation per event
        bad = requests.post(webhook(devhost, "eg_notifications"), json=[event(fail=True)],
                            headers={"aeg-event-type": "Notification"}, timeout=30)
        assert bad.status_code == 500
        assert "asked to fail" in bad.text


def test_output_binding_publishes_what_the_function_set(
        devhost: DevHost, eventgrid: EventGridEmulator, tag: str) -> None:
    resp = requests.post(devhost.url(f"/api/publish/{tag}?count=3"), timeout=30)
    assert resp.status_code == 202, resp.text

    def published() -> list[dict]:
        return [e["event"] for e in eventgrid.events("outbox") if e["event"]["data"].get("tag") == tag]

    events = wait_until(lambda: len(p := published()) == 3 and p, "3 events on the outbox topic")
    assert sorted(e["data"]["n"] for e in events) == [0, 1, 2]
    assert {e["eventType"] for e in events} == {"Sample.Published"}
    assert all(e["subject"].startswith(f"outbox/{tag}/") and e["eventTime"] for e in events)
    json.dumps(events)  # plain JSON all the way
