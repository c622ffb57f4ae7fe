"""FileCreator: the file other banking systems take, all or nothing."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import BinaryIO, cast

from choreography.entities import OUTPUT_CONTAINER, WORK_CONTAINER
from choreography.messaging import (
    Cause,
)
from choreography.reason_codes import ReasonCode as AppReason
from contracts.payment_files import (
    PaymentFileAdapted,
)
from file_pipeline.domain.files import (
    FileState,
    PaymentFile,
)
from file_pipeline.domain.model import FileRejected
from file_pipeline.formats.pain002_writer import OriginalMessage
from file_pipeline.formats.xsd import ValidatingWriter
from file_pipeline.instructions import (
    render_pain001,
)
from file_pipeline.workfiles import (
    Tee,
    read_rejections,
    spool,
)

from .shared import XML, StepFailed, Workbench

log = logging.getLogger(__name__)


class FileCreator(Workbench):
    """FileCreator (queue ``payment-files-adapted``): instructions -> an XSD-valid
    pain.001.001.09 in ``payment-files-out``, its pain.002, record ``Completed``,
    ``PaymentFileCreated``."""

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
            # A Tee is a BinaryIO in all that ValidatingWriter uses of one (write, tell, seek, read).
            with ValidatingWriter(cast(BinaryIO, Tee(xml, output)), "pain.001.001.09") as checked:
                with self._open_work(message.instructions, file_id) as source:
                    written = render_pain001(source, checked, file_id)  # type: ignore[arg-type]
                try:
                    checked.verdict()
                except FileRejected as exc:
                    raise StepFailed(f"the pain.001.001.09 built for {file_id} fails the XSD: {exc.description}",
                                     AppReason.OUTPUT_FAILED_SCHEMA) from None
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
