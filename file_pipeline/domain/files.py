"""A submitted payment file's lifecycle, as recorded in Table ``paymentfiles``, and the pure
decisions around it: server-side file ids, reading the blob name, duplicate-file keys, state
transitions and the status view.

One blob *version* is one file: the id is derived from (container, name, ETag), so a re-run of
the same version (a retried trigger, a lost receipt) lands on the same record and is idempotent,
and an overwrite (new ETag) is a new file. Nothing here touches Azure or the wall clock.

States::

    Validating ──► Validated ──► Adapted ──► Completed
        │              │            │
        │              └────────────┴──► Compensating ──► Rejected
        └──────────────────────────────────────────────► Rejected

``Completed`` and ``Rejected`` are final. A record also remembers whether its final state has
been announced (``notified``) so that a re-run after a crash announces it exactly once more,
never twice after success.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from contracts.payment_files import UNSAFE_NAMES_PARTITION
from file_pipeline.domain.model import FileFormat, Finding
from file_pipeline.domain.names import UnsafeName, check_blob_name
from file_pipeline.domain.reason_codes import IsoReason

CLIENT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
FILE_ID_RE = re.compile(r"PF[0-9A-F]{24}\Z")
MAX_REASONS = 20  # group-level reasons kept on the record (the pain.002 has them all)


_DETAILS = frozenset({
    "transactions", "accepted", "rejected", "accepted_sum", "rejected_sum", "transaction_reasons", "format",
    "msg_id", "original_nb_of_txs", "original_ctrl_sum",
})


class FileState(StrEnum):
    VALIDATING = "Validating"
    VALIDATED = "Validated"
    ADAPTED = "Adapted"
    COMPLETED = "Completed"
    COMPENSATING = "Compensating"
    REJECTED = "Rejected"

    @property
    def final(self) -> bool:
        return self in (FileState.COMPLETED, FileState.REJECTED)


class Step(StrEnum):
    """The pipeline's steps, as named in records, events and compensation commands."""

    VALIDATOR = "FileValidator"
    ADAPTOR = "FileAdaptor"
    CREATOR = "FileCreator"


class InvalidTransition(RuntimeError):
    """A state change the lifecycle does not allow (a programming error, not bad input)."""


@dataclass(frozen=True)
class UploadName:
    """What an uploaded blob's name (inside its container) says, once checked."""

    client_id: str  # the Table partition to record the file under
    file_name: str  # printable form of the name after the client folder
    safe: bool
    problem: str = ""


def printable(text: str, limit: int = 1024) -> str:
    """``text`` with control characters shown as ``\\xNN`` (for records, logs and reports)."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text[:limit])


def parse_upload_name(name: str) -> UploadName:
    """Split ``{clientId}/{fileName}``; an unsafe name is reported, never used as a path."""
    try:
        check_blob_name(name)
    except UnsafeName as exc:
        head = name.split("/", 1)[0]
        client = head if CLIENT_ID_RE.match(head) else UNSAFE_NAMES_PARTITION
        rest = name.split("/", 1)[1] if client == head and "/" in name else name
        return UploadName(client, printable(rest), False, str(exc))
    client, sep, file_name = name.partition("/")
    if not sep or not CLIENT_ID_RE.match(client):
        return UploadName(
            UNSAFE_NAMES_PARTITION,
            printable(name),
            False,
            "blob name must be {clientId}/{fileName}, the client id made of letters, digits, '-' and '_'",
        )
    return UploadName(client, file_name, True)


def file_id_for(container: str, name: str, etag: str) -> str:
    """Server-side id of one blob version: ``PF`` + 24 hex digits (a valid MsgId, Table key and
    blob name segment, whatever the uploaded name was)."""
    version = etag.strip('"')  # hosts and SDKs differ on quoting the ETag
    digest = hashlib.sha256(f"{container}\n{name}\n{version}".encode("utf-8", "surrogatepass")).hexdigest()
    return "PF" + digest[:24].upper()


@dataclass(frozen=True)
class DuplicateKey:
    """A fact that must be unique across a client's live files (DU01)."""

    key: str  # Table-safe: [a-z0-9-]
    kind: str  # "content" | "MsgId"
    value: str  # what a person recognises (hash prefix, MsgId)

    def finding(self, owner_file_id: str, owner_file_name: str) -> Finding:
        if self.kind == "content":
            what = f"the file is identical (SHA-256 {self.value[:16]}...) to"
        else:
            what = f"MsgId {self.value!r} was already used by"
        return Finding(IsoReason.DU01, f"{what} file {owner_file_name!r} ({owner_file_id}), already accepted")


def duplicate_keys(sha256: str, file_format: FileFormat | None, msg_id: str) -> list[DuplicateKey]:
    """Content hash always; the MsgId too when the client chose it (pain.001, NACHA). A CSV's
    MsgId is our own file id, so it says nothing about duplicates."""
    keys = [DuplicateKey(f"sha256-{sha256}", "content", sha256)]
    if file_format is not None and file_format is not FileFormat.CSV and msg_id:
        digest = hashlib.sha256(f"{file_format.family}\n{msg_id}".encode()).hexdigest()[:40]
        keys.append(DuplicateKey(f"msgid-{digest}", "MsgId", msg_id))
    return keys


def _sum(value: Decimal | str) -> str:
    return format(Decimal(value), "f")


@dataclass
class PaymentFile:
    """The record of one submitted file (one blob version)."""

    file_id: str
    client_id: str
    file_name: str
    state: FileState
    received_at: datetime
    updated_at: datetime
    input_name: str = ""  # blob name inside the input container ("" when unsafe)
    source_etag: str = ""
    size: int | None = None
    sha256: str = ""
    format: str = ""
    msg_id: str = ""  # the client's MsgId (pain.001), NACHA file id, or our file id (CSV)
    original_nb_of_txs: int = 0
    original_ctrl_sum: str = "0"
    validated_at: datetime | None = None
    group_status: str = ""
    transactions: int = 0
    accepted: int = 0
    rejected: int = 0
    accepted_sum: str = "0"
    rejected_sum: str = "0"
    reasons: list[tuple[str, str]] = field(default_factory=list)
    transaction_reasons: dict[str, int] = field(default_factory=dict)
    locations: dict[str, str] = field(default_factory=dict)
    failed_step: str = ""
    duplicate_keys: list[str] = field(default_factory=list)  # claims this file holds
    # what the file reserved of its client's daily limits: "EUR-2026-11-23" -> "1250.00"
    # (file_pipeline.domain.daily); kept until compensation takes it back
    daily_amounts: dict[str, str] = field(default_factory=dict)
    handoff: dict[str, Any] | None = None  # the last hand-off message's data, to re-send on a re-run
    notified: bool = False
    version: str | None = None  # storage ETag of the record; None until stored

    # -- construction
    @classmethod
    def received(
        cls,
        file_id: str,
        name: UploadName,
        input_name: str,
        source_etag: str,
        size: int | None,
        now: datetime,
        input_location: str,
    ) -> PaymentFile:
        return cls(
            file_id=file_id,
            client_id=name.client_id,
            file_name=name.file_name,
            state=FileState.VALIDATING,
            received_at=now,
            updated_at=now,
            input_name=input_name if name.safe else "",
            source_etag=source_etag,
            size=size,
            locations={"input": input_location},
        )

    # -- transitions
    def _require(self, *states: FileState) -> None:
        if self.state not in states:
            allowed = ", ".join(s.value for s in states)
            raise InvalidTransition(f"file {self.file_id} is {self.state.value}; expected {allowed}")

    def validated(
        self,
        now: datetime,
        *,
        validated_at: datetime,
        file_format: str,
        sha256: str,
        size: int,
        msg_id: str,
        original_nb_of_txs: int,
        original_ctrl_sum: Decimal,
        group_status: str,
        transactions: int,
        accepted: int,
        rejected: int,
        accepted_sum: Decimal,
        rejected_sum: Decimal,
        transaction_reasons: dict[str, int],
        claims: list[str],
        handoff: dict[str, Any],
        daily_amounts: dict[str, str] | None = None,
    ) -> None:
        self._require(FileState.VALIDATING)
        self.state = FileState.VALIDATED
        self.validated_at = validated_at
        self.updated_at = now
        self.format, self.sha256, self.size, self.msg_id = file_format, sha256, size, msg_id
        self.original_nb_of_txs, self.original_ctrl_sum = original_nb_of_txs, _sum(original_ctrl_sum)
        self.group_status = group_status
        self.transactions, self.accepted, self.rejected = transactions, accepted, rejected
        self.accepted_sum, self.rejected_sum = _sum(accepted_sum), _sum(rejected_sum)
        self.transaction_reasons = dict(transaction_reasons)
        self.duplicate_keys = list(claims)
        self.daily_amounts = dict(daily_amounts or {})
        self.handoff = handoff

    def adapted(self, now: datetime, handoff: dict[str, Any]) -> None:
        self._require(FileState.VALIDATED)
        self.state = FileState.ADAPTED
        self.updated_at = now
        self.handoff = handoff

    def completed(self, now: datetime, locations: dict[str, str]) -> None:
        self._require(FileState.ADAPTED)
        self.state = FileState.COMPLETED
        self.updated_at = now
        self.locations.update(locations)
        self.notified = False  # the hand-off stays until announced: it describes what was created

    def compensating(self, now: datetime, step: Step, reasons: list[Finding]) -> list[str]:
        """Start undoing a file whose ``step`` failed for good; returns the duplicate-file claims
        to release in the same write (so a corrected resubmission is accepted at once). What the
        file reserved of the daily limits is taken back with :meth:`release_daily_amounts`."""
        self._require(FileState.VALIDATED, FileState.ADAPTED)
        self.state = FileState.COMPENSATING
        self.updated_at = now
        self.failed_step = step.value
        self.reasons = [(f.code.value, f.description) for f in reasons][:MAX_REASONS]
        self.handoff = None
        released, self.duplicate_keys = self.duplicate_keys, []
        return released

    def rejected_by(
        self,
        now: datetime,
        step: Step,
        reasons: list[Finding],
        locations: dict[str, str],
        *,
        details: dict[str, Any] | None = None,
    ) -> list[str]:
        """Final rejection; returns the duplicate-file claims to release in the same write."""
        self._require(FileState.VALIDATING, FileState.COMPENSATING)
        if self.state is FileState.VALIDATING:
            self.failed_step = step.value
            self.reasons = [(f.code.value, f.description) for f in reasons][:MAX_REASONS]
        for name, value in (details or {}).items():
            if name not in _DETAILS:
                raise AttributeError(f"{name} is not a detail of a payment file record")
            setattr(self, name, value)
        self.state = FileState.REJECTED
        self.group_status = "RJCT"
        self.updated_at = now
        self.locations.update(locations)
        self.handoff = None
        self.notified = False
        released, self.duplicate_keys = self.duplicate_keys, []
        return released

    def release_daily_amounts(self) -> dict[str, str]:
        """Clear what the file reserved of its client's daily limits and return it, to subtract
        from the day totals in the same write that saves this record (so a repeat finds nothing
        left to subtract)."""
        released, self.daily_amounts = self.daily_amounts, {}
        return released

    def announced(self, now: datetime) -> None:
        self._require(FileState.COMPLETED, FileState.REJECTED)
        self.notified = True
        self.handoff = None
        self.updated_at = now

    # -- views
    @property
    def reason_findings(self) -> list[Finding]:
        return [Finding(IsoReason.of(code), text) for code, text in self.reasons]

    def status_view(self, previous_file_ids: list[str] | None = None) -> dict[str, Any]:
        """What ``GET /api/payment-files/{clientId}/{fileName}`` answers."""
        return {
            "fileId": self.file_id,
            "clientId": self.client_id,
            "fileName": self.file_name,
            "state": self.state.value,
            "format": self.format or None,
            "groupStatus": self.group_status or None,
            "receivedAt": self.received_at.isoformat(),
            "updatedAt": self.updated_at.isoformat(),
            "size": self.size,
            "sha256": self.sha256 or None,
            "msgId": self.msg_id or None,
            "counts": {"transactions": self.transactions, "accepted": self.accepted, "rejected": self.rejected},
            "amounts": {"accepted": self.accepted_sum, "rejected": self.rejected_sum},
            "reasons": [{"code": c, "description": d} for c, d in self.reasons],
            "transactionReasons": dict(sorted(self.transaction_reasons.items())),
            "failedStep": self.failed_step or None,
            "locations": dict(sorted(self.locations.items())),
            "previousFileIds": list(previous_file_ids or []),
        }
