"""Failures, classified in one place: :func:`classify`.

* :class:`PermanentFailure` (and subclasses): retrying cannot help. The message is routed to the
  application-level dead-letter queue with a :class:`~.reason_codes.ReasonCode` and the saga
  compensates (see :mod:`.handling`).
* Anything else is **transient**: the exception propagates, the Functions host abandons the
  message, Service Bus redelivers it and, after ``MaxDeliveryCount`` attempts, dead-letters it
  itself with ``MaxDeliveryCountExceeded``. Unknown exceptions are transient on purpose: the
  broker bounds the retries, whereas calling a bug "permanent" would silently drop work.
"""

from __future__ import annotations

from .reason_codes import ReasonCode


class PermanentFailure(Exception):
    """Retrying this message can never succeed."""

    default_reason = ReasonCode.MALFORMED_MESSAGE

    def __init__(self, description: str, reason: ReasonCode | None = None) -> None:
        super().__init__(description)
        self.reason: ReasonCode = reason or self.default_reason
        self.description = description

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason.value}: {self.description})"


class MalformedMessage(PermanentFailure):
    default_reason = ReasonCode.MALFORMED_MESSAGE


class UnknownMessageType(PermanentFailure):
    default_reason = ReasonCode.UNKNOWN_MESSAGE_TYPE


class UnknownSchemaVersion(PermanentFailure):
    default_reason = ReasonCode.UNKNOWN_SCHEMA_VERSION


class BusinessRuleViolation(PermanentFailure):
    """A domain rule refuses the request (an impossible package, no drone able to carry it...)."""


class TransientFailure(Exception):
    """Worth retrying later (an optimistic-concurrency race lost too many times, ...)."""


class ConcurrencyConflict(TransientFailure):
    """A write guarded by an ETag lost the race: the record changed since it was read (or
    already exists when it was to be created). Read again and decide again."""


def classify(exc: BaseException) -> PermanentFailure | None:
    """The permanent failure ``exc`` stands for, or None when it is transient."""
    if isinstance(exc, PermanentFailure):
        return exc
    return None
