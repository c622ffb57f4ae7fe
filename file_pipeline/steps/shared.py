"""What the pipeline's steps share: the ports they work on (:class:`Workbench`), its reasons to
fail for good, the cached reference table, the work files they hand each other, hand-offs,
later attempts and the announcement of a file's end."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import IO, Any, BinaryIO

from choreography.clock import Clock
from choreography.contracts import Contract
from choreography.entities import (
    ADAPTED_QUEUE,
    COMPENSATION_QUEUE,
    INPUT_CONTAINER,
    REJECTED_CONTAINER,
    REPORTS_CONTAINER,
    VALIDATED_QUEUE,
    WORK_CONTAINER,
)
from choreography.errors import ConcurrencyConflict, PermanentFailure
from choreography.idempotency import message_id
from choreography.messaging import (
    Cause,
    DeadLetter,
    EventPublisher,
    Incoming,
    Outgoing,
    OutgoingEvent,
    Publisher,
)
from choreography.reason_codes import ReasonCode as AppReason
from choreography.retry import retry_delay
from contracts.payment_files import (
    PAYMENT_FILE_CREATED,
    PAYMENT_FILE_REJECTED,
    CompensatePaymentFile,
    FileSummary,
    PaymentFileAdapted,
    PaymentFileValidated,
    WorkBlob,
    created_event_data,
    event_subject,
    rejected_event_data,
)
from file_pipeline.domain.daily import DailyUsage, DayKey, DayTotal
from file_pipeline.domain.files import (
    FileState,
    PaymentFile,
    Step,
)
from file_pipeline.domain.model import Finding
from file_pipeline.domain.reference import ReferenceData
from file_pipeline.domain.validator import RJCT, Rejection
from file_pipeline.formats.pain002_writer import OriginalMessage, write_pain002
from file_pipeline.formats.safe_csv import write_error_report
from file_pipeline.ports import BlobNotFound, BlobStore, BlobWriter, FileRecords, ReferenceSource
from file_pipeline.workfiles import (
    VerifiedReader,
    spool,
)

log = logging.getLogger(__name__)


XML = "application/xml"
CSV = "text/csv"
#: Writes of one step on day totals that keep moving before it gives up (raises: transient).
DAILY_TOTALS_ATTEMPTS = 5


class StepFailed(PermanentFailure):
    """A step of the pipeline cannot succeed for this file, ever: compensate."""

    def __init__(self, description: str, reason: AppReason) -> None:
        super().__init__(description, reason)


class ReferenceUnavailable(RuntimeError):
    """The reference table is empty or unreadable: transient (seed it, then the retry works)."""


class CachedReference:
    """The reference table, loaded once per process on first use (never per file, never per row)."""

    def __init__(self, source: ReferenceSource) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._data: ReferenceData | None = None

    def get(self) -> ReferenceData:
        data = self._data
        if data is None:
            with self._lock:
                if self._data is None:
                    loaded = self._source.load()
                    if not loaded.clients or not loaded.currencies:
                        raise ReferenceUnavailable(
                            "the reference table has no clients or currencies: run `python -m file_pipeline.seed`")
                    self._data = loaded
                data = self._data
        return data


@dataclass(frozen=True)
class Options:
    max_bytes: int
    spool_dir: str | None = None
    max_attempts: int = 6  # tries of FileAdaptor / FileCreator before the file fails for good
    retry_base: timedelta = timedelta(seconds=10)  # the first retry's delay; doubled each time
    retry_cap: timedelta = timedelta(minutes=5)



class WorkWriter:
    """A work file being written: hashed as it goes, committed with its hash (the claim check
    that the message carries, verified by the step that reads it)."""

    def __init__(self, out: BlobWriter, file_id: str, blob_name: str) -> None:
        self._out = out
        self._file_id = file_id
        self._blob_name = blob_name
        self._hash = hashlib.sha256()
        self._size = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self._size += len(data)
        return self._out.write(data)

    def commit(self) -> WorkBlob:
        sha256 = self._hash.hexdigest()
        self._out.commit({"fileId": self._file_id, "sha256": sha256})
        return WorkBlob(container=WORK_CONTAINER, name=self._blob_name, sha256=sha256, size=self._size)



@dataclass(frozen=True)
class Ports:
    """What every step works with. ``clock`` stamps records and reports; ``rules_clock`` is the
    instant execution dates and cut-offs are judged at, and the creation time of the pain.001."""

    blobs: BlobStore
    records: FileRecords
    reference: CachedReference
    publisher: Publisher
    events: EventPublisher
    clock: Clock
    rules_clock: Clock
    options: Options


class Workbench:
    """The ports every step works with, and what the steps share: reading and saving a file's
    record, work files (claim checks), reports, quarantine, hand-offs, later attempts and the
    announcement. Each step is a :class:`Workbench` on the same :class:`Ports` (one cached
    reference table) given by :class:`~file_pipeline.service.PaymentFilePipeline`."""

    def __init__(self, ports: Ports) -> None:
        self.blobs = ports.blobs
        self.records = ports.records
        self.reference = ports.reference
        self.publisher = ports.publisher
        self.events = ports.events
        self.clock = ports.clock
        self.rules_clock = ports.rules_clock
        self.options = ports.options

    def _record(self, client_id: str, file_id: str) -> PaymentFile:
        record = self.records.get(client_id, file_id)
        if record is None:
            raise StepFailed(f"no record of file {file_id} for client {client_id}", AppReason.FILE_RECORD_MISSING)
        return record

    def _save_step(self, record: PaymentFile) -> PaymentFile | None:
        """Save a step's state change. If compensation took the file meanwhile, the current record
        is returned (the step must take back what it wrote); a conflict for any other reason is
        transient (raised: the message is redelivered and the state checked again)."""
        try:
            self.records.save(record)
            return None
        except ConcurrencyConflict:
            current = self.records.get(record.client_id, record.file_id)
            if current is not None and current.state in (FileState.COMPENSATING, FileState.REJECTED):
                log.warning("file %s was taken by compensation while %s; stopping", record.file_id,
                            record.state.value)
                return current
            raise

    @contextmanager
    def _open_work(self, blob: WorkBlob, file_id: str) -> Iterator[BinaryIO]:
        if blob.container != WORK_CONTAINER or not blob.name.startswith(f"{file_id}/"):
            raise StepFailed(f"work blob {blob.container}/{blob.name} is not a work file of {file_id}",
                             AppReason.MALFORMED_MESSAGE)
        try:
            source = self.blobs.open_read(blob.container, blob.name)
        except BlobNotFound:
            raise StepFailed(f"work blob {blob.container}/{blob.name} is missing",
                             AppReason.WORK_FILE_MISSING) from None
        verified = VerifiedReader(source, blob.sha256, blob.size, f"work blob {blob.name}")
        with source:
            reader = io.BufferedReader(verified, 1 << 16)
            yield reader
            while reader.read(1 << 20):  # to the end, so the hash check covers every byte
                pass
            verified.verify()

    def _put_work(self, file_id: str, name: str, content: IO[bytes]) -> WorkBlob:
        content.seek(0)
        with self._work_writer(file_id, name) as out:
            while chunk := content.read(1 << 20):
                out.write(chunk)
            return out.commit()

    @contextmanager
    def _work_writer(self, file_id: str, name: str) -> Iterator[WorkWriter]:
        blob_name = f"{file_id}/{name}"
        with self.blobs.open_write(WORK_CONTAINER, blob_name, content_type="application/x-ndjson") as out:
            yield WorkWriter(out, file_id, blob_name)

    def _quarantine(self, record: PaymentFile, reason_code: str, keep_upload: bool = False) -> str | None:
        """Move (or, with ``keep_upload``, copy) the upload, only the version processed, to
        ``payment-files-rejected/{clientId}/{fileId}/{fileName}``.

        The file id names one blob version, so a later upload under the same name that is
        rejected too is kept beside this one instead of overwriting its evidence; a repeat of
        this quarantine (a retried step) lands on the same name with the same content.
        """
        quarantine = quarantine_name(record)
        transfer = self.blobs.copy if keep_upload else self.blobs.move
        moved = transfer(INPUT_CONTAINER, record.input_name, REJECTED_CONTAINER, quarantine,
                         etag=record.source_etag or None,
                         metadata={"fileId": record.file_id, "reasonCode": reason_code})
        there = self.blobs.info(REJECTED_CONTAINER, quarantine)
        if moved or (there is not None and there.metadata.get("fileId") == record.file_id):
            return f"{REJECTED_CONTAINER}/{quarantine}"
        log.warning("file %s: upload %s was overwritten or deleted before it could be quarantined",
                    record.file_id, record.input_name)
        return None

    def _write_report(self, record: PaymentFile, original: OriginalMessage, group_status: str,
                      reasons: list[Finding], *, accepted: int, accepted_sum: Decimal, rejected: int,
                      rejected_sum: Decimal, rejections: Iterable[Rejection]) -> str:
        name = f"{record.client_id}/{record.file_id}.xml"
        with spool(self.options.spool_dir) as out:
            write_pain002(out, msg_id=f"STS-{record.file_id}", created=self.clock.now(), original=original,
                          group_status=group_status, group_reasons=reasons, accepted=accepted,
                          accepted_sum=accepted_sum, rejected=rejected, rejected_sum=rejected_sum,
                          rejections=rejections)
            out.seek(0)
            self.blobs.write(REPORTS_CONTAINER, name, out, content_type=XML,
                             metadata={"fileId": record.file_id, "groupStatus": group_status})
        return f"{REPORTS_CONTAINER}/{name}"

    def _write_error_report(self, record: PaymentFile, rejections: Iterable[Rejection]) -> str:
        """Rejected transactions as a spreadsheet-safe CSV (formula cells escaped)."""
        name = f"{record.client_id}/{record.file_id}.errors.csv"
        with spool(self.options.spool_dir) as out:
            write_error_report(out, rejections)
            out.seek(0)
            self.blobs.write(REPORTS_CONTAINER, name, out, content_type=CSV, metadata={"fileId": record.file_id})
        return f"{REPORTS_CONTAINER}/{name}"

    def _send(self, destination: Any, payload: Contract, file_id: str, cause: Cause) -> None:
        self.publisher.send([Outgoing(destination, payload, message_id(payload.TYPE, file_id), file_id)], cause)

    def retry_later(self, message: PaymentFileValidated | PaymentFileAdapted, cause: Cause) -> datetime:
        """Schedule the next attempt of a step's message; when it is due. Two runs of the same
        attempt schedule the same message id, so the queue keeps one."""
        attempt = message.attempt + 1
        at = self.clock.now() + retry_delay(message.attempt - 1, self.options.retry_base, self.options.retry_cap)
        _, queue = HANDOFFS[message.TYPE]
        retry = message.model_copy(update={"attempt": attempt})
        file_id = message.file.file_id
        self.publisher.send([Outgoing(queue, retry, message_id(message.TYPE, file_id, f"attempt-{attempt}"), file_id,
                                      scheduled_at=at)], cause)
        return at

    def settled(self, step: Step, summary: FileSummary) -> bool:
        """True if nothing is left for a message of ``step`` to do: another run completed and
        announced the file (its work files are removed here, as that run would have), or
        compensation took it (its own command finishes it). A file merely further along, its
        hand-off or announcement perhaps not sent, is not settled; nor is one whose record
        cannot be read now (the retry looks again)."""
        try:
            record = self.records.get(summary.client_id, summary.file_id)
            if record is None:
                return False
            if record.state in (FileState.COMPENSATING, FileState.REJECTED):
                return True
            if record.state is FileState.COMPLETED and record.notified:
                self.blobs.delete_prefix(WORK_CONTAINER, f"{summary.file_id}/")
                return True
        except Exception as exc:  # noqa: BLE001 - unknown is "not settled"
            log.warning("%s: whether file %s is settled cannot be told now: %r", step.value, summary.file_id, exc)
        return False

    def _resend(self, record: PaymentFile, cause: Cause) -> None:
        if not record.handoff:
            return
        contract, queue = HANDOFFS[str(record.handoff.get("type"))]
        self._send(queue, contract.model_validate(record.handoff["data"]), record.file_id, cause)

    def _announce(self, record: PaymentFile, cause: Cause,
                  created: tuple[FileSummary, int, Decimal, int] | None = None) -> None:
        """Tell the world the file's final state, once: dead-letter copy (validator rejections)
        and the Event Grid event, then ``notified`` on the record."""
        subject = event_subject(record.client_id, record.file_id)
        if record.state is FileState.COMPLETED:
            summary, nb, ctrl, blocks = created or created_from_record(record)
            data = created_event_data(summary, record.locations, nb, ctrl, blocks)
            event = OutgoingEvent(f"{PAYMENT_FILE_CREATED}:{record.file_id}", PAYMENT_FILE_CREATED, subject, data,
                                  record.file_id)
        else:
            data = rejected_event_data(file_id=record.file_id, client_id=record.client_id,
                                       file_name=record.file_name, step=record.failed_step, reasons=record.reasons,
                                       transaction_reasons=record.transaction_reasons, locations=record.locations,
                                       rejected_at=record.updated_at)
            if record.failed_step == Step.VALIDATOR.value:
                self._dead_letter_rejection(record, data)
            event = OutgoingEvent(f"{PAYMENT_FILE_REJECTED}:{record.file_id}", PAYMENT_FILE_REJECTED, subject, data,
                                  record.file_id)
        self.events.publish([event], cause)
        record.announced(self.clock.now())
        self._save_quietly(record)

    def _save_quietly(self, record: PaymentFile) -> None:
        """Save a change that another run of the same step may have saved first (same content)."""
        try:
            self.records.save(record)
        except ConcurrencyConflict:
            log.info("file %s: the change was already recorded by another run", record.file_id)

    def _dead_letter_rejection(self, record: PaymentFile, data: dict[str, Any]) -> None:
        """The app-level dead-letter route for a file FileValidator rejected: the claim check (never
        the file) with the first reason's ISO code and description."""
        code, description = record.reasons[0] if record.reasons else ("NARR", "rejected")
        incoming = Incoming(
            body=json.dumps(data).encode(), message_id=message_id(PAYMENT_FILE_REJECTED, record.file_id),
            source=INPUT_CONTAINER, subject=PAYMENT_FILE_REJECTED, correlation_id=record.file_id,
            content_type="application/json",
            application_properties={"fileId": record.file_id, "clientId": record.client_id,
                                    "reasonCodes": ",".join(dict.fromkeys(c for c, _ in record.reasons)),
                                    "transactionReasonCodes": ",".join(sorted(record.transaction_reasons))})
        self.publisher.dead_letter(DeadLetter(incoming, code, description))


    def _daily_release(self, client_id: str, released: Mapping[DayKey, Decimal]) -> list[DayTotal]:
        """The client's day totals as stored now, with ``released`` taken out."""
        if not released:
            return []
        currencies = sorted({currency for currency, _ in released})
        stored = self.records.day_totals(client_id, currencies, min(day for _, day in released))
        return DailyUsage(stored).release(released)


    def _rejection_report(self, record: PaymentFile) -> str:
        """pain.002 ``RJCT`` for a compensated file, from its record (the work files are gone)."""
        original = OriginalMessage(record.msg_id or record.file_id, record.format or "UNKNOWN",
                                   record.original_nb_of_txs, Decimal(record.original_ctrl_sum))
        return self._write_report(
            record, original, RJCT, record.reason_findings, accepted=record.accepted,
            accepted_sum=Decimal(record.accepted_sum), rejected=record.rejected,
            rejected_sum=Decimal(record.rejected_sum), rejections=())


    def request_compensation(self, file_id: str, client_id: str | None, step: Step, reason: str, description: str,
                             cause: Cause) -> None:
        command = CompensatePaymentFile(file_id=file_id, client_id=client_id, failed_step=step.value, reason=reason,
                                        description=description[:2000])
        self._send(COMPENSATION_QUEUE, command, file_id, cause)



HANDOFFS: dict[str, tuple[type[Contract], Any]] = {
    PaymentFileValidated.TYPE: (PaymentFileValidated, VALIDATED_QUEUE),
    PaymentFileAdapted.TYPE: (PaymentFileAdapted, ADAPTED_QUEUE),
}



def handoff(message: Contract) -> dict[str, Any]:
    return {"type": message.TYPE, "data": message.to_data()}


def reason_counts(rejections: Iterable[Rejection]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for rejection in rejections:
        for code in dict.fromkeys(f.code.value for f in rejection.findings):
            counts[code] += 1
    return dict(counts)


def created_from_record(record: PaymentFile) -> tuple[FileSummary, int, Decimal, int]:
    """What was created, from the hand-off kept on a completed record until it is announced."""
    adapted = PaymentFileAdapted.model_validate((record.handoff or {}).get("data", {}))
    return adapted.file, adapted.nb_of_txs, adapted.ctrl_sum, adapted.blocks



def quarantine_name(record: PaymentFile) -> str:
    """Name of a rejected upload inside ``payment-files-rejected``: ``{clientId}/{fileId}/{fileName}``
    (the file id keeps two rejected versions of one upload name apart)."""
    _, _, file_name = record.input_name.partition("/")
    return f"{record.client_id}/{record.file_id}/{file_name or record.input_name}"
