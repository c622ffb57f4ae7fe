"""Hostile Event Grid traffic: publishes the emulator cannot take are a 4xx JSON error, as Event
Grid answers, and it keeps serving; events the Notifications trigger can never store are
dead-lettered once with a reason instead of failing every delivery attempt."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from devstack.stack import EVENTGRID_KEY

from .conftest import App, call, still_serving, wait_for

CE = "application/cloudevents-batch+json"


def _event(**overrides: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": f"ev-{uuid.uuid4().hex[:12]}", "source": "/hostile", "type": "Other",
            "time": "2026-11-22T09:00:00Z", "data": {}, **overrides}


PUBLISHES: dict[str, tuple[str, bytes]] = {
    "not json": (CE, b"{nope"),
    "empty": (CE, b""),
    "deep nesting": (CE, b"[" * 32_000 + b"]" * 32_000),
    "huge int": (CE, b'[{"id": ' + b"9" * 5000 + b"}]"),
    "lone surrogate id": (CE, json.dumps([_event(id="\ud800")]).encode()),
    "lone surrogate in data": (CE, json.dumps([_event(data={"x": "\udc00"})]).encode()),
    "object, not a batch": (CE, json.dumps(_event()).encode()),
    "empty batch": (CE, b"[]"),
    "batch of numbers": (CE, b"[1, 2]"),
    "no id": (CE, json.dumps([{k: v for k, v in _event().items() if k != "id"}]).encode()),
    "no source": (CE, json.dumps([{k: v for k, v in _event().items() if k != "source"}]).encode()),
    "bad specversion": (CE, json.dumps([_event(specversion="0.1")]).encode()),
    "bad time": (CE, json.dumps([_event(time="yesterday")]).encode()),
    "id not a string": (CE, json.dumps([_event(id=7)]).encode()),
    "event grid schema on a cloudevents topic": ("application/json", json.dumps(
        [{"id": "1", "subject": "s", "eventType": "T", "eventTime": "2026-11-22T09:00:00Z", "data": {},
          "dataVersion": "1"}]).encode()),
    "xml": ("application/xml", b"<events/>"),
    "invalid utf-8": (CE, b'[{"id": "\xc3\x28"}]'),
    "utf-16": (CE, json.dumps([_event()]).encode("utf-16")),
    "nul": (CE, b"\x00"),
    "NaN": (CE, b'[{"id": "1", "source": "/s", "specversion": "1.0", "type": "T", "data": NaN}]'),
}


@pytest.mark.parametrize("name", list(PUBLISHES))
def test_a_publish_the_emulator_cannot_take_is_a_4xx_json_error(app: App, name: str) -> None:
    content_type, raw = PUBLISHES[name]
    code, body, _ = call("POST", f"{app.stack.eventgrid_url}/topics/deliveries/api/events?api-version=2018-01-01",
                         raw=raw, headers={"Content-Type": content_type, "aeg-sas-key": EVENTGRID_KEY})
    assert 400 <= code < 500, (code, body)
    assert isinstance(body, dict) and body["error"]["code"] and body["error"]["message"], body
    assert call("GET", f"{app.stack.eventgrid_url}/health")[0] == 200


def test_an_oversized_publish_is_413(app: App) -> None:
    raw = json.dumps([_event(data={"x": "y" * (1024 * 1024 + 10)})]).encode()
    code, body, _ = call("POST", f"{app.stack.eventgrid_url}/topics/deliveries/api/events",
                         raw=raw, headers={"Content-Type": CE, "aeg-sas-key": EVENTGRID_KEY})
    assert code == 413 and body["error"]["code"], body


HOSTILE_EVENTS = {
    "delivery id with / # ?": {"deliveryId": "a/b#c?d"},
    "delivery id with a control character": {"deliveryId": "d\u0001x"},
    "delivery id of 2 KB": {"deliveryId": "d" * 2048},
    "delivery id not a string": {"deliveryId": ["d-1"]},
    "event id with /": {"deliveryId": "hx-ev-1", "__id": "ev/1"},
    "event id with \\": {"deliveryId": "hx-ev-2", "__id": "ev\\2"},
    "event id of 2 KB": {"deliveryId": "hx-ev-3", "__id": "e" * 2048},
}


@pytest.fixture(scope="module")
def published(app: App) -> dict[str, str]:
    ids = {}
    events = []
    for name, data in HOSTILE_EVENTS.items():
        data = dict(data)
        event_id = data.pop("__id", f"hx-ev-{uuid.uuid4().hex[:12]}")
        events.append(_event(id=event_id, type="DeliveryShipped", data=data))
        ids[name] = event_id
    code, body, _ = call("POST", f"{app.stack.eventgrid_url}/topics/deliveries/api/events", raw=json.dumps(
        events).encode(), headers={"Content-Type": CE, "aeg-sas-key": EVENTGRID_KEY})
    assert code == 200, body
    return ids


@pytest.mark.parametrize("name", list(HOSTILE_EVENTS))
def test_an_event_that_can_never_be_stored_is_dead_lettered_once_and_delivered(app: App, published: dict[str, str],
                                                                               name: str) -> None:
    event_id = published[name]

    def delivered() -> list[dict[str, Any]] | None:
        for entry in app.events(type_="DeliveryShipped"):
            if entry.get("event", entry).get("id") == event_id:
                states = entry["deliveries"]
                return states if states and all(s["status"] != "pending" for s in states) else None
        return None

    states = wait_for(delivered, f"Event Grid to deliver {name}")
    # Answered 2xx on the first attempt: no retry for a day, no dead letter of Event Grid's own.
    assert [(s["status"], s["attempts"]) for s in states] == [("delivered", 1)]

    def letters() -> list[Any]:
        # remediation takes every dead letter from deadletter and records it with its properties
        return [e for e in app.remediations() if e.record.entity == "eventgrid:deliveries/notifications"
                and json.loads(e.record.body)["id"] == event_id]

    [letter] = wait_for(letters, f"the dead letter of {name}")
    assert letter.record.reason == "MalformedMessage" and letter.record.description
    assert letter.verdict.decision == "park"


def test_after_the_event_grid_corpus_the_stack_still_ships(app: App, published: Any) -> None:
    still_serving(app)
