"""The one publisher: Service Bus through the ``azure-servicebus`` SDK, Event Grid through
``azure-eventgrid``. Both adapters are built once per process (see :mod:`.runtime`) and open
their connections lazily on first use, never at import time.

The Functions Service Bus *output binding* cannot set a session id, a message id or
application properties, so every message goes through :class:`ServiceBusPublisher`, which
stamps the envelope (:func:`~.messaging.stamp`) and sets on each Service Bus message:

* ``subject`` (``Label``) = the message type, which the subscription filters route by;
* ``message_id`` = the deterministic id the use case chose (duplicate detection drops re-sends);
* ``correlation_id`` = the delivery id; ``session_id`` for the session queue;
* ``scheduled_enqueue_time_utc`` for timers and retries with backoff (a scheduled message,
  never a sleep);
* application properties ``type``, ``schemaVersion``, ``correlationId``, ``causationId``,
  ``traceparent``, ``occurredAt`` (the envelope, readable without the body).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridPublisherClient
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSender
from opentelemetry.trace import Span

from . import connections, flow, telemetry
from .clock import Clock, SystemClock
from .contracts import Envelope
from .entities import DEADLETTER_QUEUE, DELIVERY_NOTICES_TOPIC, Destination
from .idempotency import message_id as make_message_id
from .messaging import (
    RESUBMIT_TO,
    Cause,
    DeadLetter,
    Outgoing,
    OutgoingEvent,
    Resubmission,
    dead_letter_properties,
    stamp,
)
from .settings import Identity

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/json"
EVENT_SOURCE = "/drone-delivery"


# What azure-servicebus accepts as an application property value.
PropertyValue = int | float | bytes | bool | str | uuid.UUID


def sdk_properties(values: Mapping[str, Any]) -> dict[str | bytes, PropertyValue]:
    """``values`` typed as the SDK's ``application_properties`` (its keys may be bytes too)."""
    properties: dict[str | bytes, PropertyValue] = {}
    properties.update(values)
    return properties


def to_service_bus_message(message: Outgoing, envelope: Envelope) -> ServiceBusMessage:
    return ServiceBusMessage(
        envelope.to_json(),
        content_type=CONTENT_TYPE,
        subject=envelope.type,
        message_id=envelope.message_id,
        correlation_id=envelope.correlation_id,
        session_id=message.session_id,
        scheduled_enqueue_time_utc=message.scheduled_at,
        application_properties=sdk_properties(envelope.properties()),
    )


class ServiceBusPublisher:
    """Sends through one ``ServiceBusClient`` per process, created on first use.

    Senders are not thread-safe and the Python worker runs functions on a thread pool, so each
    send borrows a sender from a small per-entity pool instead of sharing one.
    """

    def __init__(self, connection_string: str, clock: Clock | None = None,
                 client_factory: Callable[[str], ServiceBusClient] = ServiceBusClient.from_connection_string):
        self._connection_string = connection_string
        self._clock = clock or SystemClock()
        self._client_factory = client_factory
        self._client: ServiceBusClient | None = None
        self._idle: dict[Destination, list[ServiceBusSender]] = {}
        self._lock = threading.Lock()

    def send(self, messages: Sequence[Outgoing], cause: Cause) -> list[Envelope]:
        for message in messages:
            flow.check(message.destination, message.payload.TYPE)
        now = self._clock.now()
        # One PRODUCER span per message: its context is the traceparent the message carries.
        spans = [telemetry.start_producer(message.destination.name, _producer_attributes(message),
                                          cause.traceparent, _service()) for message in messages]
        try:
            envelopes = [stamp(message, cause, now, telemetry.traceparent_of(span, cause.traceparent))
                         for message, span in zip(messages, spans, strict=True)]
            by_destination: dict[Destination, list[ServiceBusMessage]] = {}
            for message, envelope in zip(messages, envelopes, strict=True):
                by_destination.setdefault(message.destination, []).append(to_service_bus_message(message, envelope))
            for destination, batch in by_destination.items():
                with self._sender(destination) as sender:
                    sender.send_messages(batch)
        except BaseException as exc:
            telemetry.end(spans, exc)
            raise
        telemetry.end(spans)
        return envelopes

    def dead_letter(self, letter: DeadLetter) -> None:
        incoming = letter.incoming
        message_id = make_message_id("deadletter", incoming.source, incoming.message_id)
        span = telemetry.start_producer(DEADLETTER_QUEUE.name, {
            telemetry.MESSAGING_SYSTEM: "servicebus", telemetry.MESSAGING_OPERATION: "send",
            telemetry.MESSAGING_DESTINATION: DEADLETTER_QUEUE.name, telemetry.MESSAGING_MESSAGE_ID: message_id,
            telemetry.MESSAGE_TYPE: incoming.subject, telemetry.CORRELATION: incoming.delivery_id,
            telemetry.REASON: letter.reason}, incoming.cause.traceparent, _service())
        copy = ServiceBusMessage(
            incoming.body,
            content_type=incoming.content_type,
            subject=incoming.subject,
            message_id=message_id,
            correlation_id=incoming.correlation_id or incoming.delivery_id,
            application_properties=sdk_properties(dead_letter_properties(
                letter, self._clock.now(), telemetry.traceparent_of(span, incoming.cause.traceparent))),
        )
        self._send_one(DEADLETTER_QUEUE, copy, span)

    def resubmit(self, copy: Resubmission) -> None:
        """``copy`` to its queue, or to its topic steered to one subscription by ``ResubmitTo``."""
        topic, subscription = copy.destination
        properties = dict(copy.application_properties)
        properties.pop(RESUBMIT_TO, None)
        if subscription is not None:
            properties[RESUBMIT_TO] = subscription
        destination = Destination(topic, "topic" if subscription is not None else "queue")
        span = telemetry.start_producer(topic, {
            telemetry.MESSAGING_SYSTEM: "servicebus", telemetry.MESSAGING_OPERATION: "send",
            telemetry.MESSAGING_DESTINATION: topic, telemetry.MESSAGING_SUBSCRIPTION: subscription,
            telemetry.MESSAGING_MESSAGE_ID: copy.message_id, telemetry.MESSAGE_TYPE: copy.subject,
            telemetry.CORRELATION: copy.correlation_id,
            telemetry.SCHEDULED_FOR: copy.scheduled_at.isoformat() if copy.scheduled_at else None},
            copy.traceparent, _service())
        message = ServiceBusMessage(
            copy.body, content_type=copy.content_type, subject=copy.subject, message_id=copy.message_id,
            correlation_id=copy.correlation_id, session_id=copy.session_id,
            scheduled_enqueue_time_utc=copy.scheduled_at, application_properties=sdk_properties(properties))
        self._send_one(destination, message, span)

    def _send_one(self, destination: Destination, message: ServiceBusMessage, span: Span) -> None:
        try:
            with self._sender(destination) as sender:
                sender.send_messages(message)
        except BaseException as exc:
            telemetry.end([span], exc)
            raise
        telemetry.end([span])

    @contextmanager
    def _sender(self, destination: Destination) -> Iterator[ServiceBusSender]:
        with self._lock:
            pool = self._idle.setdefault(destination, [])
            sender = pool.pop() if pool else self._new_sender(destination)
        try:
            yield sender
        except BaseException:
            # The link may be broken: drop it, the next send opens a fresh one.
            _close_quietly(sender)
            raise
        with self._lock:
            self._idle[destination].append(sender)

    def _new_sender(self, destination: Destination) -> ServiceBusSender:
        if self._client is None:
            self._client = self._client_factory(self._connection_string)
        if destination.kind == "topic":
            return self._client.get_topic_sender(destination.name)
        return self._client.get_queue_sender(destination.name)

    def close(self) -> None:
        with self._lock:
            senders = [sender for pool in self._idle.values() for sender in pool]
            self._idle.clear()
            # Each close waits for the broker's detach; close them side by side.
            closing = [threading.Thread(target=_close_quietly, args=(sender,)) for sender in senders]
            for thread in closing:
                thread.start()
            for thread in closing:
                thread.join()
            if self._client is not None:
                _close_quietly(self._client)
                self._client = None


def _service() -> str | None:
    running = flow.running()
    return running.service if running else None


def _producer_attributes(message: Outgoing) -> dict[str, Any]:
    return {
        telemetry.MESSAGING_SYSTEM: "servicebus",
        telemetry.MESSAGING_OPERATION: "send",
        telemetry.MESSAGING_DESTINATION: message.destination.name,
        telemetry.MESSAGING_MESSAGE_ID: message.message_id,
        telemetry.MESSAGING_CONVERSATION: message.correlation_id,
        telemetry.MESSAGING_SESSION: message.session_id,
        telemetry.MESSAGE_TYPE: message.payload.TYPE,
        telemetry.CORRELATION: message.correlation_id,
        telemetry.SCHEDULED_FOR: message.scheduled_at.isoformat() if message.scheduled_at else None,
    }


def _close_quietly(closable: Any) -> None:
    try:
        closable.close()
    except Exception:  # noqa: BLE001 - closing a broken link must not hide the original error
        log.debug("closing %r failed", closable, exc_info=True)


class EventGridPublisher:
    """Publishes CloudEvents 1.0 to an Event Grid topic: with its access key, or without one
    with ``identity`` (Entra ID, the topic's EventGrid Data Sender role)."""

    def __init__(self, endpoint: str, key: str, clock: Clock | None = None, source: str = EVENT_SOURCE,
                 topic: Destination = DELIVERY_NOTICES_TOPIC, identity: Identity | None = None):
        self._topic = topic
        self._endpoint = endpoint
        self._key = key
        self._identity = identity or Identity()
        self._clock = clock or SystemClock()
        self._source = source
        self._client: EventGridPublisherClient | None = None
        self._lock = threading.Lock()

    def publish(self, events: Sequence[OutgoingEvent], cause: Cause) -> None:
        if not events:
            return
        for event in events:
            flow.check(self._topic, event.type)
        now = self._clock.now()
        spans = [telemetry.start_producer(self._topic.name, {
            telemetry.MESSAGING_SYSTEM: "eventgrid", telemetry.MESSAGING_OPERATION: "send",
            telemetry.MESSAGING_DESTINATION: self._topic.name, telemetry.MESSAGING_MESSAGE_ID: event.id,
            telemetry.MESSAGE_TYPE: event.type, telemetry.CORRELATION: event.correlation_id}, cause.traceparent,
            _service())
            for event in events]
        cloud_events = [
            CloudEvent(
                source=self._source,
                type=event.type,
                subject=event.subject,
                data=event.data,
                id=event.id,
                time=now,
                datacontenttype="application/json",
                extensions={"traceparent": telemetry.traceparent_of(span, cause.traceparent),
                            "correlationid": event.correlation_id,
                            "causationid": cause.message_id},
            )
            for event, span in zip(events, spans, strict=True)
        ]
        try:
            self._get_client().send(cloud_events)
        except BaseException as exc:
            telemetry.end(spans, exc)
            raise
        telemetry.end(spans)

    def _get_client(self) -> EventGridPublisherClient:
        with self._lock:
            if self._client is None:
                self._client = connections.event_grid_publisher(self._endpoint, self._key, self._identity)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                _close_quietly(self._client)
                self._client = None
