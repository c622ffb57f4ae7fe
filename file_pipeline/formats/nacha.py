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
from dataclasses import replace
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


class NachaReader:
    """Iterate entry detail records as :class:`Transaction`; ``header`` fills as it streams."""

    def __init__(self, stream: BinaryIO) -> None:
        head, self._stream, _ = peek_head(stream, RECORD_LEN + 2)
        self._fixed_block = len(head) > RECORD_LEN and head[RECORD_LEN : RECORD_LEN + 1] not in (b"\r", b"\n")
        self.header = FileHeader(FileFormat.NACHA, nacha=NachaFileControl())

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
        validator would give them, and their amounts add up to ``cents``."""
        header = self.header
        fc = header.nacha
        assert fc is not None  # a NACHA reader's header always has its control
        state = "start"  # start | file | batch | entry | closed
        batch: PaymentBlock | None = None
        batch_date: date | None = None
        batch_date_text = ""
        block_id = ""
        screen: EntryScreen | None = None
        # the screen's parts, in locals for the hot path (set with the screen)
        routing_verdicts: Mapping[str, object] = {}
        max_cents = 0
        debtor_account = ""
        execution_date: date | None = None
        # transaction code and routing number (record columns 2-12) -> the routing number's first
        # 8 digits as a number (its part of the entry hash), for a credit code and a routing
        # number whose verdict is None: one look-up tells both and gives the hash. Bounded by
        # the ABA directory, since only numbers found there have that verdict.
        clean_entries: dict[str, int] = {}
        clean = _NOTHING_CLEAN.get  # clean_entries.get while entries may pass the screen
        chunk_clean: bool | None = None  # no character a text field may not hold in the chunk
        pending: Transaction | None = None
        pending_cents: int | None = None
        # screened entries read but not handed out yet (before the DU04 memory has seen them)
        run: list[Transaction] = []
        run_cents = 0
        addenda_expected = False
        # the open batch's computed controls, kept in locals and stored at its control record
        credit_cents = debit_cents = entry_hash = addenda = 0
        n = first_n = 0
        records = 0
        line = 0
        try:
            for recs, raw_chunk in self._record_chunks():
                chunk_clean = None
                if screen is not None:
                    chunk_clean = raw_chunk is not None and not raw_chunk.translate(None, screen.ascii_text_chars)
                    clean = clean_entries.get if chunk_clean else _NOTHING_CLEAN.get
                for rec in recs:
                    line += 1
                    if not rec:
                        continue
                    records += 1
                    rtype = rec[0]
                    if rtype == "6" and (state == "entry" or state == "batch"):  # the hot path
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
                            entry_hash_part = None
                            code = rec[1:3]
                            routing8 = rec[3:11]
                            if not (routing8.isdigit() and amount_text.isdigit() and trace.isdigit()):
                                _num(routing8, "RDFI routing", line)
                                _num(amount_text, "amount", line)
                                _num(trace, "trace number", line)
                            cents = int(amount_text)
                            if not code.isdigit():
                                raise _reject("numeric-field", f"transaction code {code!r} is not numeric", line)
                            if code[1] in "01234":
                                credit_cents += cents
                            else:
                                debit_cents += cents
                            entry_hash += int(routing8)
                            kind = CREDIT_CODES.get(code, "other")
                            if (
                                chunk_clean
                                and screen is not None
                                and code in _SCREENABLE_CODES
                                and routing_verdicts.get(routing, False) is None
                            ):
                                entry_hash_part = clean_entries[rec[1:12]] = int(routing8)
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
                        if rec != FILLER:
                            raise _reject(
                                "padding", "only all-9 filler records may follow the file control record", line
                            )
                        continue
                    if rtype in ("6", "7", "8") and state not in ("batch", "entry"):
                        raise _reject("record-order", f"type {rtype} record outside a batch", line)
                    if rtype != "7":
                        if pending is not None:
                            if pending_cents is None:
                                yield from self._release(run, run_cents, screen, batch_date)
                                run, run_cents = [], 0
                                yield pending, None
                            else:
                                run.append(pending)
                                run_cents += pending_cents
                            pending = None
                        if run:  # a run never spans two batches: its entries share the batch date
                            yield from self._release(run, run_cents, screen, batch_date)
                            run, run_cents = [], 0
                    if rtype == "7":
                        if state != "entry" or pending is None:
                            raise _reject("record-order", "addenda record without a preceding entry", line)
                        if not addenda_expected:
                            raise _reject(
                                "record-order", "addenda record but the entry's addenda indicator is 0", line
                            )
                        if rec[1:3] != "05":
                            # 98 (notification of change) and 99 (return) are the receiving bank's
                            # answers; an originator's file carries payment information (05) only.
                            raise _reject("addenda-type", f"addenda type code {rec[1:3]!r}: an originated entry "
                                          "carries only type 05 (payment related information)", line)
                        addenda += 1
                        info = rec[3:83].strip()
                        pending.remittance_info = (pending.remittance_info + " " + info).strip()
                    elif rtype == "5":
                        if state != "file":
                            raise _reject("record-order", "batch header record out of order", line)
                        scc = rec[1:4]
                        if scc not in _SERVICE_CLASSES:
                            raise _reject("numeric-field", f"service class code {scc!r} is not 200, 220 or 225", line)
                        sec = rec[50:53]
                        if sec == "IAT":
                            raise _reject("unsupported-sec", "IAT (international) batches are not supported", line)
                        _num(rec[79:87], "ODFI identification", line)
                        batch_no = rec[87:94]
                        _num(batch_no, "batch number", line)
                        batch_date_text = rec[69:75].strip()
                        batch_date = _yymmdd(batch_date_text)
                        batch = PaymentBlock(
                            block_id=batch_no,
                            line=line,
                            service_class=scc,
                            company_id=rec[40:50],
                            odfi=rec[79:87],
                            effective_date=batch_date,
                        )
                        block_id = batch_no
                        credit_cents = debit_cents = entry_hash = addenda = 0
                        first_n = n
                        screen = screen_for("USD", batch_date, batch_date_text) if screen_for else None
                        if screen is None:
                            clean = _NOTHING_CLEAN.get
                        else:
                            if chunk_clean is None:
                                chunk_clean = raw_chunk is not None and not raw_chunk.translate(
                                    None, screen.ascii_text_chars
                                )
                            clean = clean_entries.get if chunk_clean else _NOTHING_CLEAN.get
                            routing_verdicts = screen.routing_verdicts
                            max_cents = screen.max_cents
                            debtor_account = screen.debtor_account
                            execution_date = screen.execution_date
                        state = "batch"
                    elif rtype == "8":
                        assert batch is not None  # "8" is read in state "batch" only
                        if (
                            rec[1:4] != batch.service_class
                            or rec[87:94] != batch.block_id
                            or rec[44:54] != batch.company_id
                            or rec[79:87] != batch.odfi
                        ):
                            raise _reject(
                                "header-control-mismatch",
                                f"batch control does not match batch header "
                                f"{batch.block_id} (service class, company id, "
                                "ODFI or batch number)",
                                line,
                            )
                        batch.declared_entry_addenda = _num(rec[4:10], "entry/addenda count", line)
                        batch.declared_entry_hash = _num(rec[10:20], "entry hash", line)
                        batch.declared_debit_cents = _num(rec[20:32], "total debit", line)
                        batch.declared_credit_cents = _num(rec[32:44], "total credit", line)
                        nb_of_txs = n - first_n
                        batch.credit_cents, batch.debit_cents = credit_cents, debit_cents
                        batch.entry_hash, batch.entry_addenda = entry_hash, nb_of_txs + addenda
                        batch.nb_of_txs = nb_of_txs
                        if nb_of_txs:  # every amount has 2 decimals: the sum is exact in cents
                            batch.ctrl_sum = Decimal(credit_cents + debit_cents).scaleb(-2)
                        header.blocks.append(batch)
                        header.nb_of_txs += batch.nb_of_txs
                        header.ctrl_sum += batch.ctrl_sum
                        batch = None
                        state = "file"
                    elif rtype == "1":
                        if state != "start":
                            raise _reject("record-order", "second file header record", line)
                        if rec[1:3] != "01" or rec[34:37] != "094" or rec[37:39] != "10" or rec[39] != "1":
                            raise _reject(
                                "numeric-field",
                                "file header priority code, record size (094), blocking "
                                "factor (10) or format code (1) is wrong",
                                line,
                            )
                        fc.immediate_destination = rec[3:13].strip()
                        fc.immediate_origin = rec[13:23].strip()
                        fc.file_id_modifier = rec[33]
                        header.msg_id = f"{fc.immediate_origin}-{rec[23:29]}{rec[29:33]}{rec[33]}"
                        header.creation = rec[23:33]
                        header.initiating_party = rec[63:86].strip()
                        state = "file"
                    elif rtype == "9":
                        if state != "file":
                            raise _reject(
                                "record-order",
                                "file control record out of order (inside a batch or before the file header)",
                                line,
                            )
                        fc.declared_batch_count = _num(rec[1:7], "batch count", line)
                        fc.declared_block_count = _num(rec[7:13], "block count", line)
                        fc.declared_entry_addenda = _num(rec[13:21], "entry/addenda count", line)
                        fc.declared_entry_hash = _num(rec[21:31], "entry hash", line)
                        fc.declared_debit_cents = _num(rec[31:43], "total debit", line)
                        fc.declared_credit_cents = _num(rec[43:55], "total credit", line)
                        state = "closed"
                    else:
                        raise _reject("record-type", f"unknown record type {rtype!r}", line)
        except FileRejected:
            # what was read before the fault is handed out, as it would have been one by one
            if run:
                yield from self._release(run, run_cents, screen, batch_date)
            raise
        if pending is not None:  # file ends right after an entry: yield it, then fail below
            if pending_cents is None:
                yield pending, None
            else:
                run.append(pending)
                run_cents += pending_cents
        if run:
            yield from self._release(run, run_cents, screen, batch_date)
        if state == "start":
            raise _reject("missing-record", "no file header record", None)
        if state != "closed":
            raise _reject("missing-record", "file control record missing (truncated file?)", None)
        fc.record_count = records
        if records % 10:
            raise _reject("padding", f"{records} records is not a multiple of 10 (missing 9-filler)", None)

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
