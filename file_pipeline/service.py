"""Use cases of the payment-file pipeline: FileValidator -> FileAdaptor -> FileCreator, the
compensation that undoes them, and the status query. No ``azure.*`` here: storage comes in
through :mod:`file_pipeline.ports`, messages through :class:`choreography.messaging.Publisher`,
events through :class:`choreography.messaging.EventPublisher`.

Idempotency, step by step (what a repeat of the same input does):

* **FileValidator** (blob trigger): the file id is derived from the blob version (name + ETag).
  A repeat finds the record: ``Validated`` -> the hand-off is sent again (same message id, the
  queue drops it); ``Rejected``/``Completed`` -> only an announcement that did not finish is
  finished; anything later -> nothing. ``Validating`` (a crash mid-way) -> validated again.
* **FileAdaptor** / **FileCreator** (Service Bus): the state is checked before acting. The
  step's state change is saved (with the record's ETag) *before* the hand-off is sent, and a
  repeat in the saved state only re-sends the hand-off. FileCreator in ``Completed`` does
  nothing (no second output); it only finishes an unfinished announcement.
* Duplicate files (``DU01``): the content hash and the client's MsgId are claimed in the same
  atomic Table batch that records the file ``Validated``, so two identical uploads racing each
  other cannot both pass.
* Daily limits (:mod:`file_pipeline.domain.daily`): the client's day totals are read before the
  file is validated, and the file's own amounts are added to them in that same batch, each total
  guarded by its ETag. If another file of the client moved a total meanwhile, the totals are
  read again: when the file's verdict cannot change (nothing was refused for a daily limit and
  its amounts still fit), the batch is written again on them; otherwise the conflict is raised
  and the trigger's retry validates the file again on the fresh totals. Compensation subtracts
  the amounts in the batch that clears them from the record.

Failures, classified once (see :class:`StepConsumer`):

* A file the rules refuse is *rejected* by FileValidator: pain.002 ``RJCT`` with every reason,
  the upload moved to ``payment-files-rejected/{clientId}/{fileId}/{fileName}`` (one name per
  blob version, so a second rejection of the same upload name keeps the first one's evidence),
  the record ``Rejected``, a copy of the rejection on the app's dead-letter queue (reason = ISO
  code) and ``PaymentFileRejected``.
* A later step that fails for good (:class:`~choreography.errors.PermanentFailure`, a corrupt
  work file, an output failing the XSD, or an error still there on the last of its attempts)
  asks for compensation (``CompensatePaymentFile``) and its message is dead-lettered with the
  reason. :meth:`PaymentFilePipeline.compensate` then undoes: duplicate claims released, any
  output deleted, work files deleted, the upload quarantined, pain.002 ``RJCT``, record
  ``Rejected``, ``PaymentFileRejected``.
* Anything else in FileAdaptor or FileCreator is transient, and is retried *later*: a copy of
  the message, its ``attempt`` counted, is scheduled after a growing delay and the message is
  completed (:class:`StepConsumer`). The broker's own redelivery is immediate, so five failures
  in a row could otherwise use up ``MaxDeliveryCount`` within a second of an outage; and the
  broker also counts the deliveries a crash or a lock that ran out used, so a step that was
  merely slow could be judged failed for good. An error in a run that another run of the same
  message finished meanwhile (a lock that ran out, then a redelivery) is no failure at all.
  FileValidator's transient errors are raised: the blob trigger retries, then poisons.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import IO, Any, BinaryIO
from urllib.parse import quote

from choreography.clock import Clock
from choreography.contracts import Contract, ContractRegistry
from choreography.errors import PermanentFailure
from choreography.handling import unexpected
from choreography.idempotency import message_id
from choreography.messaging import (
    Cause,
    DeadLetter,
    EventPublisher,
    Incoming,
    Outgoing,
    OutgoingEvent,
    Publisher,
    Received,
)
from choreography.reason_codes import ReasonCode as AppReason
from choreography.retry import retry_delay
from file_pipeline.domain.daily import DailyUsage, DayKey, DayTotal, amounts_by_key, amounts_for_record
from file_pipeline.domain.files import (
    CLIENT_ID_RE,
    FILE_ID_RE,
    FileState,
    PaymentFile,
    Step,
    duplicate_keys,
    file_id_for,
    parse_upload_name,
)
from file_pipeline.domain.model import FileRejected, Finding
from file_pipeline.domain.names import UnsafeName, check_blob_name
from file_pipeline.domain.pipeline import Validated, original_message, validate_source
from file_pipeline.domain.reason_codes import ReasonCode
from file_pipeline.domain.reference import REJECT_FILE, ReferenceData
from file_pipeline.domain.validator import RJCT, Rejection, RejectionLog, ValidationResult
from file_pipeline.formats.pain002_writer import OriginalMessage, write_pain002
from file_pipeline.formats.safe_csv import write_error_report
from file_pipeline.formats.xsd import ValidatingWriter
from file_pipeline.messages import (
    ADAPTED_QUEUE,
    COMPENSATION_QUEUE,
    PAYMENT_FILE_CREATED,
    PAYMENT_FILE_REJECTED,
    VALIDATED_QUEUE,
    CompensatePaymentFile,
    FileSummary,
    PaymentFileAdapted,
    PaymentFileValidated,
    WorkBlob,
    created_event_data,
    event_subject,
    rejected_event_data,
)
from file_pipeline.ports import (
    INPUT_CONTAINER,
    OUTPUT_CONTAINER,
    REJECTED_CONTAINER,
    REPORTS_CONTAINER,
    WORK_CONTAINER,
    BlobNotFound,
    BlobStore,
    BlobVersionGone,
    BlobWriter,
    ConcurrencyConflict,
    DailyTotalsMoved,
    DuplicateClaimed,
    FileRecords,
    ReferenceSource,
    TriggerBlob,
)
from file_pipeline.workfiles import (
    InstructionsBuilder,
    MeteredReader,
    SourceReadError,
    Tee,
    ValidatedWriter,
    VerifiedReader,
    WorkFileCorrupt,
    read_rejections,
    read_validated,
    render_pain001,
    spool,
    write_rejections,
)

log = logging.getLogger(__name__)

XML = "application/xml"
CSV = "text/csv"
#: Writes of one step on day totals that keep moving before it gives up (raises: transient).
DAILY_TOTALS_ATTEMPTS = 5


class FailureReason(StrEnum):
    """Why a step of the pipeline failed for good (``DeadLetterReason`` of its message and
    ``reason`` of the compensation). File *content* problems use the ISO codes instead."""

    WORK_FILE_MISSING = "WorkFileMissing"
    WORK_FILE_CORRUPT = "WorkFileCorrupt"
    OUTPUT_FAILED_SCHEMA = "OutputFailedSchemaValidation"
    FILE_RECORD_MISSING = "FileRecordMissing"
    UNKNOWN_CLIENT = "UnknownClient"
    MALFORMED_MESSAGE = AppReason.MALFORMED_MESSAGE.value
    RETRIES_EXHAUSTED = AppReason.RETRIES_EXHAUSTED.value


class StepFailed(PermanentFailure):
    """A step of the pipeline cannot succeed for this file, ever: compensate."""

    def __init__(self, description: str, reason: FailureReason) -> None:
        super().__init__(description)
        self.reason = reason  # type: ignore[assignment] - a StrEnum like the app's ReasonCode


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


@dataclass(frozen=True)
class Upload:
    """A blob-trigger invocation, free of the trigger's type.

    ``content`` is the trigger's own copy of the blob (an ``InputStream`` trigger); it is used
    only to quarantine a blob whose name must not be used to address storage. ``blob`` is the
    blob as an SDK-type trigger hands it over (nothing downloaded): without an ``etag`` the
    version is read from it once, then only that version is read, as a stream. A blob whose
    name is unsafe is never read through it (its client addresses storage by that name), so
    such an upload is rejected without a quarantine copy and stays where it was uploaded.
    Without ``blob``, the version is read through :class:`~file_pipeline.ports.BlobStore`.
    """

    container: str
    name: str
    length: int | None = None
    etag: str | None = None
    content: BinaryIO | None = None
    blob: TriggerBlob | None = None


class Outcome(StrEnum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    ALREADY_PROCESSED = "AlreadyProcessed"
    GONE = "Gone"  # the blob version was deleted or overwritten before it could be read


def _simple_result(client_id: str, finding: Finding, spool_dir: str | None) -> ValidationResult:
    return ValidationResult(client_id, REJECT_FILE, file_findings=[finding], rejections=RejectionLog(spool_dir))


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


class PaymentFilePipeline:
    """The application service: every use case of the pipeline, on ports given to it once."""

    def __init__(self, *, blobs: BlobStore, records: FileRecords, reference: ReferenceSource, publisher: Publisher,
                 events: EventPublisher, clock: Clock, options: Options, rules_clock: Clock | None = None) -> None:
        """``clock`` stamps records and reports; ``rules_clock`` (default: ``clock``) is the instant
        execution dates and cut-offs are judged at, and the creation time of the pain.001."""
        self.blobs = blobs
        self.records = records
        self.reference = CachedReference(reference)
        self.publisher = publisher
        self.events = events
        self.clock = clock
        self.rules_clock = rules_clock or clock
        self.options = options
        self.adaptor = StepConsumer(self, Step.ADAPTOR, PaymentFileValidated, self.adapt)
        self.creator = StepConsumer(self, Step.CREATOR, PaymentFileAdapted, self.create)
        self.compensation = CompensationConsumer(self)

    # ================================================================== FileValidator
    def validate(self, upload: Upload) -> Outcome:
        """Validate one uploaded blob version; hand it off, or reject it with every reason."""
        name = parse_upload_name(upload.name)
        etag, length = upload.etag or "", upload.length
        if name.safe and not etag:
            info = upload.blob.info() if upload.blob is not None else self.blobs.info(upload.container, upload.name)
            if info is None:
                log.warning("upload %s/%s is gone before it was validated", upload.container, upload.name)
                return Outcome.GONE
            etag, length = info.etag, info.size
        file_id = file_id_for(upload.container, upload.name, etag)
        cause = Cause(f"blob:{file_id}", None, file_id)
        record = self.records.get(name.client_id, file_id)
        if record is not None and record.state is not FileState.VALIDATING:
            return self._validator_repeat(record, cause)
        now = self.clock.now()
        if record is None:
            location = f"{upload.container}/{upload.name}" if name.safe else ""
            record = PaymentFile.received(file_id, name, upload.name, etag, length, now, location)
        if not name.safe:
            self._add(record)
            return self._reject_unsafe_name(record, upload, name.problem, cause, now)
        if length is not None and length > self.options.max_bytes:
            self._add(record)
            finding = Finding(ReasonCode.NARR, f"the file is {length} bytes, larger than the limit of "
                                               f"{self.options.max_bytes} bytes; it was not read")
            return self._reject(record, None, _simple_result(name.client_id, finding, self.options.spool_dir),
                                cause, now)
        try:
            if upload.blob is not None:
                source = upload.blob.open_read(etag)
            else:
                source = self.blobs.open_read(upload.container, upload.name, etag)
        except (BlobNotFound, BlobVersionGone) as exc:
            log.warning("upload %s/%s version %s is gone before it was validated: %r", upload.container,
                        upload.name, etag, exc)
            if record.version is None:
                return Outcome.GONE  # nothing was recorded: there is nothing to close
            return self._reject_gone(record, cause, now)
        with source:
            self._add(record)
            return self._validate(record, source, cause, now)

    def _reject_gone(self, record: PaymentFile, cause: Cause, now: datetime) -> Outcome:
        """The version being validated was overwritten or deleted: close its record now (a retry
        could not: an SDK-type trigger reads the blob's *current* version, a new file id)."""
        finding = Finding(ReasonCode.NARR, "the upload was deleted or overwritten before its validation "
                                           "could finish; a newer version is processed on its own")
        return self._reject(record, None, _simple_result(record.client_id, finding, self.options.spool_dir),
                            cause, now, move_input=False)

    def _add(self, record: PaymentFile) -> None:
        if record.version is None:
            self.records.add(record)

    def _validate(self, record: PaymentFile, source: BinaryIO, cause: Cause, now: datetime) -> Outcome:
        ref = self.reference.get()
        rules_now = self.rules_clock.now()
        usage = self._daily_usage(ref, record.client_id, rules_now)  # before validating: see the module doc
        spool_dir = self.options.spool_dir
        metered = MeteredReader(source, self.options.max_bytes)
        stream = io.BufferedReader(metered, 1 << 16)
        with spool(spool_dir) as tx_spool:
            writer = ValidatedWriter(tx_spool, record.file_id)
            validated: Validated | None = None
            try:
                validated = validate_source(stream, ref, record.client_id, rules_now, file_id=record.file_id,
                                            accept=writer.add, accept_run=writer.add_run, spool_dir=spool_dir,
                                            daily_used=usage.amounts)
                if validated.validation.output_allowed:
                    metered.drain()  # the content hash covers the whole file
            except FileRejected:
                pass  # only the metered reader raises it here (size limit), handled below
            except SourceReadError:
                if not isinstance(metered.source_error, (BlobNotFound, BlobVersionGone)):
                    raise
            except Exception as exc:  # noqa: BLE001 - content no reader anticipated: reject, never crash-loop
                gone = isinstance(metered.source_error, (BlobNotFound, BlobVersionGone))  # handled below
                if not gone and (metered.source_error is not None or isinstance(exc, OSError)):
                    raise
                if not gone:
                    log.exception("file %s could not be parsed", record.file_id)
                    validated = Validated(None, None, _simple_result(
                        record.client_id, Finding(ReasonCode.FF01, f"the file could not be processed "
                                                                   f"({type(exc).__name__}); it is not a payment "
                                                                   f"file this bank reads"), spool_dir))
            if isinstance(metered.source_error, (BlobNotFound, BlobVersionGone)):
                log.warning("file %s: the upload changed while it was read: %r", record.file_id, metered.source_error)
                if validated is not None and validated.validation.rejections is not None:
                    validated.validation.rejections.close()
                return self._reject_gone(record, cause, now)
            if metered.source_error is not None:
                raise SourceReadError("reading the upload failed") from metered.source_error
            if metered.exceeded or validated is None:
                finding = Finding(ReasonCode.NARR, f"the file is larger than the limit of {self.options.max_bytes} "
                                                   "bytes; it was not processed")
                validated = Validated(None, None, _simple_result(record.client_id, finding, spool_dir))
            result = validated.validation
            record.size = metered.count
            record.sha256 = metered.hexdigest() if result.output_allowed else ""  # drained: the whole file
            try:
                if result.output_allowed:
                    outcome = self._claim_and_accept(record, validated, tx_spool, cause, now, rules_now, usage)
                    if outcome is not None:
                        return outcome
                return self._reject(record, validated, result, cause, now)
            finally:
                if result.rejections is not None:
                    result.rejections.close()

    def _daily_usage(self, ref: ReferenceData, client_id: str, rules_now: datetime) -> DailyUsage:
        """What the client's live files use of its daily limits, on the days a transaction
        validated at ``rules_now`` may still take: none before yesterday (UTC), since an earlier
        date is in the past in every time zone (CH04)."""
        client = ref.clients.get(client_id)
        if client is None or not client.daily_limits:
            return DailyUsage()
        since = rules_now.astimezone(UTC).date() - timedelta(days=1)
        return DailyUsage(self.records.day_totals(client_id, sorted(client.daily_limits), since))

    def _daily_release(self, client_id: str, released: Mapping[DayKey, Decimal]) -> list[DayTotal]:
        """The client's day totals as stored now, with ``released`` taken out."""
        if not released:
            return []
        currencies = sorted({currency for currency, _ in released})
        stored = self.records.day_totals(client_id, currencies, min(day for _, day in released))
        return DailyUsage(stored).release(released)

    def _claim_and_accept(self, record: PaymentFile, validated: Validated, tx_spool: IO[bytes], cause: Cause,
                          now: datetime, rules_now: datetime, usage: DailyUsage) -> Outcome | None:
        """Accept unless the file duplicates a live one (then: DU01 added, None returned)."""
        result = validated.validation
        header = result.header
        assert header is not None and validated.detection is not None
        keys = duplicate_keys(record.sha256, validated.detection.format, header.msg_id)
        owners = self.records.claim_owners(record.client_id, keys)
        for key in keys:
            owner = owners.get(key.key)
            if owner is not None and owner[0] != record.file_id:
                result.file_findings.append(key.finding(*owner))
        if not result.output_allowed:
            return None
        tx_blob = self._put_work(record.file_id, "validated.jsonl", tx_spool)
        rejections_blob = None
        if result.rejected:
            with spool(self.options.spool_dir) as rej:
                write_rejections(rej, record.file_id, result.rejections or ())
                rejections_blob = self._put_work(record.file_id, "rejections.jsonl", rej)
        original = original_message(validated, record.file_id)
        summary = FileSummary(
            file_id=record.file_id, client_id=record.client_id, file_name=record.file_name,
            format=validated.format_name, msg_id=original.msg_id, original_nb_of_txs=original.nb_of_txs,
            original_ctrl_sum=original.ctrl_sum, validated_at=rules_now, group_status=result.group_status,
            accepted=result.accepted, accepted_sum=result.accepted_sum, rejected=result.rejected,
            rejected_sum=result.rejected_sum)
        message = PaymentFileValidated(file=summary, transactions=tx_blob, rejections=rejections_blob)
        reserved = result.daily.reserved if result.daily is not None else {}
        pending = copy.deepcopy(record)  # the record stays Validating if the claim is lost
        pending.validated(
            now, validated_at=rules_now, file_format=validated.format_name, sha256=record.sha256, size=record.size or 0,
            msg_id=original.msg_id, original_nb_of_txs=original.nb_of_txs, original_ctrl_sum=original.ctrl_sum,
            group_status=result.group_status, transactions=result.total, accepted=result.accepted,
            rejected=result.rejected, accepted_sum=result.accepted_sum, rejected_sum=result.rejected_sum,
            transaction_reasons=_reason_counts(result.rejections or ()), claims=[k.key for k in keys],
            handoff=_handoff(message), daily_amounts=amounts_for_record(reserved))
        for attempt in range(1, DAILY_TOTALS_ATTEMPTS + 1):
            try:
                self.records.save(pending, claim=[k for k in keys if k.key not in owners],
                                  totals=usage.reserve(reserved))
                break
            except DuplicateClaimed as lost:  # an identical file was accepted in between: DU01
                self.blobs.delete_prefix(WORK_CONTAINER, f"{record.file_id}/")
                owner = self.records.get(record.client_id, lost.owner_file_id)
                key = next(k for k in keys if k.key == lost.key)
                result.file_findings.append(key.finding(lost.owner_file_id, owner.file_name if owner else "?"))
                return None
            except DailyTotalsMoved:
                ref = self.reference.get()
                usage = self._daily_usage(ref, record.client_id, rules_now)
                if result.daily is None or not result.daily.holds_under(usage.amounts):
                    log.info("file %s: the daily totals of %s moved and may change its verdict; "
                             "it is validated again", record.file_id, record.client_id)
                    self.blobs.delete_prefix(WORK_CONTAINER, f"{record.file_id}/")  # the retry may reject it
                    raise
                if attempt == DAILY_TOTALS_ATTEMPTS:
                    raise
                log.info("file %s: the daily totals of %s moved; its verdict stands, written again",
                         record.file_id, record.client_id)
        self._send(VALIDATED_QUEUE, message, record.file_id, cause)
        log.info("file %s (%s/%s) validated: %s, %d accepted, %d rejected", record.file_id, record.client_id,
                 record.file_name, result.group_status, result.accepted, result.rejected)
        return Outcome.ACCEPTED

    def _validator_repeat(self, record: PaymentFile, cause: Cause) -> Outcome:
        if record.state is FileState.VALIDATED:
            self._resend(record, cause)
        elif record.state is FileState.REJECTED and record.failed_step == Step.VALIDATOR.value:
            self._finish_rejection(record, cause)
        elif record.state.final and not record.notified:
            self._announce(record, cause)
        log.info("file %s was already validated (%s); nothing done again", record.file_id, record.state.value)
        return Outcome.ALREADY_PROCESSED

    def _reject_unsafe_name(self, record: PaymentFile, upload: Upload, problem: str, cause: Cause,
                            now: datetime) -> Outcome:
        """Never address storage with the name: keep the trigger's copy under a server-side name."""
        locations: dict[str, str] = {}
        if upload.content is not None and (upload.length or 0) <= self.options.max_bytes:
            quarantine = f"{record.client_id}/{record.file_id}.unsafe-name"
            metered = MeteredReader(upload.content, self.options.max_bytes)
            try:
                self.blobs.write(REJECTED_CONTAINER, quarantine, io.BufferedReader(metered), metadata={
                    "fileId": record.file_id, "originalName": quote(upload.name, safe="/")[:2048]})
                locations["rejected"] = f"{REJECTED_CONTAINER}/{quarantine}"
            except FileRejected:
                log.warning("upload with unsafe name %r is larger than the limit; not kept", record.file_name)
        finding = Finding(ReasonCode.NARR, f"the blob name {record.file_name!r} is not accepted: {problem}; "
                                           "the file was not processed")
        result = _simple_result(record.client_id, finding, self.options.spool_dir)
        return self._reject(record, None, result, cause, now, move_input=False, locations=locations)

    def _reject(self, record: PaymentFile, validated: Validated | None, result: ValidationResult, cause: Cause,
                now: datetime, *, move_input: bool = True, locations: dict[str, str] | None = None) -> Outcome:
        """FileValidator's rejection: report, quarantine, record, dead-letter, announce."""
        locations = dict(locations or {})
        original = (original_message(validated, record.file_id) if validated is not None
                    else OriginalMessage(record.file_id, "UNKNOWN", 0, Decimal(0)))
        reasons = result.group_reasons()
        locations["statusReport"] = self._write_report(
            record, original, RJCT, reasons, accepted=result.accepted, accepted_sum=result.accepted_sum,
            rejected=result.rejected, rejected_sum=result.rejected_sum, rejections=result.rejections or ())
        if result.rejected:
            locations["errorReport"] = self._write_error_report(record, result.rejections or ())
        if move_input and record.input_name:
            # A copy now, so the evidence is there before anyone is told of the rejection; the
            # upload leaves payment-files-in last (see _finish_rejection).
            kept = self._quarantine(record, reasons[0].code.value if reasons else "NARR", keep_upload=True)
            if kept:
                locations["rejected"] = kept
        details: dict[str, Any] = {
            "transactions": result.total, "accepted": result.accepted, "rejected": result.rejected,
            "accepted_sum": format(result.accepted_sum, "f"), "rejected_sum": format(result.rejected_sum, "f"),
            "transaction_reasons": _reason_counts(result.rejections or ()),
        }
        if validated is not None:
            details.update(format=validated.format_name, msg_id=original.msg_id,
                           original_nb_of_txs=original.nb_of_txs, original_ctrl_sum=format(original.ctrl_sum, "f"))
        released = record.rejected_by(now, Step.VALIDATOR, reasons, locations, details=details)
        self.records.save(record, release=released)
        log.info("file %s (%s/%s) rejected: %s", record.file_id, record.client_id, record.file_name,
                 "; ".join(f"{c}: {d}" for c, d in record.reasons))
        self._finish_rejection(record, cause)
        return Outcome.REJECTED

    def _finish_rejection(self, record: PaymentFile, cause: Cause) -> None:
        """Announce a rejected upload, then take it out of ``payment-files-in``, in that order.

        The upload is what triggers FileValidator again after a crash (no blob receipt is written
        for a run that did not end), so it is moved last: until then a re-run finds the record
        ``Rejected`` and finishes from where the crash left it (``_validator_repeat``)."""
        if not record.notified:
            self._announce(record, cause)
        self.blobs.delete_prefix(WORK_CONTAINER, f"{record.file_id}/")  # an interrupted earlier try's
        if record.input_name and record.locations.get("rejected") == f"{REJECTED_CONTAINER}/{quarantine_name(record)}":
            self._quarantine(record, record.reasons[0][0] if record.reasons else "NARR")

    # ================================================================== FileAdaptor
    def adapt(self, message: PaymentFileValidated, cause: Cause) -> None:
        """Validated transactions -> canonical instructions grouped by debtor account, currency
        and execution date (a work blob) -> ``PaymentFileAdapted``."""
        summary = message.file
        record = self._record(summary.client_id, summary.file_id)
        if record.state is FileState.ADAPTED:
            self._resend(record, cause)  # a redelivery: hand off again, redo nothing
            return
        if record.state is not FileState.VALIDATED:
            log.info("FileAdaptor: file %s is %s; message %s ignored", record.file_id, record.state.value,
                     cause.message_id)
            return
        ref = self.reference.get()
        client = ref.clients.get(summary.client_id)
        if client is None:
            raise StepFailed(f"client {summary.client_id} is no longer in the reference table",
                             FailureReason.UNKNOWN_CLIENT)
        with self._open_work(message.transactions, summary.file_id) as source, \
                InstructionsBuilder(ref, client, file_id=summary.file_id, created=summary.validated_at,
                                    spool_dir=self.options.spool_dir) as builder, \
                self._work_writer(summary.file_id, "instructions.jsonl") as out:
            for tx in read_validated(source, summary.file_id):
                builder.add(tx)
            built = builder.write_to(out)  # type: ignore[arg-type]
            instructions = out.commit()
        adapted = PaymentFileAdapted(file=summary, instructions=instructions, rejections=message.rejections,
                                     nb_of_txs=built.nb_of_txs, ctrl_sum=built.ctrl_sum, blocks=built.blocks)
        record.adapted(self.clock.now(), _handoff(adapted))
        if self._save_step(record) is not None:
            self.blobs.delete(WORK_CONTAINER, instructions.name)  # compensation already cleaned up
            return
        self._send(ADAPTED_QUEUE, adapted, summary.file_id, cause)

    # ================================================================== FileCreator
    def create(self, message: PaymentFileAdapted, cause: Cause) -> None:
        """Canonical instructions -> XSD-valid pain.001.001.09 in ``payment-files-out`` (all or
        nothing), pain.002 in ``payment-status-reports``, record ``Completed``, ``PaymentFileCreated``."""
        summary = message.file
        file_id = summary.file_id
        record = self._record(summary.client_id, file_id)
        if record.state is FileState.COMPLETED:
            if not record.notified:
                self._announce(record, cause, created=(summary, message.nb_of_txs, message.ctrl_sum, message.blocks))
            # A crash after the announcement left the work files: this redelivery is the only
            # thing that will ever come back for them.
            self.blobs.delete_prefix(WORK_CONTAINER, f"{file_id}/")
            log.info("FileCreator: file %s is already completed; no second output", file_id)
            return
        if record.state is not FileState.ADAPTED:
            log.info("FileCreator: file %s is %s; message %s ignored", file_id, record.state.value, cause.message_id)
            return
        output_name = f"{summary.client_id}/{file_id}.xml"
        with spool(self.options.spool_dir) as xml, \
                self.blobs.open_write(OUTPUT_CONTAINER, output_name, content_type=XML) as output:
            # The XSD check reads the document while it is rendered (a thread of libxml2's own),
            # and the document is sent to storage meanwhile (blocks nobody sees before the commit);
            # the verdict on the whole document is taken before anything is released. The spool
            # is what the check reads again where libxml2 cannot give it.
            with ValidatingWriter(Tee(xml, output), "pain.001.001.09") as checked:
                with self._open_work(message.instructions, file_id) as source:
                    written = render_pain001(source, checked, file_id)  # type: ignore[arg-type]
                try:
                    checked.verdict()
                except FileRejected as exc:
                    raise StepFailed(f"the pain.001.001.09 built for {file_id} fails the XSD: {exc.description}",
                                     FailureReason.OUTPUT_FAILED_SCHEMA) from None
            locations = {"statusReport": self._accepted_report(record, message)}
            if summary.rejected and message.rejections is not None:
                with self._open_work(message.rejections, file_id) as source:
                    locations["errorReport"] = self._write_error_report(record, read_rejections(source, file_id))
            # Last write before Completed: once committed, downstream systems may take the file.
            output.commit({"fileId": file_id, "msgId": written.msg_id, "nbOfTxs": str(written.nb_of_txs),
                           "ctrlSum": format(written.ctrl_sum, "f")})
        locations["output"] = f"{OUTPUT_CONTAINER}/{output_name}"
        record.completed(self.clock.now(), locations)
        taken = self._save_step(record)
        if taken is not None:  # compensation won the race: take the output back, keep its verdict
            self.blobs.delete(OUTPUT_CONTAINER, output_name)
            if taken.state is FileState.REJECTED:
                self._rejection_report(taken)
            return
        log.info("file %s completed: %d transactions in %d blocks -> %s", file_id, written.nb_of_txs,
                 written.blocks, locations["output"])
        self._announce(record, cause, created=(summary, written.nb_of_txs, written.ctrl_sum, written.blocks))
        self.blobs.delete_prefix(WORK_CONTAINER, f"{file_id}/")

    def _accepted_report(self, record: PaymentFile, message: PaymentFileAdapted) -> str:
        summary = message.file
        original = OriginalMessage(summary.msg_id, summary.format, summary.original_nb_of_txs,
                                   summary.original_ctrl_sum)
        if message.rejections is None:
            return self._write_report(record, original, summary.group_status, [], accepted=summary.accepted,
                                      accepted_sum=summary.accepted_sum, rejected=0, rejected_sum=Decimal(0),
                                      rejections=())
        with self._open_work(message.rejections, summary.file_id) as source:
            return self._write_report(record, original, summary.group_status, [], accepted=summary.accepted,
                                      accepted_sum=summary.accepted_sum, rejected=summary.rejected,
                                      rejected_sum=summary.rejected_sum,
                                      rejections=read_rejections(source, summary.file_id))

    # ================================================================== compensation
    def request_compensation(self, file_id: str, client_id: str | None, step: Step, reason: str, description: str,
                             cause: Cause) -> None:
        command = CompensatePaymentFile(file_id=file_id, client_id=client_id, failed_step=step.value, reason=reason,
                                        description=description[:2000])
        self._send(COMPENSATION_QUEUE, command, file_id, cause)

    def compensate(self, command: CompensatePaymentFile, cause: Cause) -> None:
        """Undo every step that succeeded for a file whose later step failed for good. Each undo is
        safe to repeat, so a redelivered command finishes whatever a crash interrupted."""
        record = (self.records.get(command.client_id, command.file_id) if command.client_id
                  else self.records.find(command.file_id))
        if record is None:
            log.warning("compensation: no record of file %s; nothing to undo", command.file_id)
            return
        if record.state is FileState.COMPLETED:
            log.error("compensation: file %s is already completed (its output may have been taken); "
                      "not undone: %s %s", record.file_id, command.reason, command.description)
            return
        if record.state is FileState.REJECTED:
            if not record.notified:
                self._announce(record, cause)
            return
        if record.state is FileState.VALIDATING:
            log.warning("compensation: file %s is still being validated; nothing to undo", record.file_id)
            return
        now = self.clock.now()
        step = Step(command.failed_step)
        if record.state is not FileState.COMPENSATING:
            finding = Finding(ReasonCode.NARR, f"{step.value} failed for good after the file was validated "
                                               f"({command.reason}: {command.description}); every completed step "
                                               "was undone and the file may be submitted again")
            self._start_compensating(record, now, step, [finding])
        output_name = f"{record.client_id}/{record.file_id}.xml"
        if self.blobs.delete(OUTPUT_CONTAINER, output_name):
            log.warning("compensation: deleted output %s/%s of file %s", OUTPUT_CONTAINER, output_name, record.file_id)
        self.blobs.delete_prefix(WORK_CONTAINER, f"{record.file_id}/")
        locations: dict[str, str] = {}
        if record.input_name:
            quarantined = self._quarantine(record, "NARR")
            if quarantined:
                locations["rejected"] = quarantined
        locations["statusReport"] = self._rejection_report(record)
        record.locations.pop("output", None)
        released = record.rejected_by(now, step, [], locations)
        self.records.save(record, release=released)
        log.warning("file %s compensated after %s failed: %s", record.file_id, step.value, command.description)
        self._announce(record, cause)

    def _start_compensating(self, record: PaymentFile, now: datetime, step: Step, reasons: list[Finding]) -> None:
        """Record ``Compensating`` with the DU01 claims and the daily amounts released in the same
        write, first of all, so a corrected resubmission is accepted. Day totals that other files
        move meanwhile are read again: taking amounts out is right whatever they hold."""
        released = record.compensating(now, step, reasons)
        daily = amounts_by_key(record.release_daily_amounts())
        for attempt in range(1, DAILY_TOTALS_ATTEMPTS + 1):
            try:
                self.records.save(record, release=released, totals=self._daily_release(record.client_id, daily))
                return
            except DailyTotalsMoved:
                if attempt == DAILY_TOTALS_ATTEMPTS:
                    raise

    def _rejection_report(self, record: PaymentFile) -> str:
        """pain.002 ``RJCT`` for a compensated file, from its record (the work files are gone)."""
        original = OriginalMessage(record.msg_id or record.file_id, record.format or "UNKNOWN",
                                   record.original_nb_of_txs, Decimal(record.original_ctrl_sum))
        return self._write_report(
            record, original, RJCT, record.reason_findings, accepted=record.accepted,
            accepted_sum=Decimal(record.accepted_sum), rejected=record.rejected,
            rejected_sum=Decimal(record.rejected_sum), rejections=())

    # ================================================================== status
    def status(self, client_id: str, file_name: str) -> tuple[int, dict[str, Any]]:
        """``GET /api/payment-files/{clientId}/{fileName}``: (HTTP status, JSON body)."""
        if not CLIENT_ID_RE.match(client_id or ""):
            return 404, _problem(404, "No such client", "no such client")
        try:
            check_blob_name(f"{client_id}/{file_name}")
        except UnsafeName as exc:
            return 400, _problem(400, "File name not accepted", f"file name not accepted: {exc}")
        record, previous = self.records.latest(client_id, file_name)
        if record is None:
            return 404, _problem(404, "No such file", f"no file {file_name!r} for client {client_id}")
        return 200, record.status_view(previous)

    # ================================================================== shared steps
    def _record(self, client_id: str, file_id: str) -> PaymentFile:
        record = self.records.get(client_id, file_id)
        if record is None:
            raise StepFailed(f"no record of file {file_id} for client {client_id}", FailureReason.FILE_RECORD_MISSING)
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
                             FailureReason.MALFORMED_MESSAGE)
        try:
            source = self.blobs.open_read(blob.container, blob.name)
        except BlobNotFound:
            raise StepFailed(f"work blob {blob.container}/{blob.name} is missing",
                             FailureReason.WORK_FILE_MISSING) from None
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
        kind = record.handoff.get("type")
        contract, queue = HANDOFFS[kind]
        self._send(queue, contract.model_validate(record.handoff["data"]), record.file_id, cause)

    def _announce(self, record: PaymentFile, cause: Cause,
                  created: tuple[FileSummary, int, Decimal, int] | None = None) -> None:
        """Tell the world the file's final state, once: dead-letter copy (validator rejections)
        and the Event Grid event, then ``notified`` on the record."""
        subject = event_subject(record.client_id, record.file_id)
        if record.state is FileState.COMPLETED:
            summary, nb, ctrl, blocks = created or _created_from_record(record)
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


HANDOFFS: dict[str, tuple[type[Contract], Any]] = {
    PaymentFileValidated.TYPE: (PaymentFileValidated, VALIDATED_QUEUE),
    PaymentFileAdapted.TYPE: (PaymentFileAdapted, ADAPTED_QUEUE),
}


def _problem(status: int, title: str, detail: str) -> dict[str, Any]:
    """An RFC 9457 problem body, as every HTTP error of the app is."""
    return {"type": "about:blank", "title": title, "status": status, "detail": detail}


def _handoff(message: Contract) -> dict[str, Any]:
    return {"type": message.TYPE, "data": message.to_data()}


def _reason_counts(rejections: Iterable[Rejection]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for rejection in rejections:
        for code in dict.fromkeys(f.code.value for f in rejection.findings):
            counts[code] += 1
    return dict(counts)


def _created_from_record(record: PaymentFile) -> tuple[FileSummary, int, Decimal, int]:
    """What was created, from the hand-off kept on a completed record until it is announced."""
    adapted = PaymentFileAdapted.model_validate((record.handoff or {}).get("data", {}))
    return adapted.file, adapted.nb_of_txs, adapted.ctrl_sum, adapted.blocks


# ====================================================================== consumers (Service Bus)
class StepConsumer:
    """FileAdaptor's or FileCreator's side of its queue, for :func:`choreography.handling.consume`.

    Failures are classified here, once: a corrupt work file, an unusable message or a business
    refusal is permanent. Any other error is transient and is tried again *later*: unless the
    file is settled (another run of this message finished it while this one failed, or
    compensation took it: nothing to do), a copy of the message with the next ``attempt`` is scheduled after
    :func:`~choreography.retry.retry_delay` and this message completes. On the last attempt
    (``PAYMENT_FILES_MAX_ATTEMPTS``) the error is permanent too, so the file is compensated
    instead of silently landing in the broker's dead-letter queue. A permanent failure asks for
    compensation; ``consume`` then dead-letters the message with the reason.

    The broker's delivery count is not the budget: it also counts deliveries that a crash or a
    lock running out used, which say nothing about whether the step can succeed.
    """

    def __init__(self, pipeline: PaymentFilePipeline, step: Step, contract: type[Contract],
                 action: Callable[[Any, Cause], None]) -> None:
        self.pipeline = pipeline
        self.step = step
        self.contracts = ContractRegistry(contract)
        self._contract = contract
        self._action = action

    def handle(self, received: Received) -> None:
        payload = received.payload
        if not isinstance(payload, PaymentFileValidated | PaymentFileAdapted):
            unexpected(received)
        try:
            self._action(payload, received.cause)
        except PermanentFailure:
            raise
        except WorkFileCorrupt as exc:
            raise StepFailed(str(exc), FailureReason.WORK_FILE_CORRUPT) from exc
        except Exception as exc:
            if self.pipeline.settled(self.step, payload.file):
                log.info("%s: file %s was finished by another run of message %s; this run's error is moot: %r",
                         self.step.value, payload.file.file_id, received.incoming.message_id, exc)
                return
            attempt, limit = payload.attempt, self.pipeline.options.max_attempts
            if attempt >= limit:
                raise StepFailed(f"{self.step.value} still failed on attempt {attempt} of {limit}: {exc!r}",
                                 FailureReason.RETRIES_EXHAUSTED) from exc
            at = self.pipeline.retry_later(payload, received.cause)
            log.warning("%s: file %s failed on attempt %d of %d (%r); attempt %d at %s", self.step.value,
                        payload.file.file_id, attempt, limit, exc, attempt + 1, at.isoformat())

    def on_permanent_failure(self, incoming: Incoming, received: Received | None, failure: PermanentFailure) -> None:
        payload: Any = received.payload if received is not None else None
        if payload is not None:
            file_id, client_id = payload.file.file_id, payload.file.client_id
        else:  # unreadable: the envelope's correlation id is still the file id
            file_id, client_id = incoming.delivery_id or "", None
        if not FILE_ID_RE.match(file_id):
            log.error("%s: permanent failure on a message naming no file (%s); only dead-lettered",
                      self.step.value, failure.description)
            return
        cause = received.cause if received is not None else incoming.cause
        self.pipeline.request_compensation(file_id, client_id, self.step, failure.reason.value, failure.description,
                                           cause)


class CompensationConsumer:
    """``payment-files-compensation``: a command nobody can read is only dead-lettered."""

    contracts = ContractRegistry(CompensatePaymentFile)

    def __init__(self, pipeline: PaymentFilePipeline) -> None:
        self.pipeline = pipeline

    def handle(self, received: Received) -> None:
        match received.payload:
            case CompensatePaymentFile() as command:
                self.pipeline.compensate(command, received.cause)
            case _:
                unexpected(received)

    def on_permanent_failure(self, incoming: Incoming, received: Received | None, failure: PermanentFailure) -> None:
        log.error("compensation command %s cannot be used (%s); dead-lettered for an operator", incoming.message_id,
                  failure.description)


def quarantine_name(record: PaymentFile) -> str:
    """Name of a rejected upload inside ``payment-files-rejected``: ``{clientId}/{fileId}/{fileName}``
    (the file id keeps two rejected versions of one upload name apart)."""
    _, _, file_name = record.input_name.partition("/")
    return f"{record.client_id}/{record.file_id}/{file_name or record.input_name}"
