"""End-to-end: the whole local stack as real processes, driven over HTTP like a user would."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from choreography.entities import REMEDIATIONS_TABLE
from devstack.clock import PAYMENT_CLOCK
from devstack.seed import seed_all
from devstack.stack import Stack
from devstack.traces import SpanRecord
from ops.sources import StoreApi
from remediation.adapters import TableAuditLog
from remediation.domain import AuditEntry

FINAL = {"Shipped", "Cancelled"}


def call(method: str, url: str, body: Any = None, raw: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            payload = resp.read()
            return resp.status, json.loads(payload) if payload else None, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        try:
            return exc.code, json.loads(payload) if payload else None, dict(exc.headers)
        except ValueError:
            return exc.code, payload.decode(errors="replace"), dict(exc.headers)


def delivery(size: str = "small", weight: float = 2.0, delivery_id: str | None = None,
             deadline_minutes: float = 30) -> dict[str, Any]:
    delivery_id = delivery_id or f"e2e-{uuid.uuid4().hex[:12]}"
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=deadline_minutes)
    return {"deliveryId": delivery_id, "ownerId": "owner-1", "pickupLocation": "Redmond",
            "dropoffLocation": "Seattle", "deadline": deadline.isoformat().replace("+00:00", "Z"),
            "expedited": False, "confirmationRequired": False,
            "packageInfo": {"packageId": f"pkg-{delivery_id}", "size": size, "weight": weight, "tag": "e2e"}}


class App:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.api = f"{stack.functions_url}/api"

    def submit(self, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        return call("POST", f"{self.api}/deliveries", body)

    def status(self, delivery_id: str) -> tuple[int, Any]:
        code, body, _ = call("GET", f"{self.api}/deliveries/{delivery_id}")
        return code, body

    def wait_final(self, delivery_id: str, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        body: Any = None
        while time.monotonic() < deadline:
            code, body = self.status(delivery_id)
            if code == 200 and body.get("status") in FINAL:
                return body
            time.sleep(0.2)
        raise AssertionError(f"delivery {delivery_id} did not settle; last status {body}")

    def wait_status(self, delivery_id: str, status: str, timeout: float = 120.0) -> dict[str, Any]:
        """Until ``status`` appears in the delivery's history."""
        deadline = time.monotonic() + timeout
        body: Any = None
        while time.monotonic() < deadline:
            code, body = self.status(delivery_id)
            if code == 200 and status in hops(body):
                return body
            time.sleep(0.2)
        raise AssertionError(f"delivery {delivery_id} never reached {status}; last status {body}")

    def remediations(self) -> list[AuditEntry]:
        """Every decision remediation took (Table ``remediations``): where each dead letter ends."""
        with TableServiceClient.from_connection_string(self.stack.storage_connection) as tables:
            table = tables.create_table_if_not_exists(REMEDIATIONS_TABLE)
            return list(TableAuditLog(table).entries())

    def wait_remediation(self, predicate: Callable[[AuditEntry], bool], what: str,
                         timeout: float = 120.0) -> AuditEntry:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.remediations() if predicate(e)]
            if found:
                return found[0]
            time.sleep(0.3)
        raise AssertionError(f"remediation never decided on {what}")

    def events(self, topic: str = "deliveries", type_: str | None = None) -> list[dict[str, Any]]:
        url = f"{self.stack.eventgrid_url}/topics/{topic}/events" + (f"?type={type_}" if type_ else "")
        code, body, _ = call("GET", url)
        assert code == 200, body
        return body if isinstance(body, list) else body.get("events", [])

    def wait_event(self, type_: str, delivery_id: str, timeout: float = 60.0) -> dict[str, Any]:
        return self.wait_event_on("deliveries", type_, delivery_id, timeout)

    def wait_event_on(self, topic: str, type_: str, delivery_id: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.events(topic, type_=type_):
                event = entry.get("event", entry)
                if delivery_id in json.dumps(event):
                    return entry
            time.sleep(0.2)
        raise AssertionError(f"no {type_} event for {delivery_id}")


def hops(result: dict[str, Any]) -> list[str]:
    return [h["status"] for h in result.get("history", [])]


def start_stack(with_view: bool = False, **settings: str) -> Stack:
    defaults = {"FLIGHT_TIME_SECONDS": "0", "JOIN_TIMEOUT_SECONDS": "120", "DRONE_RETRY_BASE_SECONDS": "1",
                "DRONE_RETRY_MAX_SECONDS": "2", "PAYMENT_FILES_CLOCK": PAYMENT_CLOCK}
    stack = Stack(with_devhost=False, with_view=with_view, settings={**defaults, **settings})
    stack.start()
    try:
        seed_all(stack.storage_connection)
        stack.start_devhost()
    except BaseException:
        stack.stop()
        raise
    return stack


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    stack = start_stack()
    try:
        yield App(stack)
    finally:
        stack.stop()


# ------------------------------------------------------------------------------ traces (issue 11)
def trace_of(stack: Stack, key: str, until: Callable[[list[SpanRecord]], bool],
             timeout: float = 60.0) -> list[SpanRecord]:
    """The spans of the one trace naming ``key`` in the stack's trace store, once ``until`` holds
    for them (the app exports in batches, so the last hops arrive a moment after the journey ends)."""
    store = StoreApi(stack.traces_url)
    deadline = time.monotonic() + timeout
    spans: list[SpanRecord] = []
    while time.monotonic() < deadline:
        found = store.traces(key)
        if found:
            assert len(found) == 1, f"{key} is named by {len(found)} traces: {found}"
            spans = store.trace(found[0]["traceId"])
            if until(spans):
                return spans
        time.sleep(0.3)
    raise AssertionError(f"the trace of {key} never got there; it has: "
                         f"{sorted((s.kind, s.name) for s in spans if 'faas.name' in s.attributes)}")


def invocations(spans: list[SpanRecord], function: str | None = None) -> list[SpanRecord]:
    return [s for s in spans if "faas.name" in s.attributes and function in (None, s.attributes["faas.name"])]


def orphans(spans: list[SpanRecord], allowed_parent: str | None = None) -> list[SpanRecord]:
    """Spans whose parent is not in the trace (``allowed_parent``: the caller's own span)."""
    ids = {s.spanId for s in spans}
    return [s for s in spans if s.parentSpanId and s.parentSpanId not in ids and s.parentSpanId != allowed_parent]


def assert_hops_chain(spans: list[SpanRecord]) -> None:
    """Every invocation after the first was triggered by a message the trace shows being sent: its
    parent is a PRODUCER span of the same message type, itself inside another invocation."""
    by_id = {s.spanId: s for s in spans}
    _root, *rest = sorted(invocations(spans), key=lambda s: s.startNs)
    for span in rest:
        producer = by_id.get(span.parentSpanId or "")
        assert producer is not None and producer.kind == "PRODUCER", (span.name, span.attributes)
        assert producer.attributes.get("choreography.message.type") == span.attributes.get(
            "choreography.message.type"), (producer.attributes, span.attributes)
        sender = by_id.get(producer.parentSpanId or "")
        assert sender is not None and "faas.name" in sender.attributes, producer.name
    assert len({s.traceId for s in spans}) == 1
