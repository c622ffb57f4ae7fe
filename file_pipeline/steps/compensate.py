"""Compensation: a file whose later step failed for good is undone and rejected."""

from __future__ import annotations

import logging
from datetime import datetime

from choreography.contracts import ContractRegistry
from choreography.entities import OUTPUT_CONTAINER, WORK_CONTAINER
from choreography.errors import PermanentFailure
from choreography.handling import unexpected
from choreography.messaging import (
    Cause,
    Incoming,
    Received,
)
from contracts.payment_files import (
    CompensatePaymentFile,
)
from file_pipeline.domain.daily import amounts_by_key
from file_pipeline.domain.files import (
    FileState,
    PaymentFile,
    Step,
)
from file_pipeline.domain.model import Finding
from file_pipeline.domain.reason_codes import IsoReason
from file_pipeline.ports import DailyTotalsMoved

from .shared import DAILY_TOTALS_ATTEMPTS, Workbench

log = logging.getLogger(__name__)


class Compensation(Workbench):
    """Compensation (queue ``payment-files-compensation``): undo every step that succeeded for a
    file whose later step failed for good."""

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
            finding = Finding(IsoReason.NARR, f"{step.value} failed for good after the file was validated "
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



class CompensationConsumer:
    """``payment-files-compensation``: a command nobody can read is only dead-lettered."""

    contracts = ContractRegistry(CompensatePaymentFile)

    def __init__(self, pipeline: Compensation) -> None:
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
