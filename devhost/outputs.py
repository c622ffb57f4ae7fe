"""Output bindings: what a function set on its ``func.Out`` (or returned to ``$return``) is
sent after the function returns, as the host flushes its collectors.

Contract:

* ``eventGrid``: ``topicEndpointUri`` and ``topicKeySetting`` name app settings holding the
  topic endpoint and key. The value is encoded with azure-functions' own converter (as the
  Python worker does), then published with the real ``EventGridPublisherClient`` in one call.
  The schema follows the host's rule: if the first event parses as an Event Grid event
  (``subject``, ``eventType``, ``dataVersion``) all are sent as Event Grid events, otherwise
  as CloudEvents 1.0.
* ``serviceBus``: ``queueName`` or ``topicName`` and ``connection``. A ``str``/``bytes`` (or a
  list of them) becomes message bodies only, like the real binding: no session id, message
  id or properties. Use the SDK directly when those matter.
* ``queue`` (Storage queue): ``queueName`` and ``connection``; bodies are base64-encoded
  like the host's; the queue is created on first use.
* A failure to send fails the invocation (the trigger then retries), as in the host.
* Setting names are checked at startup (:meth:`Outputs.check`) so a missing one is a clear
  startup error rather than a failure on the first message.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventOutConverter
from azure.servicebus import ServiceBusMessage

from .clients import Clients
from .loader import EVENT_GRID_OUTPUT, HTTP_OUTPUT, QUEUE_OUTPUT, SERVICE_BUS_OUTPUT, Binding, FunctionEntry, LoadError
from .settings import resolve_connection


class Outputs:
    def __init__(self, clients: Clients, environ: Mapping[str, str] = os.environ) -> None:
        self._clients = clients
        self._environ = environ
        self._created_queues: set[tuple[str, str]] = set()

    def check(self, entry: FunctionEntry) -> None:
        """Raise LoadError when an output binding names a setting that is not there."""
        for binding in entry.outputs:
            if binding.type == EVENT_GRID_OUTPUT:
                for prop in ("topicEndpointUri", "topicKeySetting"):
                    setting = binding.get(prop)
                    if not setting:
                        raise LoadError(f"function {entry.name!r}: eventGrid output {binding.name!r} has no {prop}")
                    if not self._environ.get(setting):
                        raise LoadError(
                            f"function {entry.name!r}: eventGrid output {binding.name!r}: app setting "
                            f"{setting!r} ({prop}) is not set"
                        )
            elif binding.type in (SERVICE_BUS_OUTPUT, QUEUE_OUTPUT):
                default = "ServiceBus" if binding.type == SERVICE_BUS_OUTPUT else "Storage"
                setting = binding.get("connection") or default
                if resolve_connection(setting, self._environ) is None:
                    raise LoadError(
                        f"function {entry.name!r}: {binding.type} output {binding.name!r}: connection setting "
                        f"{setting!r} is not set (looked for AzureWebJobs{setting}, {setting} and ConnectionStrings)"
                    )

    async def send(self, entry: FunctionEntry, values: Mapping[str, Any]) -> None:
        """Send every output value that was set; *values* maps binding name to value."""
        for binding in entry.outputs:
            if binding.type == HTTP_OUTPUT or binding.name not in values:
                continue
            value = values[binding.name]
            if value is None:
                continue
            if binding.type == EVENT_GRID_OUTPUT:
                await self._event_grid(binding, value)
            elif binding.type == SERVICE_BUS_OUTPUT:
                await self._service_bus(binding, value)
            elif binding.type == QUEUE_OUTPUT:
                await self._queue(binding, value)

    async def _event_grid(self, binding: Binding, value: Any) -> None:
        events = event_grid_payload(value)
        if not events:
            return
        endpoint = self._environ[binding.get("topicEndpointUri")]
        key = self._environ[binding.get("topicKeySetting")]
        client = self._clients.event_grid(endpoint, key)
        await client.send(events)

    async def _service_bus(self, binding: Binding, value: Any) -> None:
        bodies = _bodies(value, "serviceBus")
        if not bodies:
            return
        conn = resolve_connection(binding.get("connection") or "ServiceBus", self._environ)
        assert conn is not None  # checked at startup
        client = self._clients.service_bus(conn)
        queue, topic = binding.get("queueName"), binding.get("topicName")
        sender = client.get_queue_sender(queue) if queue else client.get_topic_sender(topic)
        async with sender:
            await sender.send_messages([ServiceBusMessage(body) for body in bodies])

    async def _queue(self, binding: Binding, value: Any) -> None:
        bodies = _bodies(value, "queue")
        if not bodies:
            return
        conn = resolve_connection(binding.get("connection") or "Storage", self._environ)
        assert conn is not None
        queue_name = binding.get("queueName")
        client = self._clients.queue(conn, queue_name)
        if (conn, queue_name) not in self._created_queues:
            try:
                await client.create_queue()
            except ResourceExistsError:
                pass
            self._created_queues.add((conn, queue_name))
        for body in bodies:
            await client.send_message(body.decode("utf-8") if isinstance(body, bytes) else body)


def _bodies(value: Any, kind: str) -> list[str | bytes]:
    items: Iterable[Any] = value if isinstance(value, (list, tuple)) else [value]
    out: list[str | bytes] = []
    for item in items:
        if not isinstance(item, (str, bytes)):
            raise TypeError(f"a {kind} output takes str or bytes (or a list of them), got {type(item).__name__}")
        out.append(item)
    return out


def event_grid_payload(value: Any) -> list[EventGridEvent] | list[CloudEvent[Any]]:
    """Turn what a function set on an eventGrid output into SDK event objects."""
    datum = EventGridEventOutConverter.encode(value, expected_type=None)
    assert isinstance(datum, meta.Datum)
    raw = datum.value.decode("utf-8") if isinstance(datum.value, bytes) else datum.value
    parsed = json.loads(raw)
    items = parsed if isinstance(parsed, list) else [parsed]
    dicts = [json.loads(item) if isinstance(item, str) else item for item in items]
    if not dicts:
        return []
    for item in dicts:
        if not isinstance(item, dict):
            raise TypeError(f"an eventGrid output event must be a JSON object, got {type(item).__name__}")
    first = dicts[0]
    if all(k in first for k in ("subject", "eventType", "dataVersion")):
        return [_event_grid_event(d) for d in dicts]
    return [CloudEvent.from_dict(d) for d in dicts]


def _event_grid_event(doc: dict[str, Any]) -> EventGridEvent:
    # A missing id or eventTime is stamped here (new GUID, now), as the .NET SDK does.
    event_time = doc.get("eventTime")
    return EventGridEvent(
        subject=doc["subject"],
        event_type=doc["eventType"],
        data=doc.get("data"),
        data_version=doc["dataVersion"],
        topic=doc.get("topic"),
        id=doc.get("id") or str(uuid.uuid4()),
        event_time=datetime.fromisoformat(event_time) if event_time else datetime.now(UTC),
    )
