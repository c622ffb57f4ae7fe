"""Consuming a Service Bus message: decode, dispatch, and classify failures — in one place.

Dead-lettering with a reason, and why it is done by the application
--------------------------------------------------------------------
With the classic Python Service Bus binding a function cannot settle its message: the host
completes it when the function returns and abandons it when the function raises. Explicit
dead-lettering needs ``ServiceBusMessageActions`` from a preview extension package (with grpc
and uamqp) that local hosts do not provide. This app therefore uses an **application-level
dead-letter route** that behaves identically in Azure and locally:

* **Permanent failure** (malformed message, unknown type or schema version, a business rule
  refusing the request — any :class:`~.errors.PermanentFailure`): :func:`consume` first lets the
  service compensate (``Consumer.on_permanent_failure``: e.g. the Package service sends
  ``PackageRejected`` to ``delivery-events`` so the Delivery saga cancels and compensates the
  other side), then sends a copy of the original message — body, subject, correlation id and
  application properties — to the queue ``deadletter`` with the application properties
  ``DeadLetterReason`` (a :class:`~.reason_codes.ReasonCode`), ``DeadLetterErrorDescription``,
  ``DeadLetterSource`` (the entity it came from), ``OriginalMessageId`` and
  ``OriginalDeliveryCount``, and **returns normally**, so the host completes the original.
  There is no retry. The copy's message id is derived from the original's, so a redelivered
  message that fails again is dropped by the queue's duplicate detection.
* **Transient failure** (anything else: storage or broker unavailable, an ETag race lost too
  often): the exception propagates, the host abandons the message, Service Bus redelivers it,
  and after ``MaxDeliveryCount`` (5) attempts Service Bus moves it to the entity's own
  ``$deadletterqueue`` with ``DeadLetterReason = MaxDeliveryCountExceeded``.

Both end in one place: every queue and subscription forwards its dead-letter queue to
``deadletter`` (``ForwardDeadLetteredMessagesTo``; Service Bus stamps ``DeadLetterSource``), so
the remediation service (:mod:`remediation`) sees every dead letter with its reason and decides
to retry it, compensate or park it. The same in Azure and on the local stack.
"""

from __future__ import annotations

import logging
from typing import NoReturn, Protocol

from . import telemetry
from .contracts import ContractRegistry, parse_envelope
from .errors import MalformedMessage, PermanentFailure, UnknownMessageType, classify
from .messaging import DeadLetter, Incoming, Publisher, Received

log = logging.getLogger(__name__)

class Consumer(Protocol):
    """A service's side of a trigger: what it accepts and what to do with it. ``handle`` matches
    on the payload's type (``match received.payload: case DeliveryRequested() as request: ...``),
    so the way from a trigger to its use case reads in one place; :func:`unexpected` ends the
    match for a contract the registry decodes but the consumer does not handle."""

    @property
    def contracts(self) -> ContractRegistry: ...

    def handle(self, received: Received) -> None: ...

    def on_permanent_failure(self, incoming: Incoming, received: Received | None,
                             failure: PermanentFailure) -> None:
        """Compensate for a message that will never be processed (may raise: transient)."""
        ...


def decode(incoming: Incoming, contracts: ContractRegistry) -> Received:
    envelope = parse_envelope(incoming.body)
    payload = contracts.decode(envelope)
    if incoming.session_id is not None and incoming.session_id != envelope.correlation_id:
        raise MalformedMessage(f"session {incoming.session_id!r} does not match correlation id "
                               f"{envelope.correlation_id!r}")
    return Received(envelope=envelope, payload=payload, incoming=incoming)


def consume(incoming: Incoming, consumer: Consumer, publisher: Publisher) -> None:
    """Process one message; return to complete it, raise to have it redelivered."""
    received: Received | None = None
    telemetry.annotate(_attributes(incoming))
    try:
        received = decode(incoming, consumer.contracts)
        telemetry.annotate({telemetry.MESSAGE_TYPE: received.envelope.type,
                            telemetry.CORRELATION: received.envelope.correlation_id})
        consumer.handle(received)
    except Exception as exc:
        failure = classify(exc)
        if failure is None:
            telemetry.annotate({telemetry.OUTCOME: "retried"})
            log.warning("transient failure on %s message %s (delivery %s, attempt %d): %s: %s; it will be "
                        "redelivered", incoming.source, incoming.message_id, incoming.delivery_id,
                        incoming.delivery_count, type(exc).__name__, _first_line(exc))
            raise
        log.error("permanent failure on %s message %s (delivery %s): %s %s; dead-lettered",
                  incoming.source, incoming.message_id, incoming.delivery_id, failure.reason.value,
                  failure.description)
        telemetry.annotate({telemetry.OUTCOME: "dead-lettered", telemetry.REASON: failure.reason.value})
        telemetry.mark_failed(f"{failure.reason.value}: {failure.description}")
        consumer.on_permanent_failure(incoming, received, failure)
        publisher.dead_letter(DeadLetter(incoming, failure.reason.value, failure.description))
        return
    telemetry.annotate({telemetry.OUTCOME: "completed"})


def _attributes(incoming: Incoming) -> dict[str, object]:
    entity, _, subscription = incoming.source.partition("/subscriptions/")
    return {
        telemetry.MESSAGING_SYSTEM: "servicebus",
        telemetry.MESSAGING_OPERATION: "process",
        telemetry.MESSAGING_DESTINATION: entity,
        telemetry.MESSAGING_SUBSCRIPTION: subscription or None,
        telemetry.MESSAGING_MESSAGE_ID: incoming.message_id,
        telemetry.MESSAGING_CONVERSATION: incoming.correlation_id,
        telemetry.MESSAGING_SESSION: incoming.session_id,
        telemetry.MESSAGING_DELIVERY_COUNT: incoming.delivery_count,
        telemetry.MESSAGE_TYPE: incoming.subject,
        telemetry.CORRELATION: incoming.delivery_id or incoming.correlation_id,
    }


def unexpected(received: Received) -> NoReturn:
    """A payload its consumer's ``handle`` has no case for: a wiring mistake, never retried."""
    raise UnknownMessageType(f"{received.envelope.type} is not handled by this consumer")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else "")[:300]
