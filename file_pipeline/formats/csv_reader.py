"""Streaming reader for client CSV files laid out per :class:`CsvLayout`."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from operator import itemgetter
from typing import BinaryIO

from file_pipeline.domain.amounts import AMOUNT_RE, parse_amount
from file_pipeline.domain.fast.screen import EntryScreen
from file_pipeline.domain.iban import iban_valid as valid_iban
from file_pipeline.domain.model import FileFormat, FileHeader, FileRejected, Finding, Transaction
from file_pipeline.domain.reason_codes import IsoReason
from file_pipeline.domain.reference import CSV_FIELDS, CsvLayout

_PLAIN_AMOUNT = AMOUNT_RE  # what parse_amount accepts with "." and no thousands separator
_MAX_SCREENS = 4096
_RUN = 256  # screened rows handed out together: a per-row step of every consumer saved, little held

ScreenFor = Callable[[str, date | None, str], EntryScreen | None]


def _parse_date(text: str, iso: bool, date_format: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text) if iso and len(text) == 10 else datetime.strptime(text, date_format).date()
    except ValueError:
        return None


def _release(
    run: list[Transaction], ids: list[str], cents: int, screen: EntryScreen | None, defaulted: list[int]
) -> Iterator[tuple[Transaction | list[Transaction], int | None]]:
    """``run`` (rows that passed ``screen`` but for DU04, in file order, with EndToEndIds ``ids``,
    amounts adding up to ``cents``, the debtor account left empty at the ``defaulted`` places) as
    :meth:`CsvReader.screened` hands it out, once the DU04 memory has seen their ids: a row
    whose id was seen before goes to the rules as it was read, and the DU04 memory is asked
    about the rows after it anew."""
    if screen is None:  # pragma: no cover - a run is only made under a screen
        raise AssertionError("a run of screened rows without its screen")
    start = 0
    while start < len(run):
        new = screen.first_sightings_of_any(ids[start:] if start else ids)
        if start == 0 and new == len(run):
            yield run, cents
            return
        if new:
            part = run[start : start + new]
            yield part, sum(int(tx.amount_text[:-3] + tx.amount_text[-2:]) for tx in part)
        start += new
        if start < len(run):
            tx = run[start]
            yield replace(
                tx,
                debtor_account="" if start in defaulted else tx.debtor_account,
                requested_execution_date=tx.requested_execution_date if tx.date_text else None,
            ), None
            start += 1


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
                IsoReason.FF01,
                f"CSV header lacks mandatory column(s) {', '.join(missing)} of layout {self.layout.name}",
                1,
            )
        return index

    def __iter__(self) -> Iterator[Transaction]:
        for tx, _ in self.screened(None):  # no screen: one row at a time
            yield tx  # type: ignore[misc]

    def screened(self, screen_for: ScreenFor | None) -> Iterator[tuple[Transaction | list[Transaction], int | None]]:
        """Every row, in file order: ``(transaction, None)`` when it still has to go through the
        transaction rules, or in a run ``(transactions, cents)`` of consecutive rows (at most
        ``_RUN``) that passed one :class:`EntryScreen`, that of their currency and execution date
        text (made by ``screen_for(currency, date, date text)``): such transactions are valid,
        already carry the debtor account and execution date the validator would give them, and
        their amounts add up to ``cents`` hundredths. A run is handed out before the next row
        that is not in it, and before a fault that rejects the file.
        Only layouts with plain amounts (``.`` decimals, no thousands separator) are screened."""
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
        if not plain_amounts:
            screen_for = None
        amount_shape = _PLAIN_AMOUNT.match
        iso_dates = layout.date_format == "%Y-%m-%d"
        date_format = layout.date_format
        # (currency, date text) -> (screen or None, parsed date); bounded, since a hostile file
        # could give every row its own date text (rows beyond the bound are parsed one by one)
        screens: dict[tuple[str, str], tuple[EntryScreen | None, date | None]] = {}
        iban_valid = valid_iban
        strip = str.strip
        # the screens entry of the row before, so that most rows need no look-up
        last_ccy: str | None = None
        last_date_text = ""
        last_cached: tuple[EntryScreen | None, date | None] = (None, None)
        n = 0
        total_sum = header.ctrl_sum
        # screened rows not handed out yet, their EndToEndIds (DU04 is asked a run at a time, at
        # its release), where in the run the debtor account was left empty, and their cents
        run: list[Transaction] = []
        ids: list[str] = []
        defaulted: list[int] = []
        run_cents = 0
        run_screen: EntryScreen | None = None
        try:
            header_row = next(reader) if layout.has_header else None
            index = self._index(header_row)
            width = max(index.values()) + 1
            # cells beyond the header (or, without one, beyond the layout's last column) would be
            # dropped unread: such a row is not what the client's layout describes
            most = max(len(header_row), width) if header_row is not None else width
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
                            IsoReason.FF01, f"row has {len(row)} fields, layout {layout.name} needs {width}"
                        ),
                    )
                    row = row + [""] * (width - len(row))
                elif len(row) > most:
                    findings = (
                        Finding(IsoReason.FF01, f"row has {len(row)} fields, more than the {most} of "
                                                 f"layout {layout.name}; the extra fields would be lost"),
                    )
                row.append("")
                (e2e, amount_text, ccy, name, iban, account, routing, bic, debtor, date_text, remittance,
                 instruction) = map(strip, fields(row))
                if plain_amounts:
                    amount = Decimal(amount_text) if amount_shape(amount_text) else None
                else:
                    amount = parse_amount(amount_text, dec, thou)
                if amount is not None:
                    total_sum += amount
                ccy = ccy.upper()
                if ccy == last_ccy and date_text == last_date_text:  # most rows: the row before's
                    screen, exec_date = last_cached
                elif (cached := screens.get((ccy, date_text))) is not None:
                    screen, exec_date = last_cached = cached
                    last_ccy, last_date_text = ccy, date_text
                else:
                    screen, exec_date = None, _parse_date(date_text, iso_dates, date_format)
                    if screen_for is not None and len(screens) < _MAX_SCREENS:
                        screen = screen_for(ccy, exec_date, date_text)
                        screens[ccy, date_text] = last_cached = (screen, exec_date)
                        last_ccy, last_date_text = ccy, date_text
                iban = iban.replace(" ", "").upper()
                bic = bic.upper()
                debtor = debtor.replace(" ", "").upper()
                if (
                    screen is not None
                    and not findings
                    and amount is not None
                    and len(amount_text) > 3
                    and amount_text[-3] == "."
                    and amount_text[0] != "-"
                    and 0 < (cents := int(amount_text.replace(".", ""))) <= screen.max_cents  # its only "."
                    and e2e
                    and name
                    and len(e2e) <= 35
                    and len(name) <= 140
                    and len(remittance) <= 140
                    and len(instruction) <= 35
                    and e2e.isprintable()
                    and name.isprintable()
                    and remittance.isprintable()
                    and instruction.isprintable()
                    and (
                        iban_valid(iban)
                        if iban
                        else (0 < len(account) <= 34 and account.isprintable() and bool(routing or bic))
                    )
                    and (not routing or screen.routing_verdicts.get(routing, False) is None)
                    and (not bic or screen.bic_verdicts.get(bic, False) is None)
                    and (not debtor or debtor in screen.debtor_accounts)
                ):
                    if screen is not run_screen or len(run) >= _RUN:
                        if run:
                            yield from _release(run, ids, run_cents, run_screen, defaulted)
                        run, ids, defaulted, run_cents, run_screen = [], [], [], 0, screen
                    if not debtor:
                        defaulted.append(len(run))
                    ids.append(e2e)
                    run.append(Transaction(
                        n, reader.line_num, e2e, amount, ccy, name, iban, account, routing, bic,
                        debtor or screen.debtor_account, "", screen.execution_date, remittance, instruction,
                        block, amount_text, date_text, "credit",
                    ))
                    run_cents += cents
                else:
                    if run:  # the rules must see this row after the ones before it (DU04, daily limits)
                        yield from _release(run, ids, run_cents, run_screen, defaulted)
                        run, ids, defaulted, run_cents, run_screen = [], [], [], 0, None
                    yield Transaction(
                        n, reader.line_num, e2e, amount, ccy, name, iban, account, routing, bic, debtor, "",
                        exec_date, remittance, instruction, block, amount_text, date_text, "credit", findings,
                    ), None
            if run:
                yield from _release(run, ids, run_cents, run_screen, defaulted)
        except StopIteration:
            raise FileRejected(IsoReason.FF01, "CSV file has no header row") from None
        except UnicodeDecodeError as exc:
            if run:  # the rows before the fault are handed out as they would be one by one
                yield from _release(run, ids, run_cents, run_screen, defaulted)
            raise FileRejected(
                IsoReason.FF01,
                f"CSV is not valid {layout.encoding}: {exc.reason} (after line {reader.line_num})",
            ) from None
        except csv.Error as exc:
            if run:
                yield from _release(run, ids, run_cents, run_screen, defaulted)
            raise FileRejected(IsoReason.FF01, f"CSV syntax error: {exc}", reader.line_num) from None
        finally:
            header.nb_of_txs = n
            header.ctrl_sum = total_sum
            text.detach()
