"""FileValidator: an uploaded blob version is validated and handed on, or rejected with every reason."""

from __future__ import annotations

import copy
import io
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import IO, Any, BinaryIO
from urllib.parse import quote

from choreography.entities import REJECTED_CONTAINER, VALIDATED_QUEUE, WORK_CONTAINER
from choreography.messaging import (
    Cause,
)
from contracts.payment_files import FileSummary, PaymentFileValidated
from file_pipeline.domain.daily import DailyUsage, amounts_for_record
from file_pipeline.domain.files import (
    FileState,
    PaymentFile,
    Step,
    duplicate_keys,
    file_id_for,
    parse_upload_name,
)
from file_pipeline.domain.model import FileRejected, Finding
from file_pipeline.domain.reason_codes import IsoReason
from file_pipeline.domain.reference import REJECT_FILE, ReferenceData
from file_pipeline.domain.validator import RJCT, RejectionLog, ValidationResult
from file_pipeline.formats.pain002_writer import OriginalMessage
from file_pipeline.ports import BlobNotFound, BlobVersionGone, DailyTotalsMoved, DuplicateClaimed, TriggerBlob
from file_pipeline.validation import Validated, original_message, validate_source
from file_pipeline.workfiles import (
    MeteredReader,
    SourceReadError,
    ValidatedWriter,
    spool,
    write_rejections,
)

from .shared import DAILY_TOTALS_ATTEMPTS, Workbench, handoff, quarantine_name, reason_counts

log = logging.getLogger(__name__)


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



class FileValidator(Workbench):
    """FileValidator (blob trigger ``payment-files-in/{clientId}/{fileName}``): an uploaded file
    -> ``PaymentFileValidated`` to FileAdaptor, or rejected with every reason."""

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
            finding = Finding(IsoReason.NARR, f"the file is {length} bytes, larger than the limit of "
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
        finding = Finding(IsoReason.NARR, "the upload was deleted or overwritten before its validation "
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
                        record.client_id, Finding(IsoReason.FF01, f"the file could not be processed "
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
                finding = Finding(IsoReason.NARR, f"the file is larger than the limit of {self.options.max_bytes} "
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
            transaction_reasons=reason_counts(result.rejections or ()), claims=[k.key for k in keys],
            handoff=handoff(message), daily_amounts=amounts_for_record(reserved))
        for attempt in range(1, DAILY_TOTALS_ATTEMPTS + 1):
            try:
                self.records.save(pending, claim=[k for k in keys if k.key not in owners],
                                  totals=usage.reserve(reserved))
                break
            except DuplicateClaimed as lost:  # an identical file was accepted in between: DU01
                self.blobs.delete_prefix(WORK_CONTAINER, f"{record.file_id}/")
                winner = self.records.get(record.client_id, lost.owner_file_id)
                key = next(k for k in keys if k.key == lost.key)
                result.file_findings.append(key.finding(lost.owner_file_id, winner.file_name if winner else "?"))
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
        finding = Finding(IsoReason.NARR, f"the blob name {record.file_name!r} is not accepted: {problem}; "
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
            "transaction_reasons": reason_counts(result.rejections or ()),
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
