"""CSV writing that is safe to open in a spreadsheet (no formula injection).

A cell starting with ``= + - @``, a tab, a carriage return or NUL would be run
as a formula (or break the row) by Excel/LibreOffice; such cells get a leading
apostrophe. NUL characters are removed from every cell.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO

from file_pipeline.domain.validator import Rejection

_DANGEROUS = ("=", "+", "-", "@", "\t", "\r", "\x00")


def escape_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    if text.startswith(_DANGEROUS):
        text = "'" + text
    return text.replace("\x00", "")


def write_rows(
    out: BinaryIO, rows: Iterable[Sequence[Any]], header: Sequence[str] | None = None, encoding: str = "utf-8"
) -> int:
    """Write escaped rows to a binary stream; returns the number of data rows."""
    text = io.TextIOWrapper(out, encoding=encoding, newline="")
    try:
        writer = csv.writer(text, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        if header:
            writer.writerow([escape_cell(h) for h in header])
        n = 0
        for row in rows:
            writer.writerow([escape_cell(c) for c in row])
            n += 1
        text.flush()
        return n
    finally:
        text.detach()


ERROR_REPORT_HEADER = (
    "index",
    "line",
    "end_to_end_id",
    "block_id",
    "amount",
    "currency",
    "reason_code",
    "description",
)


def write_error_report(out: BinaryIO, rejections: Iterable[Rejection]) -> int:
    """One row per (rejected transaction, reason) for people who prefer a spreadsheet."""
    rows = (
        (
            r.index,
            r.line or "",
            r.end_to_end_id,
            r.block_id,
            r.amount,
            r.currency,
            f.code.value,
            f.description,
        )
        for r in rejections
        for f in r.findings
    )
    return write_rows(out, rows, ERROR_REPORT_HEADER)
