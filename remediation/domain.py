"""What to do with a dead letter: the policy table, pure.

A dead letter reaches queue ``deadletter`` by one of two roads: the app sent it there after a
permanent failure (and the consuming service already compensated), or Service Bus forwarded it
from the entity's own dead-letter queue (``MaxDeliveryCountExceeded``, ``TTLExpiredException``).
:func:`read` turns either into one :class:`DeadLetterRecord`; :func:`decide` applies the table:

==========================================  ===================================================
reason                                      decision
==========================================  ===================================================
transient (``MaxDeliveryCountExceeded``,    **retry**: back to the entity or subscription that
``TTLExpiredException``, ``MessageLockLost``) failed, and only there, after a delay doubling per
                                            attempt; past the attempt limit, **park**
the message is unusable (``MalformedMessage``, **park**: a person must look
``UnknownMessageType``,
``UnknownSchemaVersion``), retries exhausted
(``RetriesExhausted``), or a reason this
table does not know
any other (a business rule refused it)      **close** when its service already compensated
                                            (recorded, nothing else to do); **compensate** with
                                            what the failed entity's owner declares when it has
                                            not; **park** when its owner declares nothing
==========================================  ===================================================
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from choreography.messaging import (
    COMPENSATED,
    FIRST_FAILURE_AT,
    LAST_FAILURE_AT,
    REMEDIATION_ATTEMPT,
    Incoming,
    text,
)
from choreography.reason_codes import ReasonCode

TRANSIENT = frozenset({ReasonCode.MAX_DELIVERY_COUNT_EXCEEDED, ReasonCode.TTL_EXPIRED, ReasonCode.LOCK_LOST})
UNUSABLE = frozenset({ReasonCode.MALFORMED_MESSAGE, ReasonCode.UNKNOWN_MESSAGE_TYPE,
                      ReasonCode.UNKNOWN_SCHEMA_VERSION, ReasonCode.RETRIES_EXHAUSTED})
UNKNOWN_REASON = "Unknown"


class Decision(StrEnum):
    RETRY = "retry"
    COMPENSATE = "compensate"
    PARK = "park"
    CLOSE = "close"


@dataclass(frozen=True)
class DeadLetterRecord:
    """One dead letter, whichever road it came by."""

    message_id: str  # of the dead letter itself (unique per failure)
    original_message_id: str
    entity: str  # queue, or "topic/subscriptions/name"
    reason: str
    description: str
    message_type: str | None
    correlation_id: str | None  # the delivery id or the file id
    delivery_count: int | None
    first_failure_at: datetime | None
    last_failure_at: datetime | None
    traceparent: str | None
    attempt: int  # resubmissions so far
    compensated: bool
    body: bytes
    session_id: str | None
    content_type: str | None
    properties: Mapping[str, Any]

    @property
    def subscription(self) -> str | None:
        return self.entity.partition("/subscriptions/")[2] or None


@dataclass(frozen=True)
class Policy:
    max_attempts: int = 3
    retry_base: timedelta = timedelta(seconds=30)
    retry_max: timedelta = timedelta(minutes=30)

    def delay(self, attempt: int) -> timedelta:
        """Before resubmission number ``attempt`` (1, 2, ...): base, 2×base, 4×base... at most max."""
        delay: timedelta = self.retry_base * (2 ** (attempt - 1))
        return min(delay, self.retry_max)


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    why: str
    attempt: int = 0  # the resubmission this decides (retry), or the attempts made so far
    delay: timedelta = timedelta(0)


def decide(record: DeadLetterRecord, policy: Policy, compensation_declared: bool) -> Verdict:
    """The policy table above, for ``record``."""
    reason = record.reason
    if reason in TRANSIENT:
        if record.attempt >= policy.max_attempts:
            return Verdict(Decision.PARK, f"{reason}, still failing after {record.attempt} resubmissions",
                           record.attempt)
        attempt = record.attempt + 1
        return Verdict(Decision.RETRY, f"{reason} is transient: resubmission {attempt} of {policy.max_attempts}",
                       attempt, policy.delay(attempt))
    if reason in UNUSABLE or reason == UNKNOWN_REASON:
        return Verdict(Decision.PARK, f"{reason}: needs a person", record.attempt)
    if record.compensated:
        return Verdict(Decision.CLOSE, f"{reason}: its service already compensated", record.attempt)
    if compensation_declared:
        return Verdict(Decision.COMPENSATE, f"{reason}: not compensated yet; its owner's compensation is published",
                       record.attempt)
    return Verdict(Decision.PARK, f"{reason}: not compensated and its owner declares no compensation",
                   record.attempt)


_ATTEMPTS = re.compile(r"after (\d+) delivery attempts")


def read(incoming: Incoming) -> DeadLetterRecord:
    """The dead letter ``incoming`` (a message of queue ``deadletter``) as a record."""
    props = incoming.application_properties
    reason = text(props.get("DeadLetterReason")) or UNKNOWN_REASON
    description = text(props.get("DeadLetterErrorDescription")) or ""
    # An app-level dead letter names its source; Service Bus stamps a forwarded one.
    entity = text(props.get("DeadLetterSource")) or incoming.dead_letter_source or "unknown"
    count = _int(props.get("OriginalDeliveryCount"))
    if count is None:  # Service Bus says how many in its own words ("after 5 delivery attempts")
        found = _ATTEMPTS.search(description)
        count = int(found.group(1)) if found else None
    return DeadLetterRecord(
        message_id=incoming.message_id,
        original_message_id=text(props.get("OriginalMessageId")) or incoming.message_id,
        entity=_entity_path(entity),
        reason=reason,
        description=description,
        message_type=incoming.subject or text(props.get("type")),
        correlation_id=incoming.correlation_id or text(props.get("correlationId")) or incoming.session_id,
        delivery_count=count,
        first_failure_at=_time(props.get(FIRST_FAILURE_AT)) or incoming.enqueued_at,
        last_failure_at=_time(props.get(LAST_FAILURE_AT)) or incoming.enqueued_at,
        traceparent=_envelope_traceparent(incoming.body) or text(props.get("traceparent")),
        attempt=_int(props.get(REMEDIATION_ATTEMPT)) or 0,
        compensated=_bool(props.get(COMPENSATED)),
        body=incoming.body,
        session_id=incoming.session_id,
        content_type=incoming.content_type,
        properties=props,
    )


def _envelope_traceparent(body: bytes) -> str | None:
    """The journey's trace context, from the envelope (Service Bus may have rewritten the
    ``traceparent`` property with its own span on the way)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    carried = document.get("traceparent") if isinstance(document, dict) else None
    return carried if isinstance(carried, str) else None


def _entity_path(name: str) -> str:
    """Service Bus names a subscription ``topic/Subscriptions/name``; the app writes it lower case."""
    topic, sep, subscription = name.partition("/")
    if sep and subscription.lower().startswith("subscriptions/"):
        return f"{topic}/subscriptions/{subscription.split('/', 1)[1]}"
    return name


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _bool(value: Any) -> bool:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _time(value: Any) -> datetime | None:
    raw = text(value)
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


class Outcome(StrEnum):
    PENDING = "pending"  # decided, not yet carried out (a crash in between carries it out on redelivery)
    DONE = "done"
    RESUBMITTED = "resubmitted"  # a parked message an operator sent back (ops dlq resubmit)
    PURGED = "purged"


@dataclass(frozen=True)
class AuditEntry:
    """One decision, as Table ``remediations`` keeps it: enough to show it and to resubmit it."""

    record: DeadLetterRecord
    verdict: Verdict
    decided_at: datetime
    outcome: Outcome = Outcome.PENDING
    note: str = ""
