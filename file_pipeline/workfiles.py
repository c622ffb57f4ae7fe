"""Work files: what the steps hand each other through Blob Storage (claim check), and the
streams that read uploads. Pure Python, no Azure: the adapters move the bytes.

Every work file is UTF-8 JSON lines whose first line names its type, schema version and file
id, so a step never mistakes one file's work for another's, and an unknown version is a
permanent failure with a reason (:class:`WorkFileCorrupt`), never a crash loop:

``validated.jsonl`` (FileValidator -> FileAdaptor)
    ``{"k": "ValidatedTransactions", "v": 1, "fileId": ...}`` then one line per transaction
    that passed every rule, debtor account and execution date resolved.
``rejections.jsonl`` (FileValidator -> FileCreator, for the pain.002 of a partly accepted file)
    ``{"k": "Rejections", "v": 1, "fileId": ...}`` then one
    :meth:`~file_pipeline.domain.validator.Rejection.to_json` line per rejected transaction.
``instructions.jsonl`` (FileAdaptor -> FileCreator): the canonical payment instructions
    ``{"k": "PaymentInstructions", "v": 1, "fileId", "msgId", "createdAt", "initiatingParty",
    "nbOfTxs", "ctrlSum", "blocks"}``, then per block (debtor account, currency, execution date)
    a ``{"k": "block", ...}`` line with its totals and debtor details, then its ``{"k": "tx"}``
    lines, amounts already rounded to the currency's minor units.

Each message that points at a work file also carries its SHA-256 and size; the reader checks
both, so a truncated or tampered work file is caught before anything is written from it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import IO, Any, BinaryIO

from file_pipeline.domain.model import FileRejected, Transaction
from file_pipeline.domain.reason_codes import ReasonCode
from file_pipeline.domain.reference import Client, DebtorAccount, ReferenceData
from file_pipeline.domain.validator import Rejection
from file_pipeline.formats.pain001_writer import (
    DOCUMENT_TAIL,
    PAYMENT_INFO_TAIL,
    charge_bearer,
    document_head,
    payment_info_head,
    payment_info_id,
    render_transaction,
)

VALIDATED = "ValidatedTransactions"
REJECTIONS = "Rejections"
INSTRUCTIONS = "PaymentInstructions"
SCHEMA_VERSION = 1
SPOOL_IN_MEMORY = 8 << 20  # a work file below this stays in memory; above, it spills to disk
_QUANTUM = {n: Decimal(1).scaleb(-n) for n in range(0, 6)}


class WorkFileCorrupt(Exception):
    """A work file is not what its message says (type, version, file id, hash, totals)."""


class SourceReadError(Exception):
    """Reading the uploaded blob failed (storage, network): transient, retry the whole step."""


def spool(spool_dir: str | None = None) -> IO[bytes]:
    """A temporary binary file: memory first, disk beyond :data:`SPOOL_IN_MEMORY`."""
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, mode="w+b", dir=spool_dir)


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
        return FileRejected(ReasonCode.NARR, f"the file is larger than the limit of {self.limit} bytes; not read")

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


def lines(source: BinaryIO, expected_type: str, file_id: str) -> Iterator[dict[str, Any] | list[Any]]:
    """The JSON lines of a work file after its checked header line."""
    head_line = source.readline()
    try:
        head = json.loads(head_line)
    except ValueError:
        raise WorkFileCorrupt(f"{expected_type} work file has no readable header line") from None
    if not isinstance(head, dict) or head.get("k") != expected_type:
        raise WorkFileCorrupt(f"work file is not a {expected_type} file (header {head_line[:80]!r})")
    if head.get("v") != SCHEMA_VERSION:
        raise WorkFileCorrupt(f"{expected_type} schema version {head.get('v')!r} is not supported "
                              f"(this step reads version {SCHEMA_VERSION})")
    if head.get("fileId") != file_id:
        raise WorkFileCorrupt(f"{expected_type} work file belongs to {head.get('fileId')!r}, not {file_id}")
    yield head
    for number, line in enumerate(source, start=2):
        try:
            yield json.loads(line)  # bytes: UTF-8 (or -16/-32, which we never write) is detected
        except ValueError:
            raise WorkFileCorrupt(f"{expected_type} line {number} is not JSON") from None


def _header(kind: str, file_id: str, **extra: Any) -> bytes:
    return (json.dumps({"k": kind, "v": SCHEMA_VERSION, "fileId": file_id, **extra}) + "\n").encode()


# --------------------------------------------------------------------------- validated transactions
_TX_FIELDS = (
    "index", "line", "end_to_end_id", "amount", "currency", "creditor_name", "creditor_iban",
    "creditor_account", "creditor_routing", "creditor_bic", "debtor_account", "requested_execution_date",
    "remittance_info", "instruction_id", "payment_block_id",
)


class ValidatedWriter:
    """Writes ``validated.jsonl``: one compact JSON array per transaction (field order above)."""

    def __init__(self, out: BinaryIO, file_id: str) -> None:
        self._out = out
        self.count = 0
        out.write(_header(VALIDATED, file_id))

    def add(self, tx: Transaction) -> None:
        row = [
            tx.index, tx.line, tx.end_to_end_id, format(tx.amount, "f") if tx.amount is not None else None,
            tx.currency, tx.creditor_name, tx.creditor_iban, tx.creditor_account, tx.creditor_routing,
            tx.creditor_bic, tx.debtor_account,
            tx.requested_execution_date.isoformat() if tx.requested_execution_date else None,
            tx.remittance_info, tx.instruction_id, tx.payment_block_id,
        ]
        self._out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")
        self.count += 1


def read_validated(source: BinaryIO, file_id: str) -> Iterator[Transaction]:
    rows = lines(source, VALIDATED, file_id)
    next(rows)
    for row in rows:
        if not isinstance(row, list) or len(row) != len(_TX_FIELDS):
            raise WorkFileCorrupt("a validated transaction line does not have the expected fields")
        values = dict(zip(_TX_FIELDS, row, strict=True))
        try:
            values["amount"] = Decimal(values["amount"])
            values["requested_execution_date"] = date.fromisoformat(values["requested_execution_date"])
        except (TypeError, ValueError, InvalidOperation):
            raise WorkFileCorrupt(f"validated transaction {values.get('index')} has no usable amount/date") from None
        yield Transaction(**values)


# --------------------------------------------------------------------------- rejections
def write_rejections(out: BinaryIO, file_id: str, rejections: Iterable[Rejection]) -> int:
    out.write(_header(REJECTIONS, file_id))
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


# --------------------------------------------------------------------------- canonical instructions
@dataclass
class _Block:
    key: tuple[str, str, date]
    path: str
    count: int = 0
    total: Decimal = Decimal(0)


@dataclass(frozen=True)
class InstructionsSummary:
    nb_of_txs: int
    ctrl_sum: Decimal
    blocks: int


class InstructionsBuilder:
    """FileAdaptor's transformation: validated transactions -> canonical payment instructions,
    grouped by (debtor account, currency, requested execution date).

    Transactions arrive in file order; each is appended to its group's spool file as soon as
    it is added, so memory holds only per-group counters (at most ``max_open_files`` spool
    handles are open at once). :meth:`write_to` then emits the header with the totals, and the
    groups one after the other in a stable order.
    """

    def __init__(self, ref: ReferenceData, client: Client, *, file_id: str, created: datetime,
                 spool_dir: str | None = None, max_open_files: int = 64) -> None:
        self.ref = ref
        self.client = client
        self.file_id = file_id
        self.created = created
        self._tmp = tempfile.TemporaryDirectory(prefix="instructions-", dir=spool_dir)
        self._blocks: dict[tuple[str, str, date], _Block] = {}
        self._open: OrderedDict[tuple[str, str, date], BinaryIO] = OrderedDict()
        self._max_open = max_open_files
        self.count = 0
        self.total = Decimal(0)

    def _handle(self, key: tuple[str, str, date]) -> tuple[_Block, BinaryIO]:
        block = self._blocks.get(key)
        if block is None:
            block = _Block(key, os.path.join(self._tmp.name, f"b{len(self._blocks):06d}.jsonl"))
            self._blocks[key] = block
        fh = self._open.get(key)
        if fh is not None:
            self._open.move_to_end(key)
            return block, fh
        if len(self._open) >= self._max_open:
            _, old = self._open.popitem(last=False)
            old.close()
        fh = open(block.path, "ab")  # noqa: SIM115 - kept open across calls, closed in _close_all
        self._open[key] = fh
        return block, fh

    def add(self, tx: Transaction) -> None:
        currency = self.ref.currencies.get(tx.currency)
        if currency is None or tx.amount is None or tx.requested_execution_date is None:
            raise WorkFileCorrupt(f"validated transaction {tx.index} has an unknown currency or no amount/date")
        if self.client.account(tx.debtor_account) is None:
            raise WorkFileCorrupt(f"validated transaction {tx.index}: {tx.debtor_account!r} is not an account "
                                  f"of client {self.client.client_id}")
        amount = tx.amount.quantize(_QUANTUM[currency.minor_units])
        key = (tx.debtor_account, tx.currency, tx.requested_execution_date)
        block, fh = self._handle(key)
        row = {
            "k": "tx", "e2e": tx.end_to_end_id, "instr": tx.instruction_id, "amt": format(amount, "f"),
            "ccy": tx.currency, "name": tx.creditor_name, "iban": tx.creditor_iban, "acct": tx.creditor_account,
            "aba": tx.creditor_routing, "bic": tx.creditor_bic, "rmt": tx.remittance_info, "src": tx.index,
        }
        fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")
        block.count += 1
        block.total += amount
        self.count += 1
        self.total += amount

    def write_to(self, out: BinaryIO) -> InstructionsSummary:
        if self.count == 0:
            raise WorkFileCorrupt("there is no validated transaction to turn into instructions")
        self._close_all()
        out.write(_header(INSTRUCTIONS, self.file_id, msgId=self.file_id, createdAt=self.created.isoformat(),
                          initiatingParty=self.client.name, nbOfTxs=self.count, ctrlSum=format(self.total, "f"),
                          blocks=len(self._blocks)))
        for ordinal, key in enumerate(sorted(self._blocks), start=1):
            block = self._blocks[key]
            account_id, currency, day = key
            account = self.client.account(account_id)
            assert account is not None  # checked in add()
            head = {
                "k": "block", "pmtInfId": payment_info_id(self.file_id, ordinal), "debtorAccount": account.id,
                "debtorAccountCurrency": account.currency, "debtorBic": account.bic, "debtorAba": account.aba,
                "debtorName": self.client.name, "currency": currency,
                "minorUnits": self.ref.currencies[currency].minor_units, "executionDate": day.isoformat(),
                "chargeBearer": charge_bearer(currency, account), "nbOfTxs": block.count,
                "ctrlSum": format(block.total, "f"),
            }
            out.write(json.dumps(head, ensure_ascii=False).encode("utf-8") + b"\n")
            with open(block.path, "rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 20)
        return InstructionsSummary(self.count, self.total, len(self._blocks))

    def _close_all(self) -> None:
        for fh in self._open.values():
            fh.close()
        self._open.clear()

    def close(self) -> None:
        self._close_all()
        self._tmp.cleanup()

    def __enter__(self) -> InstructionsBuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Pain001Written:
    msg_id: str
    nb_of_txs: int
    ctrl_sum: Decimal
    blocks: int


def render_pain001(instructions: BinaryIO, out: BinaryIO, file_id: str) -> Pain001Written:
    """FileCreator's rendering: canonical instructions -> pain.001.001.09, in one streaming pass.

    Every declared total (per block and for the file) is recomputed while rendering; a
    mismatch is :class:`WorkFileCorrupt`. The caller validates the result against the XSD.
    """
    rows = lines(instructions, INSTRUCTIONS, file_id)
    head = next(rows)
    assert isinstance(head, dict)
    try:
        msg_id, declared_count = str(head["msgId"]), int(head["nbOfTxs"])
        declared_sum, declared_blocks = Decimal(head["ctrlSum"]), int(head["blocks"])
        created = datetime.fromisoformat(head["createdAt"])
        out.write(document_head(msg_id, created, declared_count, declared_sum, str(head["initiatingParty"])))
    except (KeyError, TypeError, ValueError, InvalidOperation):
        raise WorkFileCorrupt("instructions header lacks msgId, createdAt, totals or initiating party") from None
    count, total, blocks = 0, Decimal(0), 0
    block: dict[str, Any] | None = None
    block_count, block_total, minor_units = 0, Decimal(0), 2

    def close_block() -> None:
        if block is None:
            return
        if block_count != int(block["nbOfTxs"]) or block_total != Decimal(block["ctrlSum"]):
            raise WorkFileCorrupt(f"block {block['pmtInfId']} declares {block['nbOfTxs']} / {block['ctrlSum']}, "
                                  f"its transactions make {block_count} / {block_total}")
        out.write(PAYMENT_INFO_TAIL)

    try:
        for row in rows:
            if not isinstance(row, dict):
                raise WorkFileCorrupt("an instructions line is not a JSON object")
            kind = row.get("k")
            if kind == "block":
                close_block()
                block, block_count, block_total = row, 0, Decimal(0)
                blocks += 1
                minor_units = int(row["minorUnits"])
                account = DebtorAccount(row["debtorAccount"], row["debtorAccountCurrency"], row["debtorBic"],
                                        row["debtorAba"])
                out.write(payment_info_head(row["pmtInfId"], int(row["nbOfTxs"]), Decimal(row["ctrlSum"]),
                                            date.fromisoformat(row["executionDate"]), row["debtorName"], account,
                                            row["chargeBearer"]))
            elif kind == "tx" and block is not None:
                amount = Decimal(row["amt"])
                if row["ccy"] != block["currency"]:
                    raise WorkFileCorrupt(f"transaction {row['e2e']!r} is in {row['ccy']}, its block in "
                                          f"{block['currency']}")
                tx = Transaction(
                    index=int(row.get("src", 0)), line=None, end_to_end_id=row["e2e"], amount=amount,
                    currency=row["ccy"], creditor_name=row["name"], creditor_iban=row["iban"],
                    creditor_account=row["acct"], creditor_routing=row["aba"], creditor_bic=row["bic"],
                    remittance_info=row["rmt"], instruction_id=row["instr"],
                )
                out.write(render_transaction(tx, minor_units).encode("utf-8"))
                block_count += 1
                block_total += amount
                count += 1
                total += amount
            else:
                raise WorkFileCorrupt(f"unexpected instructions line of kind {kind!r}")
        close_block()
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise WorkFileCorrupt(f"an instructions line is incomplete: {exc!r}") from None
    if (count, total, blocks) != (declared_count, declared_sum, declared_blocks):
        raise WorkFileCorrupt(f"instructions declare {declared_count} transactions / {declared_sum} in "
                              f"{declared_blocks} blocks, they hold {count} / {total} in {blocks}")
    out.write(DOCUMENT_TAIL)
    return Pain001Written(msg_id, count, total, blocks)
