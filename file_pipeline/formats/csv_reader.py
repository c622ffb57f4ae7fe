"""Streaming reader for client CSV files laid out per :class:`CsvLayout`."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from datetime import date, datetime
from typing import BinaryIO

from file_pipeline.domain.model import FileFormat, FileHeader, FileRejected, Finding, Transaction
from file_pipeline.domain.reason_codes import ReasonCode
from file_pipeline.domain.reference import CsvLayout
from file_pipeline.domain.rules import normalize_iban, parse_amount

_UPPER_FIELDS = ("currency", "creditor_bic")


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
        iso_dates = layout.date_format == "%Y-%m-%d"
        date_format = layout.date_format
        n = 0
        total_sum = header.ctrl_sum
        try:
            index = self._index(next(reader) if layout.has_header else None)
            pairs = sorted(index.items(), key=lambda kv: kv[1])
            width = max(index.values()) + 1
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
                v = {f: row[i].strip() for f, i in pairs}
                amount_text = v.get("amount", "")
                amount = parse_amount(amount_text, dec, thou)
                date_text = v.get("requested_execution_date", "")
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
                    index=n,
                    line=reader.line_num,
                    end_to_end_id=v.get("end_to_end_id", ""),
                    amount=amount,
                    currency=v.get("currency", "").upper(),
                    creditor_name=v.get("creditor_name", ""),
                    creditor_iban=normalize_iban(v.get("creditor_iban", "")),
                    creditor_account=v.get("creditor_account", ""),
                    creditor_routing=v.get("creditor_routing", ""),
                    creditor_bic=v.get("creditor_bic", "").upper(),
                    debtor_account=normalize_iban(v.get("debtor_account", "")),
                    requested_execution_date=exec_date,
                    remittance_info=v.get("remittance_info", ""),
                    instruction_id=v.get("instruction_id", ""),
                    payment_block_id=block,
                    amount_text=amount_text,
                    date_text=date_text,
                    format_findings=findings,
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
