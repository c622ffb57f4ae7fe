"""The canonical payment instructions (``instructions.jsonl``, FileAdaptor -> FileCreator; see
:mod:`file_pipeline.workfiles` for the format) and the pain.001.001.09 FileCreator renders from
them, block by block, in one pass."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, BinaryIO

from file_pipeline.domain.model import Transaction
from file_pipeline.domain.reference import Client, DebtorAccount, ReferenceData
from file_pipeline.formats.pain001_writer import (
    DOCUMENT_TAIL,
    PAYMENT_INFO_TAIL,
    charge_bearer,
    document_head,
    payment_info_head,
    payment_info_id,
    render_credit_transfer,
)
from file_pipeline.workfiles import (
    INSTRUCTIONS,
    INSTRUCTIONS_VERSION,
    QUANTUM,
    WorkFileCorrupt,
    decode_row,
    encode_row,
    header_line,
    read_head,
)


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
        # the group of the previous transaction (most files: one), checked when it changes
        self._key: tuple[Any, Any, Any] = (None, None, None)
        self._block: _Block | None = None
        self._write: Any = None
        self._quantum = Decimal(1)

    @property
    def count(self) -> int:
        return sum(block.count for block in self._blocks.values())

    @property
    def total(self) -> Decimal:
        return sum((block.total for block in self._blocks.values()), Decimal(0))

    def _switch(self, index: int, debtor: str, ccy: str, day: date | None) -> None:
        """Make (debtor, ccy, day) the current group, checking it first."""
        currency = self.ref.currencies.get(ccy)
        if currency is None or not isinstance(day, date):
            raise WorkFileCorrupt(f"validated transaction {index} has an unknown currency or no amount/date")
        if self.client.account(debtor) is None:
            raise WorkFileCorrupt(f"validated transaction {index}: {debtor!r} is not an account "
                                  f"of client {self.client.client_id}")
        key = (debtor, ccy, day)
        block = self._blocks.get(key)
        if block is None:
            block = _Block(key, os.path.join(self._tmp.name, f"b{len(self._blocks):06d}.jsonl"))
            self._blocks[key] = block
        fh = self._open.get(key)
        if fh is not None:
            self._open.move_to_end(key)
        else:
            if len(self._open) >= self._max_open:
                _, old = self._open.popitem(last=False)
                old.close()
            fh = open(block.path, "ab")  # noqa: SIM115 - kept open across calls, closed in _close_all
            self._open[key] = fh
        self._key, self._block, self._write = key, block, fh.write
        self._quantum = QUANTUM[currency.minor_units]

    def add(self, tx: Transaction) -> None:
        """Add one validated transaction (resolved debtor account and execution date)."""
        debtor, ccy, day = tx.debtor_account, tx.currency, tx.requested_execution_date
        key = self._key
        if debtor != key[0] or ccy != key[1] or day != key[2]:
            self._switch(tx.index, debtor, ccy, day)
        try:
            amount = tx.amount.quantize(self._quantum)  # type: ignore[union-attr]
            if not amount.is_finite():
                raise InvalidOperation
        except (AttributeError, InvalidOperation):
            raise WorkFileCorrupt(f"validated transaction {tx.index} has no usable amount") from None
        self._write(encode_row(["t", tx.end_to_end_id, tx.instruction_id, format(amount, "f"), ccy, tx.creditor_name,
                                tx.creditor_iban, tx.creditor_account, tx.creditor_routing, tx.creditor_bic,
                                tx.remittance_info, str(tx.index)]))
        block = self._block
        block.count += 1  # type: ignore[union-attr]
        block.total += amount  # type: ignore[union-attr]

    def write_to(self, out: BinaryIO) -> InstructionsSummary:
        count, total = self.count, self.total
        if count == 0:
            raise WorkFileCorrupt("there is no validated transaction to turn into instructions")
        self._close_all()
        out.write(header_line(INSTRUCTIONS, self.file_id, INSTRUCTIONS_VERSION, msgId=self.file_id,
                          createdAt=self.created.isoformat(), initiatingParty=self.client.name,
                          nbOfTxs=count, ctrlSum=format(total, "f"), blocks=len(self._blocks)))
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
        return InstructionsSummary(count, total, len(self._blocks))

    def _close_all(self) -> None:
        for fh in self._open.values():
            fh.close()
        self._open.clear()
        self._key, self._block, self._write = (None, None, None), None, None

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
    head = read_head(instructions, INSTRUCTIONS, file_id, INSTRUCTIONS_VERSION)
    try:
        msg_id, declared_count = str(head["msgId"]), int(head["nbOfTxs"])
        declared_sum, declared_blocks = Decimal(head["ctrlSum"]), int(head["blocks"])
        created = datetime.fromisoformat(head["createdAt"])
        out.write(document_head(msg_id, created, declared_count, declared_sum, str(head["initiatingParty"])))
    except (KeyError, TypeError, ValueError, InvalidOperation):
        raise WorkFileCorrupt("instructions header lacks msgId, createdAt, totals or initiating party") from None
    count, total, blocks = 0, Decimal(0), 0
    block: dict[str, Any] | None = None
    block_count, block_total, minor_units, block_currency = 0, Decimal(0), 2, ""
    pending: list[str] = []  # rendered transactions, written in batches (fewer, larger writes)
    add = pending.append

    def write(data: bytes) -> None:
        if pending:
            out.write("".join(pending).encode())
            pending.clear()
        out.write(data)

    def close_block() -> None:
        if block is None:
            return
        if block_count != int(block["nbOfTxs"]) or block_total != Decimal(block["ctrlSum"]):
            raise WorkFileCorrupt(f"block {block['pmtInfId']} declares {block['nbOfTxs']} / {block['ctrlSum']}, "
                                  f"its transactions make {block_count} / {block_total}")
        write(PAYMENT_INFO_TAIL)

    try:
        for line in instructions:
            if line[:1] == b"{":
                try:
                    row = json.loads(line)
                except ValueError:
                    raise WorkFileCorrupt("an instructions line is not JSON") from None
                kind = row.get("k") if isinstance(row, dict) else None
                if kind != "block":
                    raise WorkFileCorrupt(f"unexpected instructions line of kind {kind!r}")
                close_block()
                block, block_count, block_total = row, 0, Decimal(0)
                blocks += 1
                minor_units, block_currency = int(row["minorUnits"]), row["currency"]
                account = DebtorAccount(row["debtorAccount"], row["debtorAccountCurrency"], row["debtorBic"],
                                        row["debtorAba"])
                write(payment_info_head(row["pmtInfId"], int(row["nbOfTxs"]), Decimal(row["ctrlSum"]),
                                        date.fromisoformat(row["executionDate"]), row["debtorName"], account,
                                        row["chargeBearer"]))
                continue
            fields = decode_row(line, "instructions")
            if fields[0] != "t":
                raise WorkFileCorrupt(f"unexpected instructions line of kind {fields[0][:20]!r}")
            if len(fields) != 12:
                raise WorkFileCorrupt(f"an instructions line is incomplete ({len(fields)} of 12 fields)")
            if block is None:
                raise WorkFileCorrupt("a transaction comes before any block")
            _, e2e, instr, amount_text, ccy, name, iban, account_no, routing, bic, remittance, _ = fields
            amount = Decimal(amount_text)
            if ccy != block_currency:
                raise WorkFileCorrupt(f"transaction {e2e!r} is in {ccy}, its block in {block_currency}")
            add(render_credit_transfer(e2e, instr, format(amount, f".{minor_units}f"), ccy, name, iban,
                                       account_no, routing, bic, remittance))
            if len(pending) >= 512:
                out.write("".join(pending).encode())
                pending.clear()
            block_count += 1
            block_total += amount
            count += 1
            total += amount
        close_block()
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise WorkFileCorrupt(f"an instructions line is incomplete: {exc!r}") from None
    if (count, total, blocks) != (declared_count, declared_sum, declared_blocks):
        raise WorkFileCorrupt(f"instructions declare {declared_count} transactions / {declared_sum} in "
                              f"{declared_blocks} blocks, they hold {count} / {total} in {blocks}")
    out.write(DOCUMENT_TAIL)
    return Pain001Written(msg_id, count, total, blocks)
