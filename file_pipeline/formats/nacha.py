"""Streaming reader for NACHA ACH files (94-character fixed-width records).

Structure checks are done while reading and are fatal (``FileRejected`` with
``FF01``): record length, record type, order 1 -> 5 -> 6/7 -> 8 -> 9, batch
header vs. batch control consistency, numeric fields, padding with all-9
records to a multiple of 10. Control totals (batch and file entry/addenda
counts, entry hash, debit/credit totals, block count) are collected into the
:class:`FileHeader` and compared by
:func:`file_pipeline.domain.rules.check_nacha_controls`; entry-level problems
(routing check digit, zero amounts, debits) are transaction rules.

Records may be separated by LF or CRLF, or not separated at all (a stream of
94-byte records). IAT batches are not supported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import BinaryIO

from file_pipeline.domain.fast.screen import EntryScreen
from file_pipeline.domain.model import (
    FileFormat,
    FileHeader,
    FileRejected,
    NachaFileControl,
    PaymentBlock,
    Transaction,
)
from file_pipeline.domain.reason_codes import NACHA_ERROR_CODES as N
from file_pipeline.formats.detect import peek_head

RECORD_LEN = 94
FILLER = "9" * RECORD_LEN
CREDIT_CODES = {
    "22": "credit",
    "32": "credit",
    "23": "prenote",
    "33": "prenote",
    "27": "debit",
    "37": "debit",
    "28": "prenote",
    "38": "prenote",
}
_SERVICE_CLASSES = {"200", "220", "225"}


def _reject(kind: str, text: str, line: int | None) -> FileRejected:
    return FileRejected(N[kind], text, line)


def _num(field: str, what: str, line: int) -> int:
    if not (field.isdigit() and field.isascii()):
        raise _reject("numeric-field", f"{what} {field!r} is not numeric", line)
    return int(field)


def _yymmdd(text: str) -> date | None:
    if len(text) != 6 or not text.isdigit():
        return None
    try:
        return date(2000 + int(text[:2]), int(text[2:4]), int(text[4:]))
    except ValueError:
        return None


ScreenFor = Callable[[str, date | None, str], EntryScreen | None]
_CHUNK = 1 << 18
_SCREENABLE_CODES = frozenset(code for code, kind in CREDIT_CODES.items() if kind == "credit")
# Screened entries are handed out in runs of at most this many: short enough that a run's
# transactions are gone before the garbage collector's youngest generation fills up (700 new
# objects), which would otherwise move every run through older generations and cost about
# as much as the runs save.
_RUN_LENGTH = 256
_NOTHING_CLEAN: dict[str, int] = {}  # where no entry may pass the screen
_HUNDREDTH = Decimal("0.01")  # cents times this: the amount with its 2 decimals, as scaleb(-2)


@dataclass(slots=True)
class _OpenBatch:
    """The batch being read: its block, and what its entries need from the header and its screen."""

    block: PaymentBlock | None
    date_text: str
    screen: EntryScreen | None
    addenda: int = 0  # addenda records read in it so far

    @property
    def screening(self) -> tuple[date | None, str, str, EntryScreen | None, Mapping[str, object], int, str,
                                 date | None]:
        """(effective date, its text, batch number, screen, routing verdicts, max cents, debtor
        account, execution date): unpacked into the reader's locals once per batch."""
        block, screen = self.block, self.screen
        effective = block.effective_date if block is not None else None
        block_id = block.block_id if block is not None else ""
        if screen is None:
            return effective, self.date_text, block_id, None, {}, 0, "", None
        return (effective, self.date_text, block_id, screen, screen.routing_verdicts, screen.max_cents,
                screen.debtor_account, screen.execution_date)


_NO_BATCH = _OpenBatch(None, "", None)  # between batches; never mutated (addenda come inside a batch)


@dataclass(frozen=True, slots=True)
class _BatchTotals:
    """The open batch's controls as computed so far (kept in the reader's locals)."""

    entries: int
    credit_cents: int
    debit_cents: int
    entry_hash: int


def _unscreened_entry(rec: str, line: int, routing_verdicts: Mapping[str, object],
                      learn: dict[str, int] | None) -> tuple[int, int, int, int, str, int | None]:
    """An entry that did not pass the screen's one look-up: its numeric fields checked,
    ``(cents, credit cents, debit cents, the routing number's part of the entry hash, kind,
    that part again if such entries may pass the screen from now on, else None)``. With
    ``learn`` (the look-up's table, while the chunk's text is clean), a credit to a routing
    number whose verdict is None joins the table."""
    code = rec[1:3]
    routing8 = rec[3:11]
    amount_text = rec[29:39]
    trace = rec[79:94]
    if not (routing8.isdigit() and amount_text.isdigit() and trace.isdigit()):
        _num(routing8, "RDFI routing", line)
        _num(amount_text, "amount", line)
        _num(trace, "trace number", line)
    cents = int(amount_text)
    if not code.isdigit():
        raise _reject("numeric-field", f"transaction code {code!r} is not numeric", line)
    routing_part = int(routing8)
    clean_part = None
    if learn is not None and code in _SCREENABLE_CODES and routing_verdicts.get(rec[3:12], False) is None:
        clean_part = learn[rec[1:12]] = routing_part
    if code[1] in "01234":
        return cents, cents, 0, routing_part, CREDIT_CODES.get(code, "other"), clean_part
    return cents, 0, cents, routing_part, CREDIT_CODES.get(code, "other"), clean_part


def _addenda(rec: str, line: int, state: str, entry: Transaction | None, expected: bool) -> int:
    """An addenda record: its text joins the entry's remittance information; 1 (it counts)."""
    if state != "entry" or entry is None:
        raise _reject("record-order", "addenda record without a preceding entry", line)
    if not expected:
        raise _reject("record-order", "addenda record but the entry's addenda indicator is 0", line)
    if rec[1:3] != "05":
        # 98 (notification of change) and 99 (return) are the receiving bank's answers; an
        # originator's file carries payment information (05) only.
        raise _reject("addenda-type", f"addenda type code {rec[1:3]!r}: an originated entry carries only "
                      "type 05 (payment related information)", line)
    entry.remittance_info = (entry.remittance_info + " " + rec[3:83].strip()).strip()
    return 1


def _filler(rec: str, line: int) -> None:
    if rec != FILLER:
        raise _reject("padding", "only all-9 filler records may follow the file control record", line)


class NachaReader:
    """Iterate entry detail records as :class:`Transaction`; ``header`` fills as it streams."""

    def __init__(self, stream: BinaryIO) -> None:
        head, self._stream, _ = peek_head(stream, RECORD_LEN + 2)
        self._fixed_block = len(head) > RECORD_LEN and head[RECORD_LEN : RECORD_LEN + 1] not in (b"\r", b"\n")
        self._control = NachaFileControl()
        self.header = FileHeader(FileFormat.NACHA, nacha=self._control)

    def _record_chunks(self) -> Iterator[tuple[list[str], bytes | None]]:
        """The lines in file order, in lists; ``""`` stands for a blank line (it has a number but
        is no record). With each list the ASCII bytes it was decoded from, when it was read a
        megabyte at a time (``None`` for a list read line by line, as after any irregularity,
        so that an error is raised at its own line, after the lines before it were used)."""
        if self._fixed_block:
            for rec in self._fixed_records():
                yield [rec], None
            return
        read = self._stream.read
        line = 0
        carry = b""
        while True:
            block = read(_CHUNK)
            if not block:
                break
            data = carry + block if carry else block
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            body, carry = data[:cut], data[cut + 1 :]
            try:
                text: str | None = body.decode("ascii")
            except UnicodeDecodeError:
                text = None
            if text is not None:
                recs = text.split("\n")
                if "\r" in text:
                    recs = [rec.rstrip("\r") for rec in recs]
                    regular = set(map(len, recs)) == {RECORD_LEN}
                else:  # every record 94 long: a line break at every 95th place, and nowhere else
                    regular = len(text) == len(recs) * (RECORD_LEN + 1) - 1 and not text[
                        RECORD_LEN :: RECORD_LEN + 1
                    ].strip("\n")
                if regular:
                    line += len(recs)
                    yield recs, body
                    continue
            for raw in body.split(b"\n"):
                line += 1
                raw = raw.rstrip(b"\r")
                yield [self._decode(raw, line) if raw else ""], None
        if carry:  # a last line without a line break
            line += 1
            if len(carry.rstrip(b"\r")) < RECORD_LEN:
                raise _reject(
                    "missing-record",
                    f"file is truncated: last record has {len(carry)} of {RECORD_LEN} characters",
                    line,
                )
            raw = carry.rstrip(b"\r\n")
            yield [self._decode(raw, line) if raw else ""], None

    def _fixed_records(self) -> Iterator[str]:
        """Records of a file written without a line break after each: line breaks between
        records (one at the end, or one per block of ten, as some banks write) are skipped."""
        read = self._stream.read
        line = 0
        while True:
            raw = read(RECORD_LEN)
            while raw[:1] in (b"\r", b"\n"):
                raw = raw.lstrip(b"\r\n")
                raw += read(RECORD_LEN - len(raw))
                if not raw:
                    return
            if not raw:
                return
            line += 1
            if len(raw) < RECORD_LEN:
                raise _reject(
                    "missing-record",
                    f"file is truncated: last record has {len(raw)} of {RECORD_LEN} characters",
                    line,
                )
            yield self._decode(raw, line)

    @staticmethod
    def _decode(raw: bytes, line: int) -> str:
        if len(raw) != RECORD_LEN:
            raise _reject("record-length", f"record is {len(raw)} characters, expected {RECORD_LEN}", line)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise _reject("record-type", "record contains non-ASCII bytes", line) from None

    def __iter__(self) -> Iterator[Transaction]:
        for tx, _ in self.screened(None):  # no screen, no run: one entry at a time
            yield tx  # type: ignore[misc]

    def screened(self, screen_for: ScreenFor | None) -> Iterator[tuple[Transaction | list[Transaction], int | None]]:
        """Every entry, in file order: ``(entry, None)`` for one that still has to go through the
        transaction rules, or ``(entries, cents)`` for consecutive entries of one batch that passed
        its :class:`EntryScreen` (made by ``screen_for(currency, effective date, date text)``):
        such entries are valid, already carry the debtor account and execution date the
        validator would give them, and their amounts add up to ``cents``.

        The loop below is the per-entry hot path: entry records are read here, in locals; every
        other record (a few per batch) goes to :meth:`_record`, and an entry that cannot pass the
        screen has its numbers read by :func:`_unscreened_entry`."""
        state = "start"  # start | file | batch | entry | closed
        batch = _NO_BATCH
        (batch_date, batch_date_text, block_id, screen, routing_verdicts, max_cents, debtor_account,
         execution_date) = batch.screening
        # transaction code and routing number (record columns 2-12) -> the routing number's first
        # 8 digits as a number (its part of the entry hash), for a credit code and a routing
        # number whose verdict is None: one look-up tells both and gives the hash. Bounded by
        # the ABA directory, since only numbers found there have that verdict.
        clean_entries: dict[str, int] = {}
        clean = _NOTHING_CLEAN.get  # clean_entries.get while entries may pass the screen
        learn: dict[str, int] | None = None  # clean_entries while new routing numbers may join it
        pending: Transaction | None = None
        pending_cents: int | None = None
        # screened entries read but not handed out yet (before the DU04 memory has seen them)
        run: list[Transaction] = []
        run_cents = 0
        addenda_expected = False
        # the open batch's computed controls, kept in locals and stored at its control record
        credit_cents = debit_cents = entry_hash = 0
        n = first_n = 0
        records = 0
        line = 0
        try:
            for recs, raw_chunk in self._record_chunks():
                # no character a text field may not hold in the chunk: its entries may pass the screen
                chunk_clean = screen is not None and raw_chunk is not None and not raw_chunk.translate(
                    None, screen.ascii_text_chars)
                clean = clean_entries.get if chunk_clean else _NOTHING_CLEAN.get
                learn = clean_entries if chunk_clean else None
                for rec in recs:
                    line += 1
                    if not rec:
                        continue
                    records += 1
                    if rec[0] == "6" and (state == "entry" or state == "batch"):  # the hot path
                        if pending is not None:
                            if pending_cents is None:
                                if run:
                                    yield from self._release(run, run_cents, screen, batch_date)
                                    run, run_cents = [], 0
                                yield pending, None
                            else:
                                run.append(pending)
                                run_cents += pending_cents
                                if len(run) == _RUN_LENGTH:
                                    yield from self._release(run, run_cents, screen, batch_date)
                                    run, run_cents = [], 0
                        routing = rec[3:12]
                        amount_text = rec[29:39]
                        trace = rec[79:94]
                        entry_hash_part = clean(rec[1:12])
                        if entry_hash_part is not None and amount_text.isdigit() and trace.isdigit():
                            cents = int(amount_text)
                            credit_cents += cents
                            entry_hash += entry_hash_part
                            kind = "credit"
                        else:
                            cents, credited, debited, routing_part, kind, entry_hash_part = _unscreened_entry(
                                rec, line, routing_verdicts, learn)
                            credit_cents += credited
                            debit_cents += debited
                            entry_hash += routing_part
                        n += 1
                        addenda_expected = rec[78] == "1"
                        name = rec[54:76].strip()
                        account = rec[12:29].strip()
                        if (
                            entry_hash_part is not None  # screening, a credit, a clean routing number
                            and not addenda_expected
                            and 0 < cents <= max_cents
                            and name
                            and account
                        ):
                            pending_cents = cents
                            pending = Transaction(
                                n, line, trace, Decimal(cents) * _HUNDREDTH, "USD", name, "", account, routing, "",
                                debtor_account, "", execution_date, "", rec[39:54].strip(), block_id,
                                amount_text, batch_date_text, "credit",
                            )
                        else:
                            pending_cents = None
                            pending = Transaction(
                                n, line, trace, Decimal(cents) * _HUNDREDTH, "USD", name, "", account, routing, "",
                                "", "", batch_date, "", rec[39:54].strip(), block_id, amount_text,
                                batch_date_text, kind,
                            )
                        state = "entry"
                        continue
                    if state == "closed":
                        _filler(rec, line)
                        continue
                    if rec[0] != "7":  # a run never spans two batches: its entries share the batch date
                        yield from self._hand_out(pending, pending_cents, run, run_cents, screen, batch_date)
                        pending, run, run_cents = None, [], 0
                    state, opened = self._record(rec, line, state, batch, pending, addenda_expected, screen_for,
                                                 _BatchTotals(n - first_n, credit_cents, debit_cents, entry_hash))
                    if opened is not batch:  # a batch opened (its screen into locals) or closed
                        batch = opened
                        (batch_date, batch_date_text, block_id, screen, routing_verdicts, max_cents, debtor_account,
                         execution_date) = batch.screening
                        chunk_clean = screen is not None and raw_chunk is not None and not raw_chunk.translate(
                            None, screen.ascii_text_chars)
                        clean = clean_entries.get if chunk_clean else _NOTHING_CLEAN.get
                        learn = clean_entries if chunk_clean else None
                        credit_cents = debit_cents = entry_hash = 0
                        first_n = n
        except FileRejected:
            # what was read before the fault is handed out, as it would have been one by one
            yield from self._release(run, run_cents, screen, batch_date)
            raise
        # the file ends right after an entry: hand it out, then fail below
        yield from self._hand_out(pending, pending_cents, run, run_cents, screen, batch_date, entry_first=True)
        self._finish(state, records)

    def _record(self, rec: str, line: int, state: str, batch: _OpenBatch, pending: Transaction | None,
                addenda_expected: bool, screen_for: ScreenFor | None,
                totals: _BatchTotals) -> tuple[str, _OpenBatch]:
        """Any record but an entry inside a batch: checked against the state it arrives in; the
        state after it, and the open batch (a new one after a batch header)."""
        rtype = rec[0]
        if rtype in ("6", "7", "8") and state not in ("batch", "entry"):
            raise _reject("record-order", f"type {rtype} record outside a batch", line)
        if rtype == "7":
            batch.addenda += _addenda(rec, line, state, pending, addenda_expected)
            return state, batch
        if rtype == "5":
            if state != "file":
                raise _reject("record-order", "batch header record out of order", line)
            return "batch", self._batch_header(rec, line, screen_for)
        if rtype == "8":
            self._batch_control(rec, line, batch, totals)
            return "file", _NO_BATCH
        if rtype == "1":
            self._file_header(rec, line, state)
            return "file", batch
        if rtype == "9":
            self._file_control(rec, line, state)
            return "closed", batch
        raise _reject("record-type", f"unknown record type {rtype!r}", line)

    def _file_header(self, rec: str, line: int, state: str) -> None:
        if state != "start":
            raise _reject("record-order", "second file header record", line)
        if rec[1:3] != "01" or rec[34:37] != "094" or rec[37:39] != "10" or rec[39] != "1":
            raise _reject(
                "numeric-field",
                "file header priority code, record size (094), blocking factor (10) or format code (1) is wrong",
                line,
            )
        header, fc = self.header, self._control
        fc.immediate_destination = rec[3:13].strip()
        fc.immediate_origin = rec[13:23].strip()
        fc.file_id_modifier = rec[33]
        header.msg_id = f"{fc.immediate_origin}-{rec[23:29]}{rec[29:33]}{rec[33]}"
        header.creation = rec[23:33]
        header.initiating_party = rec[63:86].strip()

    @staticmethod
    def _batch_header(rec: str, line: int, screen_for: ScreenFor | None) -> _OpenBatch:
        scc = rec[1:4]
        if scc not in _SERVICE_CLASSES:
            raise _reject("numeric-field", f"service class code {scc!r} is not 200, 220 or 225", line)
        if rec[50:53] == "IAT":
            raise _reject("unsupported-sec", "IAT (international) batches are not supported", line)
        _num(rec[79:87], "ODFI identification", line)
        batch_no = rec[87:94]
        _num(batch_no, "batch number", line)
        date_text = rec[69:75].strip()
        effective = _yymmdd(date_text)
        block = PaymentBlock(block_id=batch_no, line=line, service_class=scc, company_id=rec[40:50],
                             odfi=rec[79:87], effective_date=effective)
        screen = screen_for("USD", effective, date_text) if screen_for else None
        return _OpenBatch(block, date_text, screen)

    def _batch_control(self, rec: str, line: int, batch: _OpenBatch, totals: _BatchTotals) -> None:
        block = batch.block
        assert block is not None  # "8" is read in state "batch" only
        if (
            rec[1:4] != block.service_class
            or rec[87:94] != block.block_id
            or rec[44:54] != block.company_id
            or rec[79:87] != block.odfi
        ):
            raise _reject(
                "header-control-mismatch",
                f"batch control does not match batch header {block.block_id} (service class, company id, "
                "ODFI or batch number)",
                line,
            )
        block.declared_entry_addenda = _num(rec[4:10], "entry/addenda count", line)
        block.declared_entry_hash = _num(rec[10:20], "entry hash", line)
        block.declared_debit_cents = _num(rec[20:32], "total debit", line)
        block.declared_credit_cents = _num(rec[32:44], "total credit", line)
        block.credit_cents, block.debit_cents = totals.credit_cents, totals.debit_cents
        block.entry_hash, block.entry_addenda = totals.entry_hash, totals.entries + batch.addenda
        block.nb_of_txs = totals.entries
        if totals.entries:  # every amount has 2 decimals: the sum is exact in cents
            block.ctrl_sum = Decimal(totals.credit_cents + totals.debit_cents).scaleb(-2)
        self.header.blocks.append(block)
        self.header.nb_of_txs += block.nb_of_txs
        self.header.ctrl_sum += block.ctrl_sum

    def _file_control(self, rec: str, line: int, state: str) -> None:
        if state != "file":
            raise _reject(
                "record-order", "file control record out of order (inside a batch or before the file header)", line
            )
        fc = self._control
        fc.declared_batch_count = _num(rec[1:7], "batch count", line)
        fc.declared_block_count = _num(rec[7:13], "block count", line)
        fc.declared_entry_addenda = _num(rec[13:21], "entry/addenda count", line)
        fc.declared_entry_hash = _num(rec[21:31], "entry hash", line)
        fc.declared_debit_cents = _num(rec[31:43], "total debit", line)
        fc.declared_credit_cents = _num(rec[43:55], "total credit", line)

    def _finish(self, state: str, records: int) -> None:
        if state == "start":
            raise _reject("missing-record", "no file header record", None)
        if state != "closed":
            raise _reject("missing-record", "file control record missing (truncated file?)", None)
        self._control.record_count = records
        if records % 10:
            raise _reject("padding", f"{records} records is not a multiple of 10 (missing 9-filler)", None)

    @classmethod
    def _hand_out(
        cls, pending: Transaction | None, pending_cents: int | None, run: list[Transaction], run_cents: int,
        screen: EntryScreen | None, batch_date: date | None, entry_first: bool = False,
    ) -> Iterator[tuple[Transaction | list[Transaction], int | None]]:
        """What is still held when a batch ends: the run of screened entries and the last entry
        (joining the run if it passed the screen). ``entry_first``: an entry the rules must see is
        handed out before the run, as at the end of a truncated file."""
        if pending is not None and pending_cents is not None:
            run.append(pending)
            run_cents += pending_cents
        elif pending is not None and entry_first:
            yield pending, None
        elif pending is not None:
            yield from cls._release(run, run_cents, screen, batch_date)
            run = []
            yield pending, None
        yield from cls._release(run, run_cents, screen, batch_date)

    @staticmethod
    def _release(
        run: list[Transaction], cents: int, screen: EntryScreen | None, batch_date: date | None
    ) -> Iterator[tuple[Transaction | list[Transaction], int | None]]:
        """``run`` (entries of one batch that passed its ``screen`` but for DU04, in file order,
        their amounts adding up to ``cents``) as :meth:`screened` hands it out, once the DU04
        memory has seen their trace numbers: an entry whose trace number was seen before goes
        to the rules, as it was read."""
        if not run or screen is None:  # a run is only made under a screen
            return
        traces = [tx.end_to_end_id for tx in run]
        start = 0
        while start < len(run):
            new = screen.first_sightings(traces[start:] if start else traces)
            if start == 0 and new == len(run):
                yield run, cents
                return
            if new:
                part = run[start : start + new]
                yield part, sum(int(tx.amount_text) for tx in part)
            start += new
            if start < len(run):
                yield replace(run[start], debtor_account="", requested_execution_date=batch_date), None
                start += 1
