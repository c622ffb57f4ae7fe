"""Every reason a message is dead-lettered or a delivery is cancelled: one enum, one vocabulary.

The values travel as ``DeadLetterReason`` application properties, in ``PackageRejected`` /
``DroneUnavailable`` messages, in the delivery's status (``reason``) and in ``DeliveryFailed``
events, so they are stable strings, never renamed.
"""

from __future__ import annotations

from enum import StrEnum


class ReasonCode(StrEnum):
    # The message itself cannot be used (permanent, whatever the handler).
    MALFORMED_MESSAGE = "MalformedMessage"
    UNKNOWN_MESSAGE_TYPE = "UnknownMessageType"
    UNKNOWN_SCHEMA_VERSION = "UnknownSchemaVersion"

    # Package rules.
    UNKNOWN_PACKAGE_SIZE = "UnknownPackageSize"
    INVALID_PACKAGE_WEIGHT = "InvalidPackageWeight"
    WEIGHT_EXCEEDS_SIZE_LIMIT = "WeightExceedsSizeLimit"

    # Drone scheduling rules.
    NO_DRONE_CAN_CARRY = "NoDroneCanCarryWeight"
    NO_DRONE_BEFORE_DEADLINE = "NoDroneAvailableBeforeDeadline"

    # Delivery saga.
    JOIN_TIMEOUT = "JoinTimeout"

    # Set by Service Bus itself: a transient failure outlived MaxDeliveryCount; a message expired
    # unread (DeadLetteringOnMessageExpiration). Both are retried by remediation.
    MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"
    TTL_EXPIRED = "TTLExpiredException"
    # A consumer lost its message or session lock (a host that stalled or died mid-work).
    LOCK_LOST = "MessageLockLost"

    # A transient failure outlived a service's own retries, spaced out over minutes.
    RETRIES_EXHAUSTED = "RetriesExhausted"

    # A payment file's later step that can never succeed (file *content* problems are ISO
    # codes instead: file_pipeline.domain.reason_codes.IsoReason).
    WORK_FILE_MISSING = "WorkFileMissing"
    WORK_FILE_CORRUPT = "WorkFileCorrupt"
    OUTPUT_FAILED_SCHEMA = "OutputFailedSchemaValidation"
    FILE_RECORD_MISSING = "FileRecordMissing"
    UNKNOWN_CLIENT = "UnknownClient"
