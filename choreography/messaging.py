"""What the services see of messaging: neutral message shapes and the publishing ports.

Nothing here imports ``azure.*``: use cases build :class:`Outgoing` messages and hand them to a
:class:`Publisher`; the Service Bus adapter lives in :mod:`.publishing`, the in-memory fake in
the tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from .contracts import DELIVERY_ID_PATTERN, Contract, Envelope
from .entities import Destination
from .tracing import child_traceparent


@dataclass(frozen=True)
class Cause:
    """The message (or HTTP request) that caused what is being published."""

    message_id: str
    traceparent: str | None
    correlation_id: str | None = None


@dataclass(frozen=True)
class Incoming:
    """A Service Bus message as a trigger delivered it, free of any SDK type."""

    body: bytes
    message_id: str
    source: str  # entity path, e.g. "deliveries/subscriptions/package"
    subject: str | None = None
    session_id: str | None = None
    correlation_id: str | None = None
    content_type: str | None = None
    application_properties: Mapping[str, Any] = field(default_factory=dict)
    delivery_count: int = 1

    @property
    def delivery_id(self) -> str | None:
        """Best guess at the delivery this message is about, even when its body is unreadable;
        None unless it is a well-formed delivery id (it may end up as a session id or table key)."""
        props = self.application_properties
        guess = self.session_id or self.correlation_id or text(props.get("correlationId"))
        return guess if guess and re.fullmatch(DELIVERY_ID_PATTERN, guess) else None

    @property
    def cause(self) -> Cause:
        """This message as the cause of what a handler publishes, read without decoding the body."""
        return Cause(self.message_id, text(self.application_properties.get("traceparent")), self.delivery_id)


def text(value: Any) -> str | None:
    """An application property as text (the SDK hands some over as bytes)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value) if value is not None else None


@dataclass(frozen=True)
class Received:
    """A decoded message: the envelope, its contract, and where it came from."""

    envelope: Envelope
    payload: Contract
    incoming: Incoming

    @property
    def cause(self) -> Cause:
        return Cause(self.envelope.message_id, self.envelope.traceparent, self.envelope.correlation_id)


@dataclass(frozen=True)
class Outgoing:
    """A message to publish. The publisher stamps the envelope (causation, trace, time)."""

    destination: Destination
    payload: Contract
    message_id: str
    correlation_id: str
    session_id: str | None = None
    scheduled_at: datetime | None = None


@dataclass(frozen=True)
class OutgoingEvent:
    """A CloudEvent to announce on Event Grid; ``id`` is deterministic so subscribers can dedupe."""

    id: str
    type: str
    subject: str
    data: dict[str, Any]
    correlation_id: str


@dataclass(frozen=True)
class DeadLetter:
    """A copy of a message that failed permanently, with the reason it failed."""

    incoming: Incoming
    reason: str
    description: str


def stamp(message: Outgoing, cause: Cause, now: datetime, traceparent: str | None = None) -> Envelope:
    """The envelope for ``message``: the one place message metadata is decided. ``traceparent``
    is the context of the span that sends it; without one, a new span id in the cause's trace."""
    return Envelope(
        type=message.payload.TYPE,
        schema_version=message.payload.SCHEMA_VERSION,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        causation_id=cause.message_id,
        traceparent=traceparent or child_traceparent(cause.traceparent),
        occurred_at=now,
        data=message.payload.to_data(),
    )


def dead_letter_properties(letter: DeadLetter) -> dict[str, Any]:
    """The original application properties plus why, and from where, the message was dead-lettered."""
    props = {str(k): v for k, v in letter.incoming.application_properties.items()}
    props.update({
        "DeadLetterReason": letter.reason,
        "DeadLetterErrorDescription": letter.description[:4096],
        "DeadLetterSource": letter.incoming.source,
        "OriginalMessageId": letter.incoming.message_id,
        "OriginalDeliveryCount": letter.incoming.delivery_count,
    })
    return props


class Publisher(Protocol):
    """The one way messages leave a function."""

    def send(self, messages: Sequence[Outgoing], cause: Cause) -> list[Envelope]:
        """Stamp and send ``messages``; returns the envelopes sent. Raises on failure (transient)."""
        ...

    def dead_letter(self, letter: DeadLetter) -> None:
        """Send a copy of ``letter.incoming`` to the application dead-letter queue."""
        ...


class EventPublisher(Protocol):
    """Announces facts to whoever listens (Event Grid, CloudEvents 1.0)."""

    def publish(self, events: Sequence[OutgoingEvent], cause: Cause) -> None:
        ...
