"""Streaming reader for client CSV files laid out per :class:`CsvLayout`."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from operator import itemgetter
from typing import BinaryIO

from file_pipeline.domain.model import FileFormat, FileHeader, FileRejected, Finding, Transaction
from file_pipeline.domain.reason_codes import ReasonCode
from file_pipeline.domain.reference import CSV_FIELDS, CsvLayout
from file_pipeline.domain.rules import AMOUNT_RE, parse_amount

_PLAIN_AMOUNT = AMOUNT_RE  # what parse_amount accepts with "." and no thousands separator


class CsvReader:
    """Iterate :class:`Transaction` records from a binary CSV stream.

    The whole file is one payment block whose id is ``file_id``. Problems with
    a single row (too few fields) become ``format_findings`` of that row; a
    broken file (undecodable bytes, bad quoting, missing mandatory columns)
    raises :class:`FileRejected`.
    """

    def __init__(self, stream: BinaryIO, layout: CsvLayout, file_id: str = "CSV") -> None:
        self._stream = stream
        self.layout = layout
        self.header = FileHeader(FileFormat.CSV, msg_id=file_id)

    def _index(self, header_row: list[str] | None) -> dict[str, int]:
        cols = self.layout.columns
        if header_row is None:
            return {f: int(i) for f, i in cols.items()}
        names = {name.strip().lower(): i for i, name in enumerate(header_row)}
        index, missing = {}, []
        for fld, col in cols.items():
            if isinstance(col, int):
                index[fld] = col
            elif col.strip().lower() in names:
                index[fld] = names[col.strip().lower()]
            elif fld in ("end_to_end_id", "amount", "currency", "creditor_name"):
                missing.append(col)
        if missing:
            raise FileRejected(
                ReasonCode.FF01,
                f"CSV header lacks mandatory column(s) {', '.join(missing)} of layout {self.layout.name}",
                1,
            )
        return index

    def __iter__(self) -> Iterator[Transaction]:
        layout = self.layout
        encoding = layout.encoding
        if codecs.lookup(encoding).name == "utf-8":
            encoding = "utf-8-sig"
        text = io.TextIOWrapper(self._stream, encoding=encoding, errors="strict", newline="")
        reader = csv.reader(text, delimiter=layout.delimiter, strict=True)
        header = self.header
        block = header.msg_id
        dec, thou = layout.decimal_separator, layout.thousands_separator
        plain_amounts = dec == "." and not thou
        amount_shape = _PLAIN_AMOUNT.match
        iso_dates = layout.date_format == "%Y-%m-%d"
        date_format = layout.date_format
        n = 0
        total_sum = header.ctrl_sum
        try:
            index = self._index(next(reader) if layout.has_header else None)
            width = max(index.values()) + 1
            # one getter for every field, in CSV_FIELDS order; a field the layout lacks reads the
            # empty cell appended to each row (index -1)
            fields = itemgetter(*(index.get(name, -1) for name in CSV_FIELDS))
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                n += 1
                findings: tuple[Finding, ...] = ()
                if len(row) < width:
                    findings = (
                        Finding(
                            ReasonCode.FF01, f"row has {len(row)} fields, layout {layout.name} needs {width}"
                        ),
                    )
                    row = row + [""] * (width - len(row))
                row.append("")
                (e2e, amount_text, ccy, name, iban, account, routing, bic, debtor, date_text, remittance,
                 instruction) = [value.strip() for value in fields(row)]
                if plain_amounts:
                    amount = Decimal(amount_text) if amount_shape(amount_text) else None
                else:
                    amount = parse_amount(amount_text, dec, thou)
                exec_date = None
                if date_text:
                    try:
                        exec_date = (
                            date.fromisoformat(date_text)
                            if iso_dates and len(date_text) == 10
                            else datetime.strptime(date_text, date_format).date()
                        )
                    except ValueError:
                        exec_date = None
                if amount is not None:
                    total_sum += amount
                yield Transaction(
                    n, reader.line_num, e2e, amount, ccy.upper(), name, iban.replace(" ", "").upper(), account,
                    routing, bic.upper(), debtor.replace(" ", "").upper(), "", exec_date, remittance, instruction,
                    block, amount_text, date_text, "credit", findings,
                )
        except StopIteration:
            raise FileRejected(ReasonCode.FF01, "CSV file has no header row") from None
        except UnicodeDecodeError as exc:
            raise FileRejected(
                ReasonCode.FF01,
                f"CSV is not valid {layout.encoding}: {exc.reason} (after line {reader.line_num})",
            ) from None
        except csv.Error as exc:
            raise FileRejected(ReasonCode.FF01, f"CSV syntax error: {exc}", reader.line_num) from None
        finally:
            header.nb_of_txs = n
            header.ctrl_sum = total_sum
            text.detach()
