"""One file's content, detected, read and validated: the readers (:mod:`file_pipeline.formats`)
and the rules (:mod:`file_pipeline.domain`) put together for FileValidator
(:func:`validate_source`). Only streams are touched: no Azure, no network, no wall clock
(``now`` is passed in).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import BinaryIO

from file_pipeline.domain.daily import DayKey
from file_pipeline.domain.model import FileFormat, FileRejected, Transaction
from file_pipeline.domain.reason_codes import IsoReason
from file_pipeline.domain.reference import CsvLayout, ReferenceData
from file_pipeline.domain.validator import FileValidation, RejectionLog, ValidationResult
from file_pipeline.formats.detect import Detection, sniff
from file_pipeline.formats.pain002_writer import OriginalMessage
from file_pipeline.formats.readers import open_reader


@dataclass
@dataclass
class Validated:
    """What :func:`validate_source` found: the detected format, the CSV layout used and the result."""

    detection: Detection | None
    layout: CsvLayout | None
    validation: ValidationResult

    @property
    def format_name(self) -> str:
        """``CSV-v1``, ``pain.001.001.03``, ``NACHA``... or ``UNKNOWN`` when detection failed."""
        if self.detection is None:
            return "UNKNOWN"
        if self.detection.format is FileFormat.CSV:
            return str(self.layout.name) if self.layout else "CSV"
        return str(self.detection.format.value)


def validate_source(
    source: BinaryIO,
    ref: ReferenceData,
    client_id: str,
    now: datetime,
    *,
    file_id: str,
    accept: Callable[[Transaction], None],
    accept_run: Callable[[Sequence[Transaction]], None] | None = None,
    seen_msg_ids: Container[str] = frozenset(),
    spool_dir: str | None = None,
    daily_used: Mapping[DayKey, Decimal] | None = None,
) -> Validated:
    """Detect, read and validate one file, handing every transaction that passes the
    transaction rules to ``accept`` as it streams by (or, when ``accept_run`` is given, every
    run of them to ``accept_run`` instead, which spares a call per transaction).

    Whether those transactions may be used is known only at the end
    (``result.validation.output_allowed``): callers spool them. ``daily_used`` is what the
    client's earlier live files use of its daily limits (:mod:`file_pipeline.domain.daily`). A file-level problem
    found before or while reading becomes a file finding, never an exception
    (:class:`FileRejected` is caught here).
    """
    client = ref.clients.get(client_id)
    detection: Detection | None = None
    layout = ref.csv_layout_for(client) if client else None
    try:
        if client is None:
            raise FileRejected(IsoReason.NARR, f"unknown client {client_id!r}")
        detection, stream = sniff(source)
        reader = open_reader(stream, detection.format, layout=layout, file_id=file_id)
        validation = FileValidation(
            reader,
            ref,
            client_id,
            now,
            file_format=detection.format,
            layout_name=layout.name if layout and detection.format is FileFormat.CSV else "",
            seen_msg_ids=seen_msg_ids,
            spool_dir=spool_dir,
            daily_used=daily_used,
        )
    except FileRejected as exc:
        result = ValidationResult(
            client_id,
            client.rejection_policy if client else "reject-file",
            file_findings=[exc.finding],
            rejections=RejectionLog(spool_dir),
        )
        return Validated(detection, layout, result)
    if accept_run is not None:
        for run in validation.accepted_runs():
            accept_run(run)
    else:
        for run in validation.accepted_runs():
            for tx in run:
                accept(tx)
    return Validated(detection, layout, validation.result)


def original_message(validated: Validated, file_id: str) -> OriginalMessage:
    """How a pain.002 names the file it answers."""
    header = validated.validation.header
    return OriginalMessage(
        msg_id=(header.msg_id if header and header.msg_id else file_id),
        msg_name=validated.format_name,
        nb_of_txs=header.nb_of_txs if header else 0,
        ctrl_sum=header.ctrl_sum if header else Decimal(0),
    )
