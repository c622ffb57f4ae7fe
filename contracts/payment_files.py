"""Payment files: what FileValidator, FileAdaptor and FileCreator say to each other over Service
Bus (claim checks: references to work blobs, never the payload), the compensation command, and
the Event Grid events announced to the bank's other systems.

Service Bus (all queues, no sessions, duplicate detection on; the envelope's correlation id is
the file id; message ids are ``{Type}:{fileId}`` so a re-send is dropped by the queue, and
``{Type}:{fileId}:attempt-{n}`` for a step's later attempt after a transient failure):

==============================  ===============================  =================================
queue                           message                          consumer
==============================  ===============================  =================================
``payment-files-validated``     ``PaymentFileValidated`` (event)   ``file_pipeline_adapt``
``payment-files-adapted``       ``PaymentFileAdapted`` (event)     ``file_pipeline_create``
``payment-files-compensation``  ``CompensatePaymentFile`` (cmd)    ``file_pipeline_compensate``
``deadletter`` (shared)         copy of a failed or rejected       operators
                                message + ``DeadLetterReason``
==============================  ===============================  =================================

Event Grid topic ``payments`` (CloudEvents 1.0, source ``/payment-files``, subject
``/payment-files/{clientId}/{fileId}``, id ``{type}:{fileId}``): ``PaymentFileCreated``,
``PaymentFileRejected``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, StringConstraints

from choreography.contracts import Contract, Data

EVENT_SOURCE = "/payment-files"
PAYMENT_FILE_CREATED = "PaymentFileCreated"
PAYMENT_FILE_REJECTED = "PaymentFileRejected"

# Where the pipeline records an upload whose name gives no usable client id (the blob name is
# never used as a key): a client id on the wire like any other.
UNSAFE_NAMES_PARTITION = "_unsafe-names"

# The same shapes as file_pipeline.domain.files.FILE_ID_RE / CLIENT_ID_RE (checked by the unit tests).
FileId = Annotated[str, StringConstraints(pattern=r"^PF[0-9A-F]{24}$")]
ClientId = Annotated[
    str, StringConstraints(pattern=rf"^(?:[A-Za-z0-9][A-Za-z0-9_-]{{0,63}}|{UNSAFE_NAMES_PARTITION})$")]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
# Which try of the receiving step this message is: a transient failure schedules the next one
# (``{Type}:{fileId}:attempt-{n}``) instead of leaving it to the broker's immediate redelivery.
Attempt = Annotated[int, Field(ge=1, le=100)]


class WorkBlob(Data):
    """Claim check: where a step left its output, and how to recognise it intact."""

    container: str
    name: str
    sha256: Sha256
    size: int


class FileSummary(Data):
    """What every hand-off carries about the file, so no step has to read an earlier one's record."""

    file_id: FileId
    client_id: ClientId
    file_name: str
    format: str
    msg_id: str  # the client's MsgId / NACHA file id / our file id for CSV
    original_nb_of_txs: int
    original_ctrl_sum: Decimal
    validated_at: AwareDatetime  # the validation clock reading; also the CreDtTm of every output
    group_status: str  # ACCP | PART
    accepted: int
    accepted_sum: Decimal
    rejected: int
    rejected_sum: Decimal


class PaymentFileValidated(Contract):
    """FileValidator -> FileAdaptor: the file passed; its valid transactions are in ``transactions``."""

    TYPE = "PaymentFileValidated"
    SCHEMA_VERSION = 1

    file: FileSummary
    transactions: WorkBlob
    rejections: WorkBlob | None = None
    attempt: Attempt = 1


class PaymentFileAdapted(Contract):
    """FileAdaptor -> FileCreator: canonical instructions, grouped, are in ``instructions``."""

    TYPE = "PaymentFileAdapted"
    SCHEMA_VERSION = 1

    file: FileSummary
    instructions: WorkBlob
    rejections: WorkBlob | None = None
    nb_of_txs: int
    ctrl_sum: Decimal
    blocks: int
    attempt: Attempt = 1


class CompensatePaymentFile(Contract):
    """Undo every step that succeeded for a file whose later step failed for good."""

    TYPE = "CompensatePaymentFile"
    SCHEMA_VERSION = 1

    file_id: FileId
    client_id: ClientId | None = None  # unknown when the failed message could not be read
    failed_step: Literal["FileAdaptor", "FileCreator"]
    reason: str
    description: str


def event_subject(client_id: str, file_id: str) -> str:
    return f"/payment-files/{client_id}/{file_id}"


def created_event_data(summary: FileSummary, locations: dict[str, str], nb_of_txs: int,
                       ctrl_sum: Decimal, blocks: int) -> dict[str, Any]:
    return {
        "fileId": summary.file_id,
        "clientId": summary.client_id,
        "fileName": summary.file_name,
        "format": summary.format,
        "groupStatus": summary.group_status,
        "accepted": summary.accepted,
        "rejected": summary.rejected,
        "nbOfTxs": nb_of_txs,
        "ctrlSum": format(ctrl_sum, "f"),
        "paymentBlocks": blocks,
        "locations": dict(sorted(locations.items())),
    }


def rejected_event_data(*, file_id: str, client_id: str, file_name: str, step: str,
                        reasons: list[tuple[str, str]], transaction_reasons: dict[str, int],
                        locations: dict[str, str], rejected_at: datetime) -> dict[str, Any]:
    return {
        "fileId": file_id,
        "clientId": client_id,
        "fileName": file_name,
        "step": step,
        "reasons": [{"code": c, "description": d} for c, d in reasons],
        "transactionReasons": dict(sorted(transaction_reasons.items())),
        "locations": dict(sorted(locations.items())),
        "rejectedAt": rejected_at.isoformat(),
    }
