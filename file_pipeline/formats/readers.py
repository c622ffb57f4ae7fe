"""Pick the right streaming reader for a detected format."""

from __future__ import annotations

from typing import BinaryIO

from file_pipeline.domain.model import FileFormat, FileRejected
from file_pipeline.domain.reason_codes import IsoReason
from file_pipeline.domain.reference import CsvLayout
from file_pipeline.formats.csv_reader import CsvReader
from file_pipeline.formats.nacha import NachaReader
from file_pipeline.formats.pain001_reader import Pain001Reader


def open_reader(
    stream: BinaryIO,
    fmt: FileFormat,
    *,
    layout: CsvLayout | None = None,
    file_id: str = "",
    validate_schema: bool = True,
) -> CsvReader | Pain001Reader | NachaReader:
    if fmt is FileFormat.CSV:
        if layout is None:
            raise FileRejected(IsoReason.FF01, "CSV received but the client has no CSV layout agreed")
        return CsvReader(stream, layout, file_id=file_id or "CSV")
    if fmt is FileFormat.NACHA:
        return NachaReader(stream)
    return Pain001Reader(stream, validate_schema=validate_schema)
