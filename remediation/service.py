"""The remediation use case: read a dead letter, decide by the policy, carry the decision out,
and keep an audit entry of it. Idempotent: a dead letter seen twice is decided once (the entry is
written before acting; a redelivery finds it and only finishes what was pending), and every act
has a deterministic id (resubmissions, compensations and the ``MessageParked`` event)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from choreography import telemetry
from choreography.clock import Clock
from choreography.entities import (
    ADAPTED_QUEUE,
    COMPENSATION_QUEUE,
    DELIVERY_NOTICES_TOPIC,
    PAYMENT_NOTICES_TOPIC,
    VALIDATED_QUEUE,
)
from choreography.idempotency import message_id
from choreography.messaging import (
    COMPENSATED,
    DEAD_LETTER_TRACEPARENT,
    FIRST_FAILURE_AT,
    LAST_FAILURE_AT,
    REMEDIATION_ATTEMPT,
    Cause,
    EventPublisher,
    Incoming,
    OutgoingEvent,
    Publisher,
    Resubmission,
    Resubmitter,
)
from choreography.reason_codes import ReasonCode
from contracts.deliveries import COMPENSATIONS
from contracts.remediation import MESSAGE_PARKED

from .domain import AuditEntry, DeadLetterRecord, Decision, Outcome, Policy, Verdict, decide, read
from .ports import AuditLog

log = logging.getLogger(__name__)

PAYMENT_ENTITIES = frozenset({VALIDATED_QUEUE.name, ADAPTED_QUEUE.name, COMPENSATION_QUEUE.name})

# Properties a dead letter gained on its way; a resubmitted copy goes back without them.
_DEAD_LETTER_ONLY = ("DeadLetterReason", "DeadLetterErrorDescription", "DeadLetterSource", "OriginalDeliveryCount",
                     LAST_FAILURE_AT, COMPENSATED, DEAD_LETTER_TRACEPARENT)


class Remediation:
    def __init__(self, audit: AuditLog, resubmitter: Resubmitter, publisher: Publisher,
                 delivery_events: EventPublisher, payment_events: EventPublisher, clock: Clock,
                 policy: Policy) -> None:
        self.audit = audit
        self.resubmitter = resubmitter
        self.publisher = publisher
        self.delivery_events = delivery_events
        self.payment_events = payment_events
        self.clock = clock
        self.policy = policy

    def handle(self, incoming: Incoming) -> AuditEntry:
        """Decide on the dead letter ``incoming`` (a message of queue ``deadletter``) and act."""
        record = read(incoming)
        entry = self.audit.get(record.message_id)
        if entry is None:
            verdict = decide(record, self.policy, (record.entity, record.message_type or "") in COMPENSATIONS)
            entry = AuditEntry(record, verdict, self.clock.now())
            if not self.audit.add(entry):  # another instance got there first: follow its decision
                entry = self.audit.get(record.message_id) or entry
        telemetry.annotate({telemetry.CORRELATION: record.correlation_id, telemetry.REASON: record.reason,
                            telemetry.MESSAGE_TYPE: record.message_type, "remediation.entity": record.entity,
                            "remediation.decision": entry.verdict.decision.value,
                            "remediation.attempt": entry.verdict.attempt})
        if entry.outcome is not Outcome.PENDING:
            log.info("dead letter %s already decided (%s, %s)", record.message_id, entry.verdict.decision,
                     entry.outcome)
            return entry
        self.act(entry.record, entry.verdict)
        self.audit.set_outcome(record.message_id, Outcome.DONE)
        log.info("dead letter %s from %s (%s): %s: %s", record.message_id, record.entity, record.reason,
                 entry.verdict.decision, entry.verdict.why)
        return AuditEntry(entry.record, entry.verdict, entry.decided_at, Outcome.DONE)

    def act(self, record: DeadLetterRecord, verdict: Verdict) -> None:
        match verdict.decision:
            case Decision.RETRY:
                self.resubmitter.resubmit(resubmission(record, verdict.attempt, self.clock.now() + verdict.delay))
            case Decision.COMPENSATE:
                self.compensate(record)
            case Decision.PARK:
                self.announce_parked(record, verdict)
            case Decision.CLOSE:
                pass

    def compensate(self, record: DeadLetterRecord) -> None:
        declared = COMPENSATIONS[(record.entity, record.message_type or "")]
        reason = ReasonCode(record.reason) if record.reason in set(ReasonCode) else ReasonCode.RETRIES_EXHAUSTED
        if not record.correlation_id:
            raise ValueError(f"dead letter {record.message_id} names no delivery to compensate")
        self.publisher.send([declared(record.correlation_id, reason, record.description)], _cause(record))

    def announce_parked(self, record: DeadLetterRecord, verdict: Verdict) -> None:
        topic = PAYMENT_NOTICES_TOPIC if record.entity in PAYMENT_ENTITIES else DELIVERY_NOTICES_TOPIC
        events = self.payment_events if topic is PAYMENT_NOTICES_TOPIC else self.delivery_events
        events.publish([parked_event(record, verdict)], _cause(record))


def resubmission(record: DeadLetterRecord, attempt: int, at: datetime | None) -> Resubmission:
    """``record`` sent back to the entity it failed in, as resubmission number ``attempt``."""
    properties: dict[str, Any] = {k: v for k, v in record.properties.items() if k not in _DEAD_LETTER_ONLY}
    properties.update({REMEDIATION_ATTEMPT: attempt, "OriginalMessageId": record.original_message_id})
    if record.first_failure_at is not None:
        properties[FIRST_FAILURE_AT] = record.first_failure_at.isoformat()
    return Resubmission(
        entity=record.entity, body=record.body,
        message_id=message_id("resubmit", str(attempt), record.original_message_id),
        subject=record.message_type, correlation_id=record.correlation_id, session_id=record.session_id,
        content_type=record.content_type, application_properties=properties, scheduled_at=at,
        traceparent=record.traceparent)


def parked_event(record: DeadLetterRecord, verdict: Verdict) -> OutgoingEvent:
    return OutgoingEvent(
        id=message_id(MESSAGE_PARKED, record.message_id), type=MESSAGE_PARKED,
        subject=f"/deadletters/{record.entity}",
        data={"deadLetterId": record.message_id, "originalMessageId": record.original_message_id,
              "entity": record.entity, "messageType": record.message_type, "reason": record.reason,
              "description": record.description, "why": verdict.why, "attempts": verdict.attempt,
              "correlationId": record.correlation_id},
        correlation_id=record.correlation_id or "")


def _cause(record: DeadLetterRecord) -> Cause:
    return Cause(record.message_id, record.traceparent, record.correlation_id)

