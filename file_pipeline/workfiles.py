"""Work files: what the steps hand each other through Blob Storage (claim check), and the
streams that read uploads. Pure Python, no Azure: the adapters move the bytes.

Every work file is UTF-8 text whose first line is a JSON object naming its type, schema version
and file id, so a step never mistakes one file's work for another's, and an unknown version is a
permanent failure with a reason (:class:`WorkFileCorrupt`), never a crash loop. The bulk rows are
tab-separated text (:func:`encode_row`; a row whose free text holds a tab or a line break is a
JSON array instead): parsing and writing them costs a fraction of JSON per row, and these files
carry every transaction twice. The names keep their ``.jsonl`` suffix.

``validated.jsonl`` (FileValidator -> FileAdaptor), version 2
    ``{"k": "ValidatedTransactions", "v": 2, "fileId": ...}`` then one row per transaction
    that passed every rule, debtor account and execution date resolved (fields: ``_TX_FIELDS``).
``rejections.jsonl`` (FileValidator -> FileCreator, for the pain.002 of a partly accepted file)
    ``{"k": "Rejections", "v": 1, "fileId": ...}`` then one
    :meth:`~file_pipeline.domain.validator.Rejection.to_json` line per rejected transaction.
``instructions.jsonl`` (FileAdaptor -> FileCreator), version 2: the canonical payment instructions
    ``{"k": "PaymentInstructions", "v": 2, "fileId", "msgId", "createdAt", "initiatingParty",
    "nbOfTxs", "ctrlSum", "blocks"}``, then per block (debtor account, currency, execution date)
    a JSON ``{"k": "block", ...}`` line with its totals and debtor details, then its transaction
    rows ``t, e2e, instr, amount, ccy, name, iban, account, aba, bic, remittance, source index``,
    amounts already rounded to the currency's minor units.

Each message that points at a work file also carries its SHA-256 and size; the reader checks
both, so a truncated or tampered work file is caught before anything is written from it.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import IO, Any, BinaryIO, cast

from file_pipeline.domain.model import FileRejected, Transaction
from file_pipeline.domain.reason_codes import IsoReason
from file_pipeline.domain.validator import Rejection

VALIDATED = "ValidatedTransactions"
REJECTIONS = "Rejections"
INSTRUCTIONS = "PaymentInstructions"
SCHEMA_VERSION = 1  # rejections.jsonl
VALIDATED_VERSION = 3  # 3: repeated values as DITTO; 2: tab-separated rows; 1: JSON arrays
DITTO = "\x1e"  # validated.jsonl: "the same as the previous row" (see ValidatedWriter)
INSTRUCTIONS_VERSION = 2  # tab-separated transaction rows since version 2 (version 1: JSON objects)
SPOOL_IN_MEMORY = 8 << 20  # a work file below this stays in memory; above, it spills to disk
QUANTUM = {n: Decimal(1).scaleb(-n) for n in range(0, 6)}


class WorkFileCorrupt(Exception):
    """A work file is not what its message says (type, version, file id, hash, totals)."""


class SourceReadError(Exception):
    """Reading the uploaded blob failed (storage, network): transient, retry the whole step."""


def spool(spool_dir: str | None = None) -> BinaryIO:
    """A temporary binary file: memory first, disk beyond :data:`SPOOL_IN_MEMORY`."""
    return cast(BinaryIO, tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, mode="w+b", dir=spool_dir))


class Tee:
    """A writer that writes to ``copy`` too; everything else (``tell``, ``seek``, ``read``) is
    ``main``'s: e.g. a document kept in a spool to be read again while it is also sent on."""

    def __init__(self, main: IO[bytes], copy: Any) -> None:
        self._main = main
        self._copy = copy

    def write(self, data: bytes) -> int:
        self._copy.write(data)
        return self._main.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._main, name)


# --------------------------------------------------------------------------- metered reading
class MeteredReader(io.RawIOBase):
    """Reads a source stream while counting and hashing it, and stops at ``limit`` bytes.

    Exceeding the limit raises :class:`FileRejected` (``NARR``) and sets :attr:`exceeded`; an
    error of the source itself is remembered in :attr:`source_error` and raised as
    :class:`SourceReadError`. Both are kept because parsers may wrap whatever a read raises:
    the caller asks the reader afterwards, not the exception.
    """

    def __init__(self, source: BinaryIO, limit: int | None = None) -> None:
        self._source = source
        self.limit = limit
        self.count = 0
        self._hash = hashlib.sha256()
        self.exceeded = False
        self.source_error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.exceeded:
            raise self._too_large()
        try:
            data = self._source.read(len(buffer))
        except Exception as exc:
            self.source_error = exc
            raise SourceReadError(f"reading the uploaded file failed: {exc!r}") from exc
        n = len(data)
        if self.limit is not None and self.count + n > self.limit:
            self.exceeded = True
            raise self._too_large()
        buffer[:n] = data
        self.count += n
        self._hash.update(data)
        return n

    def _too_large(self) -> FileRejected:
        return FileRejected(IsoReason.NARR, f"the file is larger than the limit of {self.limit} bytes; not read")

    def drain(self) -> None:
        """Read to the end (so :meth:`hexdigest` covers the whole file)."""
        buffer = bytearray(1 << 20)
        while self.readinto(buffer):
            pass

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class VerifiedReader(io.RawIOBase):
    """Reads a work file and, at its end, checks size and SHA-256 against what the message said."""

    def __init__(self, source: BinaryIO, sha256: str, size: int, what: str) -> None:
        self._source = source
        self._expected = (sha256, size)
        self._what = what
        self._hash = hashlib.sha256()
        self._count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._source.read(len(buffer))
        n = len(data)
        if n == 0:
            self.verify()
            return 0
        buffer[:n] = data
        self._count += n
        self._hash.update(data)
        return n

    def verify(self) -> None:
        sha256, size = self._expected
        if self._count != size or self._hash.hexdigest() != sha256:
            raise WorkFileCorrupt(
                f"{self._what} is {self._count} bytes with SHA-256 {self._hash.hexdigest()[:16]}..., "
                f"the message says {size} bytes with SHA-256 {sha256[:16]}...: it was changed or truncated"
            )


def read_head(source: BinaryIO, expected_type: str, file_id: str, version: int) -> dict[str, Any]:
    """The checked header line of a work file."""
    head_line = source.readline()
    try:
        head = json.loads(head_line)
    except ValueError:
        raise WorkFileCorrupt(f"{expected_type} work file has no readable header line") from None
    if not isinstance(head, dict) or head.get("k") != expected_type:
        raise WorkFileCorrupt(f"work file is not a {expected_type} file (header {head_line[:80]!r})")
    if head.get("v") != version:
        raise WorkFileCorrupt(f"{expected_type} schema version {head.get('v')!r} is not supported "
                              f"(this step reads version {version})")
    if head.get("fileId") != file_id:
        raise WorkFileCorrupt(f"{expected_type} work file belongs to {head.get('fileId')!r}, not {file_id}")
    return head


def lines(source: BinaryIO, expected_type: str, file_id: str,
          version: int = SCHEMA_VERSION) -> Iterator[dict[str, Any] | list[Any]]:
    """The JSON lines of a work file after its checked header line."""
    yield read_head(source, expected_type, file_id, version)
    for number, line in enumerate(source, start=2):
        try:
            yield json.loads(line)  # bytes: UTF-8 (or -16/-32, which we never write) is detected
        except ValueError:
            raise WorkFileCorrupt(f"{expected_type} line {number} is not JSON") from None


def encode_row(fields: list[str]) -> bytes:
    """One row of a tabular work file: the fields joined by tabs, one line. A row whose fields
    hold a tab or a line break (free text may) is written as a JSON array instead, so every
    value comes back exactly; the first field of a row never starts with ``[`` or ``{``."""
    line = "\t".join(fields)
    if line.count("\t") == len(fields) - 1 and "\n" not in line and "\r" not in line:
        return (line + "\n").encode()
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def decode_row(line: bytes, what: str) -> list[str]:
    """The fields of one :func:`encode_row` line."""
    try:
        if line[:1] != b"[":
            return line.rstrip(b"\n").decode().split("\t")
        row = json.loads(line)
    except ValueError:  # UnicodeDecodeError too
        raise WorkFileCorrupt(f"a {what} line is neither tab-separated UTF-8 nor a JSON array") from None
    if not isinstance(row, list) or not all(isinstance(value, str) for value in row):
        raise WorkFileCorrupt(f"a {what} line is not a JSON array of strings")
    return row


def header_line(kind: str, file_id: str, version: int = SCHEMA_VERSION, **extra: Any) -> bytes:
    return (json.dumps({"k": kind, "v": version, "fileId": file_id, **extra}) + "\n").encode()


# --------------------------------------------------------------------------- validated transactions
_TX_FIELDS = (
    "index", "line", "end_to_end_id", "amount", "currency", "creditor_name", "creditor_iban",
    "creditor_account", "creditor_routing", "creditor_bic", "debtor_account", "requested_execution_date",
    "remittance_info", "instruction_id", "payment_block_id",
)
_NO_FIELDS = len(_TX_FIELDS)


class ValidatedWriter:
    """Writes ``validated.jsonl`` (version 3): a JSON header line, then one row per transaction,
    fields in the order of ``_TX_FIELDS`` as text, tab-separated, with three savings (most
    files hold one debtor, currency, date and block, and consecutive indexes):

    * ``index`` is empty where it is the previous row's index plus one;
    * ``line`` is the source line minus the index (empty: the source has no line numbers);
    * ``currency``, ``debtor_account``, ``requested_execution_date`` and ``payment_block_id``
      are :data:`DITTO` where they equal the previous row's.

    A row whose free text holds a tab or a line break, or whose new value of one of those four
    columns is :data:`DITTO` itself, is a JSON array of the plain (version 2) fields instead.
    """

    def __init__(self, out: BinaryIO, file_id: str) -> None:
        self._write = out.write
        self.count = 0
        self._index = 0
        self._currency: str | None = None
        self._debtor: str | None = None
        self._day: date | bool | None = False  # False: no previous row
        self._day_text = ""
        self._block: str | None = None
        out.write(header_line(VALIDATED, file_id, VALIDATED_VERSION))

    def add(self, tx: Transaction) -> None:
        self.add_run((tx,))

    def add_run(self, txs: Sequence[Transaction]) -> None:
        """:meth:`add` for each of ``txs``, in one write (a run of the validator shares currency,
        debtor, date and block, so most of its rows are dittos)."""
        if not txs:
            return
        # Most runs have no row to write as JSON: they are made as if so, and checked at once
        # (every row has at least the separators' tabs, so the text has exactly that many tabs
        # and line breaks only if no row has more); only a run that fails is made row by row.
        text, state = self._rows(txs, False)
        if text is None:
            text, state = self._rows(txs, True)
        self._write(text.encode())  # type: ignore[union-attr]
        self.count += len(txs)
        self._index, self._currency, self._debtor, self._day, self._day_text, self._block = state

    def _rows(self, txs: Sequence[Transaction], by_row: bool) -> tuple[str | None, tuple[Any, ...]]:
        """The rows of ``txs`` after the rows written so far, and the state after them; not
        ``by_row``: ``None`` if any of them is to be a JSON array."""
        prev_index, prev_ccy, prev_debtor, prev_day, prev_day_text, prev_block = (
            self._index, self._currency, self._debtor, self._day, self._day_text, self._block)
        rows: list[str] = []
        any_literal = False
        for tx in txs:
            index, line, ccy, debtor, day, block = (tx.index, tx.line, tx.currency, tx.debtor_account,
                                                    tx.requested_execution_date, tx.payment_block_id)
            literal = False
            if ccy == prev_ccy:
                ccy_text = DITTO
            else:
                ccy_text = prev_ccy = ccy
                literal = ccy == DITTO
            if debtor == prev_debtor:
                debtor_text = DITTO
            else:
                debtor_text = prev_debtor = debtor
                literal = literal or debtor == DITTO
            if day == prev_day and prev_day is not False:
                day_text = DITTO
            else:
                prev_day = day
                day_text = prev_day_text = day.isoformat() if day is not None else ""
            if block == prev_block:
                block_text = DITTO
            else:
                block_text = prev_block = block
                literal = literal or block == DITTO
            amount = "" if tx.amount is None else format(tx.amount, "f")
            row = "\t".join((
                "" if index == prev_index + 1 else str(index), "" if line is None else str(line - index),
                tx.end_to_end_id, amount, ccy_text, tx.creditor_name, tx.creditor_iban, tx.creditor_account,
                tx.creditor_routing, tx.creditor_bic, debtor_text, day_text, tx.remittance_info, tx.instruction_id,
                block_text))
            prev_index = index
            if not by_row:
                any_literal = any_literal or literal
                rows.append(row)
            elif literal or row.count("\t") != _NO_FIELDS - 1 or "\n" in row or "\r" in row:
                rows.append(json.dumps([
                    str(index), "" if line is None else str(line), tx.end_to_end_id, amount, ccy, tx.creditor_name,
                    tx.creditor_iban, tx.creditor_account, tx.creditor_routing, tx.creditor_bic, debtor,
                    prev_day_text, tx.remittance_info, tx.instruction_id, block,
                ], ensure_ascii=False, separators=(",", ":")))
            else:
                rows.append(row)
        rows.append("")
        text = "\n".join(rows)
        n = len(txs)
        if not by_row and (any_literal or text.count("\t") != n * (_NO_FIELDS - 1) or text.count("\n") != n
                           or "\r" in text):
            return None, ()
        return text, (prev_index, prev_ccy, prev_debtor, prev_day, prev_day_text, prev_block)


def read_validated(source: BinaryIO, file_id: str) -> Iterator[Transaction]:
    """The transactions of ``validated.jsonl`` (see :class:`ValidatedWriter`)."""
    read_head(source, VALIDATED, file_id, VALIDATED_VERSION)
    index = 0
    ccy = debtor = block = ""  # a DITTO before any value: no currency, no account -> corrupt downstream
    day: date | None = None
    days: dict[str, date] = {}
    for raw in source:
        if raw[:1] == b"[":
            row = decode_row(raw, "validated transaction")
            literal = True
        else:
            try:
                row = raw.rstrip(b"\n").decode().split("\t")
            except ValueError:
                raise WorkFileCorrupt("a validated transaction line is neither tab-separated UTF-8 "
                                      "nor a JSON array") from None
            literal = False
        if len(row) != _NO_FIELDS:
            raise WorkFileCorrupt("a validated transaction line does not have the expected fields")
        index_text, line_text, e2e, amount, c, name, iban, account, routing, bic, d, day_text, remittance, instr, b = (
            row)
        try:
            if literal:
                index = int(index_text)
                line = int(line_text) if line_text else None
                ccy, debtor, block = c, d, b
            else:
                index = index + 1 if not index_text else int(index_text)
                line = index + int(line_text) if line_text else None
                if c != DITTO:
                    ccy = c
                if d != DITTO:
                    debtor = d
                if b != DITTO:
                    block = b
            if literal or day_text != DITTO:
                day = days.get(day_text)
                if day is None:
                    day = days[day_text] = date.fromisoformat(day_text)
            tx = Transaction(index, line, e2e, Decimal(amount), ccy, name, iban, account, routing, bic, debtor, "",
                             day, remittance, instr, block)
        except (ValueError, InvalidOperation):
            raise WorkFileCorrupt(f"validated transaction {index_text or index} has no usable amount/date") from None
        yield tx


# --------------------------------------------------------------------------- rejections
def write_rejections(out: BinaryIO, file_id: str, rejections: Iterable[Rejection]) -> int:
    out.write(header_line(REJECTIONS, file_id))
    n = 0
    for rejection in rejections:
        out.write(rejection.to_json().encode("utf-8") + b"\n")
        n += 1
    return n


def read_rejections(source: BinaryIO, file_id: str) -> Iterator[Rejection]:
    rows = lines(source, REJECTIONS, file_id)
    next(rows)
    for row in rows:
        try:
            yield Rejection.from_json(json.dumps(row))
        except (TypeError, ValueError):
            raise WorkFileCorrupt("a rejection line does not have the expected fields") from None
