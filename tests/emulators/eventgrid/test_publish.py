"""Publishing with the real azure-eventgrid SDK (sync and aio): accepted batches, the events
listing, and the errors Azure answers with (401, 400, 413, 404)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
import requests
from azure.core.credentials import AzureKeyCredential, AzureSasCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, EventGridPublisherClient, generate_sas
from azure.eventgrid.aio import EventGridPublisherClient as AsyncEventGridPublisherClient

from .conftest import CE_KEY, CE_TOPIC, EG_KEY, EG_TOPIC, unique


def eg_client(emulator, key: str = EG_KEY, topic: str = EG_TOPIC) -> EventGridPublisherClient:
    return EventGridPublisherClient(emulator.topic_endpoint(topic), AzureKeyCredential(key))


def test_publish_event_grid_schema_batch_with_sync_sdk(emulator):
    etype = unique("Orders.Created")
    events = [
        EventGridEvent(subject=f"orders/{i}", event_type=etype, data={"n": i}, data_version="1.0")
        for i in range(3)
    ]
    with eg_client(emulator) as client:
        client.send(events)

    listed = emulator.events(EG_TOPIC, type=etype)
    assert [e["id"] for e in listed] == [str(e.id) for e in events]  # oldest first
    first = listed[0]
    assert first["schema"] == "EventGridSchema"
    assert first["event"]["data"] == {"n": 0}
    assert first["event"]["subject"] == "orders/0"
    # Azure stamps topic and metadataVersion onto Event Grid schema events.
    assert first["event"]["topic"].endswith("/providers/Microsoft.EventGrid/topics/orders")
    assert first["event"]["metadataVersion"] == "1"
    assert first["deliveries"] == []  # no subscriptions on this topic right now


def test_publish_cloudevents_batch_with_async_sdk(emulator):
    etype = unique("Drone.Dispatched")
    events = [
        CloudEvent(source="/drones/7", type=etype, data={"drone": 7}, subject="deliveries/42"),
        CloudEvent(source="/drones/7", type=etype, data=b"\x00\x01binary"),
    ]

    async def publish() -> None:
        async with AsyncEventGridPublisherClient(
            emulator.topic_endpoint(CE_TOPIC), AzureKeyCredential(CE_KEY)
        ) as c:
            await c.send(events)

    asyncio.run(publish())
    listed = emulator.events(CE_TOPIC, type=etype)
    assert [e["id"] for e in listed] == [e.id for e in events]
    assert listed[0]["event"]["data"] == {"drone": 7}
    assert listed[0]["subject"] == "deliveries/42"
    assert listed[1]["event"]["data_base64"] == "AAFiaW5hcnk="
    assert all(e["schema"] == "CloudEventSchemaV1_0" for e in listed)


def test_single_cloudevent_content_type_is_accepted(emulator):
    etype = unique("Single")
    body = {"specversion": "1.0", "id": "one", "source": "/s", "type": etype}
    resp = requests.post(
        emulator.topic_endpoint(CE_TOPIC),
        params={"api-version": "2018-01-01"},
        data=json.dumps(body),
        headers={"aeg-sas-key": CE_KEY, "Content-Type": "application/cloudevents+json; charset=utf-8"},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    assert [e["id"] for e in emulator.events(CE_TOPIC, type=etype)] == ["one"]


def test_api_events_alias_publishes_to_first_topic(emulator):
    etype = unique("Alias")
    client = EventGridPublisherClient(emulator.url("/api/events"), AzureKeyCredential(EG_KEY))
    client.send(EventGridEvent(subject="s", event_type=etype, data={}, data_version="1"))
    assert len(emulator.events(EG_TOPIC, type=etype)) == 1


def test_second_key_and_case_insensitive_topic_name(emulator):
    etype = unique("Keys")
    client = EventGridPublisherClient(emulator.topic_endpoint("ORDERS"), AzureKeyCredential("second-key"))
    client.send(EventGridEvent(subject="s", event_type=etype, data={}, data_version="1"))
    assert len(emulator.events(EG_TOPIC, type=etype)) == 1


def test_sas_token_is_accepted(emulator):
    etype = unique("Sas")
    endpoint = emulator.topic_endpoint(EG_TOPIC)
    token = generate_sas(endpoint, EG_KEY, datetime.now(UTC) + timedelta(hours=1))
    EventGridPublisherClient(endpoint, AzureSasCredential(token)).send(
        EventGridEvent(subject="s", event_type=etype, data={}, data_version="1")
    )
    assert len(emulator.events(EG_TOPIC, type=etype)) == 1


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(
            lambda ep: generate_sas(ep, "d3Jvbmcta2V5", datetime.now(UTC) + timedelta(hours=1)),
            id="wrong-key",
        ),
        pytest.param(
            lambda ep: generate_sas(ep, EG_KEY, datetime.now(UTC) - timedelta(minutes=1)),
            id="expired",
        ),
        pytest.param(
            lambda ep: generate_sas(
                ep.replace("/orders/", "/deliveries/"),
                EG_KEY,
                datetime.now(UTC) + timedelta(hours=1),
            ),
            id="other-resource",
        ),
        pytest.param(lambda ep: "not-a-token", id="malformed"),
    ],
)
def test_invalid_sas_token_is_401(emulator, make_token):
    endpoint = emulator.topic_endpoint(EG_TOPIC)
    client = EventGridPublisherClient(endpoint, AzureSasCredential(make_token(endpoint)))
    with pytest.raises(ClientAuthenticationError):
        client.send(EventGridEvent(subject="s", event_type="T", data={}, data_version="1"))


def test_wrong_key_is_401_with_sync_and_async_sdk(emulator):
    event = EventGridEvent(subject="s", event_type=unique("Denied"), data={}, data_version="1")
    with pytest.raises(ClientAuthenticationError) as excinfo:
        eg_client(emulator, key="not-the-key").send(event)
    assert excinfo.value.status_code == 401

    async def publish() -> None:
        async with AsyncEventGridPublisherClient(
            emulator.topic_endpoint(CE_TOPIC), AzureKeyCredential("nope")
        ) as c:
            await c.send(CloudEvent(source="/s", type="T", data={}))

    with pytest.raises(ClientAuthenticationError):
        asyncio.run(publish())
    assert emulator.events(EG_TOPIC, type=event.event_type) == []


def test_401_body_has_azure_error_shape(emulator):
    resp = requests.post(
        emulator.topic_endpoint(EG_TOPIC), data="[]", headers={"Content-Type": "application/json"}, timeout=10
    )
    assert resp.status_code == 401
    error = resp.json()["error"]
    assert error["code"] == "Unauthorized"
    assert "aeg-sas-key" in error["message"]
    assert error["message"].endswith("to our forums for assistance or raise a support ticket.")
    assert error["details"][0]["code"] == "Unauthorized"


def _post(emulator, topic: str, body: str | bytes, content_type: str, key: str) -> requests.Response:
    return requests.post(
        emulator.topic_endpoint(topic),
        params={"api-version": "2018-01-01"},
        data=body,
        headers={"aeg-sas-key": key, "Content-Type": content_type},
        timeout=DEADLINE_HTTP,
    )


DEADLINE_HTTP = 30
EG_EVENT = {
    "id": "1",
    "subject": "s",
    "eventType": "T",
    "eventTime": "2024-05-01T10:00:00Z",
    "data": {},
    "dataVersion": "1",
}
CE_EVENT = {"specversion": "1.0", "id": "1", "source": "/s", "type": "T"}


@pytest.mark.parametrize(
    ("topic", "key", "content_type", "body", "expected"),
    [
        (EG_TOPIC, EG_KEY, "application/json", "{not json", "not valid JSON"),
        (EG_TOPIC, EG_KEY, "application/json", json.dumps(EG_EVENT), "expects a JSON array"),
        (EG_TOPIC, EG_KEY, "application/json", "[]", "no events"),
        (
            EG_TOPIC,
            EG_KEY,
            "application/json",
            json.dumps([{k: v for k, v in EG_EVENT.items() if k != "eventType"}]),
            "required property 'eventType' is missing",
        ),
        (
            EG_TOPIC,
            EG_KEY,
            "application/json",
            json.dumps([EG_EVENT, {**EG_EVENT, "eventTime": "yesterday"}]),
            "events[1].eventTime",
        ),
        (
            EG_TOPIC,
            EG_KEY,
            "application/json",
            json.dumps([{**EG_EVENT, "metadataVersion": "2"}]),
            "metadataVersion",
        ),
        (EG_TOPIC, EG_KEY, "application/json", json.dumps([CE_EVENT]), "configured for EventGridSchema"),
        (
            EG_TOPIC,
            EG_KEY,
            "application/cloudevents-batch+json",
            json.dumps([CE_EVENT]),
            "configured for EventGridSchema",
        ),
        (
            CE_TOPIC,
            CE_KEY,
            "application/cloudevents-batch+json",
            json.dumps([{**CE_EVENT, "specversion": "0.3"}]),
            "specversion",
        ),
        (
            CE_TOPIC,
            CE_KEY,
            "application/cloudevents-batch+json",
            json.dumps([{k: v for k, v in CE_EVENT.items() if k != "source"}]),
            "required attribute 'source' is missing",
        ),
        (
            CE_TOPIC,
            CE_KEY,
            "application/cloudevents-batch+json",
            json.dumps(CE_EVENT),
            "JSON array of CloudEvents",
        ),
        (
            CE_TOPIC,
            CE_KEY,
            "application/cloudevents-batch+json",
            json.dumps([{**CE_EVENT, "data": 1, "data_base64": "AA=="}]),
            "mutually exclusive",
        ),
        (CE_TOPIC, CE_KEY, "application/json", json.dumps([EG_EVENT]), "configured for CloudEventSchemaV1_0"),
        (CE_TOPIC, CE_KEY, "text/plain", "hello", "not supported"),
        (EG_TOPIC, EG_KEY, "application/json", "[" * 32_000 + "]" * 32_000, "nested too deeply"),
        (EG_TOPIC, EG_KEY, "application/json", '[{"id": ' + "9" * 5_000 + "}]", "number too long"),
        (EG_TOPIC, EG_KEY, "application/json", '[{"id": NaN}]', "NaN is not a JSON value"),
        (EG_TOPIC, EG_KEY, "application/json", '[{"id": -Infinity}]', "-Infinity is not a JSON value"),
        (
            EG_TOPIC,
            EG_KEY,
            "application/json",
            json.dumps([{**EG_EVENT, "id": "\ud800"}]),
            "lone surrogate",
        ),
        (
            CE_TOPIC,
            CE_KEY,
            "application/cloudevents-batch+json",
            json.dumps([{**CE_EVENT, "data": {"n": 1}}]).replace("1}", "1" + "0" * 5_000 + "}"),
            "number too long",
        ),
    ],
)
def test_malformed_batch_is_400_naming_the_problem(emulator, topic, key, content_type, body, expected):
    resp = _post(emulator, topic, body, content_type, key)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == "BadRequest"
    assert expected in error["message"]


def test_sdk_publishing_wrong_schema_raises_400(emulator):
    client = eg_client(emulator, key=CE_KEY, topic=CE_TOPIC)
    with pytest.raises(HttpResponseError) as excinfo:
        client.send(EventGridEvent(subject="s", event_type="T", data={}, data_version="1"))
    assert excinfo.value.status_code == 400
    assert "CloudEventSchemaV1_0" in str(excinfo.value)


def test_oversize_batch_is_413(emulator):
    etype = unique("Huge")
    client = EventGridPublisherClient(emulator.topic_endpoint(CE_TOPIC), AzureKeyCredential(CE_KEY))
    with pytest.raises(HttpResponseError) as excinfo:
        client.send([CloudEvent(source="/s", type=etype, data={"blob": "x" * 600_000}) for _ in range(2)])
    assert excinfo.value.status_code == 413
    assert excinfo.value.error.code == "RequestEntityTooLarge"
    # Just under the limit is fine.
    client.send(CloudEvent(source="/s", type=etype, data={"blob": "x" * 1_000_000}))
    assert len(emulator.events(CE_TOPIC, type=etype)) == 1


def test_unknown_topic_is_404(emulator):
    client = EventGridPublisherClient(emulator.topic_endpoint("no-such-topic"), AzureKeyCredential(CE_KEY))
    with pytest.raises(ResourceNotFoundError):
        client.send(CloudEvent(source="/s", type="T", data={}))
    resp = _post(
        emulator, "no-such-topic", json.dumps([CE_EVENT]), "application/cloudevents-batch+json", CE_KEY
    )
    assert resp.status_code == 404
    assert resp.json()["error"]["details"][0]["code"] == "ResourceNotFound"


def test_listing_filters_by_type_and_rejects_unknown_topic(emulator):
    a, b = unique("Filter.A"), unique("Filter.B")
    client = EventGridPublisherClient(emulator.topic_endpoint(CE_TOPIC), AzureKeyCredential(CE_KEY))
    client.send([CloudEvent(source="/s", type=t, data={}) for t in (a, b, a)])
    assert [e["type"] for e in emulator.events(CE_TOPIC, type=a)] == [a, a]
    assert [e["type"] for e in emulator.events(CE_TOPIC, type=b.upper())] == [
        b
    ]  # case-insensitive like Azure
    all_types = [e["type"] for e in emulator.events(CE_TOPIC)]
    assert all_types.index(a) < all_types.index(b)
    assert requests.get(emulator.url("/topics/nope/events"), timeout=10).status_code == 404
    assert requests.get(emulator.url("/topics"), timeout=10).json()[0]["name"] == EG_TOPIC
