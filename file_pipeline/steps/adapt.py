"""FileAdaptor: validated transactions become canonical instructions, grouped for payment."""

from __future__ import annotations

import logging

from choreography.entities import ADAPTED_QUEUE, WORK_CONTAINER
from choreography.messaging import (
    Cause,
)
from choreography.reason_codes import ReasonCode as AppReason
from contracts.payment_files import PaymentFileAdapted, PaymentFileValidated
from file_pipeline.domain.files import (
    FileState,
)
from file_pipeline.instructions import (
    InstructionsBuilder,
)
from file_pipeline.workfiles import (
    read_validated,
)

from .shared import StepFailed, Workbench, handoff

log = logging.getLogger(__name__)


class FileAdaptor(Workbench):
    """FileAdaptor (queue ``payment-files-validated``): validated transactions -> canonical
    instructions -> ``PaymentFileAdapted`` to FileCreator."""

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
                             AppReason.UNKNOWN_CLIENT)
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
        record.adapted(self.clock.now(), handoff(adapted))
        if self._save_step(record) is not None:
            self.blobs.delete(WORK_CONTAINER, instructions.name)  # compensation already cleaned up
            return
        self._send(ADAPTED_QUEUE, adapted, summary.file_id, cause)
