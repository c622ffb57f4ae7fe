"""Trigger objects from the Functions host, turned into the neutral :class:`~.messaging.Incoming`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
from opentelemetry.trace import SpanKind

from . import telemetry
from .entities import Destination, Subscription
from .messaging import DEAD_LETTER_TRACEPARENT, Incoming, text


def incoming(message: func.ServiceBusMessage, source: Subscription | Destination) -> Incoming:
    path = source.path if isinstance(source, Subscription) else source.name
    return Incoming(
        body=message.get_body(),
        message_id=message.message_id or "",
        source=path,
        subject=message.subject or message.label,
        session_id=message.session_id,
        correlation_id=message.correlation_id,
        content_type=message.content_type,
        application_properties=dict(message.application_properties or {}),
        delivery_count=message.delivery_count or 1,
        enqueued_at=message.enqueued_time_utc,
        dead_letter_source=message.dead_letter_source,
    )


def envelope_traceparent(message: func.ServiceBusMessage) -> str | None:
    """The trace context the message's envelope carries: the span that sent it. (With tracing on,
    azure-servicebus overwrites the ``traceparent`` application property with its own per-message
    span, a child of the sender's; the envelope keeps the app's.) Falls back to the property for
    a body that is not an envelope."""
    try:
        document = json.loads(message.get_body())
    except (ValueError, RecursionError):  # not an envelope: consume() dead-letters it with the reason
        document = None
    carried = document.get("traceparent") if isinstance(document, dict) else None
    if isinstance(carried, str):
        return carried
    return text((message.application_properties or {}).get("traceparent"))


@dataclass(frozen=True)
class Described:
    kind: SpanKind
    trigger: str  # faas.trigger
    traceparent: str | None
    tracestate: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


def describe(values: list[Any]) -> Described:
    """An invocation's span kind, ``faas.trigger``, carried trace context and first attributes,
    from its trigger argument (the first one this knows)."""
    for value in values:
        if isinstance(value, func.HttpRequest):
            return Described(SpanKind.SERVER, "http", value.headers.get("traceparent"),
                             value.headers.get("tracestate"), {"http.request.method": value.method})
        if isinstance(value, func.ServiceBusMessage):
            # a dead letter the app wrote: a child of the span that gave the message up
            given_up = text((value.application_properties or {}).get(DEAD_LETTER_TRACEPARENT))
            return Described(SpanKind.CONSUMER, "pubsub", given_up or envelope_traceparent(value))
        if isinstance(value, func.CloudEvent):
            extensions = value.extension_attrs
            return Described(SpanKind.CONSUMER, "pubsub", text(extensions.get("traceparent")),
                             text(extensions.get("tracestate")), {
                                 telemetry.MESSAGING_SYSTEM: "eventgrid", telemetry.MESSAGING_OPERATION: "process",
                                 telemetry.MESSAGING_MESSAGE_ID: value.id, telemetry.MESSAGE_TYPE: value.type,
                                 telemetry.CORRELATION: text(extensions.get("correlationid"))})
        if isinstance(value, func.EventGridEvent):
            return Described(SpanKind.CONSUMER, "pubsub", None, None, {
                telemetry.MESSAGING_SYSTEM: "eventgrid", telemetry.MESSAGING_OPERATION: "process",
                telemetry.MESSAGING_MESSAGE_ID: value.id, telemetry.MESSAGE_TYPE: value.event_type})
    return Described(SpanKind.CONSUMER, "datasource", None)
