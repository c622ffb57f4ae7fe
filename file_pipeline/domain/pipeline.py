"""End-to-end composition of the pure pieces: detect -> read -> validate -> pain.001 + pain.002.

The Azure Functions (FileValidator -> FileAdaptor -> FileCreator) can call the
pieces separately; :func:`process_file` strings them together for one file
and is what the tests and benchmarks use. Only local paths and streams are
touched: no Azure, no network, no wall clock (``now`` is passed in).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import BinaryIO

from file_pipeline.domain.daily import DayKey
from file_pipeline.domain.model import FileFormat, FileRejected, Transaction
from file_pipeline.domain.reason_codes import ReasonCode
from file_pipeline.domain.reference import CsvLayout, ReferenceData
from file_pipeline.domain.validator import FileValidation, RejectionLog, ValidationResult
from file_pipeline.formats.detect import Detection, sniff
from file_pipeline.formats.pain001_writer import Pain001Summary, Pain001Writer
from file_pipeline.formats.pain002_writer import OriginalMessage, write_status_report
from file_pipeline.formats.readers import open_reader
from file_pipeline.formats.xsd import validate_stream


@dataclass
class PipelineResult:
    detection: Detection | None
    validation: ValidationResult
    pain001: Pain001Summary | None


def make_writer(
    ref: ReferenceData, client_id: str, msg_id: str, now: datetime, spool_dir: str | None = None
) -> Pain001Writer:
    client = ref.clients[client_id]
    return Pain001Writer(
        msg_id=msg_id,
        created=now,
        initiating_party=client.name,
        debtor_name=client.name,
        accounts={a.id: a for a in client.accounts},
        minor_units={c.code: c.minor_units for c in ref.currencies.values()},
        spool_dir=spool_dir,
    )


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
            return self.layout.name if self.layout else "CSV"
        return self.detection.format.value


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
            raise FileRejected(ReasonCode.NARR, f"unknown client {client_id!r}")
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


def process_file(
    source: BinaryIO,
    ref: ReferenceData,
    client_id: str,
    now: datetime,
    *,
    file_id: str,
    pain001_path: str | None = None,
    pain002_path: str | None = None,
    seen_msg_ids: Container[str] = frozenset(),
    validate_output: bool = True,
    spool_dir: str | None = None,
) -> PipelineResult:
    """Validate one uploaded file; write pain.001.001.09 (if allowed) and the pain.002 report.

    ``file_id`` is a server-side id (never the blob name): it becomes the
    output MsgId and the payment block id of CSV files. ``result.validation.rejections``
    stays readable afterwards (e.g. for :func:`~file_pipeline.formats.safe_csv.write_error_report`).
    """
    summary = None
    writer: Pain001Writer | None = None
    client = ref.clients.get(client_id)
    if client is not None:
        writer = make_writer(ref, client_id, file_id[:35], now, spool_dir)
    try:
        validated = validate_source(
            source,
            ref,
            client_id,
            now,
            file_id=file_id,
            accept=writer.add if writer else _refuse,
            seen_msg_ids=seen_msg_ids,
            spool_dir=spool_dir,
        )
        result = validated.validation
        if writer is not None and pain001_path and result.output_allowed:
            with open(pain001_path, "wb") as out:
                summary = writer.write_to(out)
            if validate_output:
                validate_stream(pain001_path, "pain.001.001.09")
    finally:
        if writer is not None:
            writer.close()
    if pain002_path:
        with open(pain002_path, "wb") as out:
            write_status_report(
                out, result, msg_id=f"STS-{file_id}"[:35], created=now, original=original_message(validated, file_id)
            )
    return PipelineResult(validated.detection, result, summary)


def _refuse(tx: Transaction) -> None:  # pragma: no cover - an unknown client yields no transaction
    raise AssertionError("no transaction is accepted for an unknown client")
