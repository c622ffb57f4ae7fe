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
    enqueued_at: datetime | None = None
    # Set by Service Bus on a dead letter it forwarded (ForwardDeadLetteredMessagesTo): the
    # entity path the message failed in.
    dead_letter_source: str | None = None

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
    """A copy of a message that failed permanently, with the reason it failed. ``compensated``:
    the consuming service already ran its compensation (its ``on_permanent_failure``)."""

    incoming: Incoming
    reason: str
    description: str
    compensated: bool = True


# Application properties that steer a resubmitted copy (see :class:`Resubmission`).
RESUBMIT_TO = "ResubmitTo"
REMEDIATION_ATTEMPT = "RemediationAttempt"
FIRST_FAILURE_AT = "FirstFailureAt"
LAST_FAILURE_AT = "LastFailureAt"
COMPENSATED = "Compensated"
# The context of the span that dead-lettered the message: remediation's invocation is its child,
# so a trace shows which function gave the message up (the body's envelope keeps the journey's).
DEAD_LETTER_TRACEPARENT = "DeadLetterTraceparent"


@dataclass(frozen=True)
class Resubmission:
    """A dead letter sent back to the one entity it failed in: a queue, or a single subscription
    of a topic (the copy carries ``ResubmitTo = <subscription>``, which every subscription's
    filter honours, so the topic's other subscriptions never see it). The body is the original,
    byte for byte; ``message_id`` is new (the original's would be dropped by duplicate detection)."""

    entity: str  # "delivery-events" or "deliveries/subscriptions/package"
    body: bytes
    message_id: str
    subject: str | None
    correlation_id: str | None
    session_id: str | None
    content_type: str | None
    application_properties: Mapping[str, Any]
    scheduled_at: datetime | None = None
    traceparent: str | None = None  # of the journey it belongs to: the resubmission joins that trace

    @property
    def destination(self) -> tuple[str, str | None]:
        """(queue or topic, subscription or None)."""
        topic, _, subscription = self.entity.partition("/subscriptions/")
        return topic, subscription or None


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


def dead_letter_properties(letter: DeadLetter, now: datetime, traceparent: str | None = None) -> dict[str, Any]:
    """The original application properties plus why, from where and when the message was
    dead-lettered (``FirstFailureAt`` survives resubmissions: a copy carries it)."""
    props = {str(k): v for k, v in letter.incoming.application_properties.items()}
    props.pop(RESUBMIT_TO, None)  # steering for the failed copy's trip, not part of the message
    props.update({
        "DeadLetterReason": letter.reason,
        "DeadLetterErrorDescription": letter.description[:4096],
        "DeadLetterSource": letter.incoming.source,
        "OriginalMessageId": text(props.get("OriginalMessageId")) or letter.incoming.message_id,
        "OriginalDeliveryCount": letter.incoming.delivery_count,
        FIRST_FAILURE_AT: text(props.get(FIRST_FAILURE_AT)) or now.isoformat(),
        LAST_FAILURE_AT: now.isoformat(),
        COMPENSATED: letter.compensated,
    })
    if traceparent:
        props[DEAD_LETTER_TRACEPARENT] = traceparent
    return props


class Publisher(Protocol):
    """The one way messages leave a function."""

    def send(self, messages: Sequence[Outgoing], cause: Cause) -> list[Envelope]:
        """Stamp and send ``messages``; returns the envelopes sent. Raises on failure (transient)."""
        ...

    def dead_letter(self, letter: DeadLetter) -> None:
        """Send a copy of ``letter.incoming`` to the application dead-letter queue."""
        ...


class Resubmitter(Protocol):
    """Sends a dead letter back to exactly the entity it failed in (remediation, ``ops dlq``)."""

    def resubmit(self, copy: Resubmission) -> None:
        ...


class EventPublisher(Protocol):
    """Announces facts to whoever listens (Event Grid, CloudEvents 1.0)."""

    def publish(self, events: Sequence[OutgoingEvent], cause: Cause) -> None:
        ...
