"""Streaming writer of ISO 20022 pain.001.001.09 (customer credit transfer initiation).

Design choice — spool, then assemble. pain.001 puts ``NbOfTxs``/``CtrlSum``
in the group header and in every ``PmtInf`` block *before* the transactions,
and transactions must be grouped into blocks by (debtor account, currency,
requested execution date), while input files arrive in any order. The writer
therefore renders each ``CdtTrfTxInf`` as soon as it is added and appends it to
a per-group temporary spool file, keeping only counters per group in memory;
:meth:`Pain001Writer.write_to` then writes the header and copies the spools
block after block. Memory is independent of the number of transactions (it is
proportional to the number of groups, with at most ``max_open_files`` spool
handles open at a time); disk use is about the size of the output.

Input transactions must have passed the rules (the writer does not re-check
IBANs, lengths, decimals) and must carry a resolved ``debtor_account`` and
``requested_execution_date`` (:class:`~file_pipeline.domain.validator.FileValidation`
does that). Use :func:`file_pipeline.formats.xsd.validate_stream` to validate
the output against the official XSD.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import BinaryIO

from file_pipeline.domain.model import Transaction
from file_pipeline.domain.reference import DebtorAccount
from file_pipeline.formats.xmltext import clip, esc, fmt_decimal

NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"
MESSAGE = "pain.001.001.09"
_QUANTUM = {n: Decimal(1).scaleb(-n) for n in range(0, 6)}


@dataclass
class _Group:
    key: tuple[str, str, date]
    path: str
    count: int = 0
    total: Decimal = Decimal(0)


@dataclass
class Pain001Summary:
    msg_id: str
    nb_of_txs: int
    ctrl_sum: Decimal
    blocks: list[tuple[str, str, str, date, int, Decimal]] = field(default_factory=list)
    # (PmtInfId, debtor account, currency, date, NbOfTxs, CtrlSum)


def _agent(bic: str, aba: str) -> str:
    parts = []
    if bic:
        parts.append(f"<BICFI>{esc(bic)}</BICFI>")
    if aba:
        parts.append(
            f"<ClrSysMmbId><ClrSysId><Cd>USABA</Cd></ClrSysId><MmbId>{esc(aba)}</MmbId></ClrSysMmbId>"
        )
    return f"<FinInstnId>{''.join(parts)}</FinInstnId>"


def _account(account_id: str, is_iban: bool) -> str:
    if is_iban:
        return f"<Id><IBAN>{esc(account_id)}</IBAN></Id>"
    return f"<Id><Othr><Id>{esc(account_id)}</Id></Othr></Id>"


def render_transaction(tx: Transaction, minor_units: int) -> str:
    """One ``CdtTrfTxInf`` element (no surrounding whitespace)."""
    return render_credit_transfer(tx.end_to_end_id, tx.instruction_id, f"{tx.amount:.{minor_units}f}", tx.currency,
                                  tx.creditor_name, tx.creditor_iban, tx.creditor_account, tx.creditor_routing,
                                  tx.creditor_bic, tx.remittance_info)


_MARKUP = re.compile("[&<>\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def render_credit_transfer(end_to_end_id: str, instruction_id: str, amount: str, currency: str, creditor_name: str,
                           creditor_iban: str, creditor_account: str, routing: str, bic: str, remittance: str) -> str:
    """One ``CdtTrfTxInf`` element from its text fields (``amount`` already formatted)."""
    if _MARKUP.search(f"{end_to_end_id}{instruction_id}{creditor_name}{creditor_account}{routing}{bic}{remittance}"):
        end_to_end_id, instruction_id, creditor_name = esc(end_to_end_id), esc(instruction_id), esc(creditor_name)
        creditor_account, routing, bic, remittance = esc(creditor_account), esc(routing), esc(bic), esc(remittance)
    instr = f"<InstrId>{instruction_id}</InstrId>" if instruction_id else ""
    agent = ""
    if bic or routing:
        agent = "<CdtrAgt><FinInstnId>"
        if bic:
            agent += f"<BICFI>{bic}</BICFI>"
        if routing:
            agent += f"<ClrSysMmbId><ClrSysId><Cd>USABA</Cd></ClrSysId><MmbId>{routing}</MmbId></ClrSysMmbId>"
        agent += "</FinInstnId></CdtrAgt>"
    if creditor_iban:
        account = f"<Id><IBAN>{creditor_iban}</IBAN></Id>"
    else:
        account = f"<Id><Othr><Id>{creditor_account}</Id></Othr></Id>"
    remittance = f"<RmtInf><Ustrd>{remittance}</Ustrd></RmtInf>" if remittance else ""
    return (f"<CdtTrfTxInf><PmtId>{instr}<EndToEndId>{end_to_end_id}</EndToEndId></PmtId>"
            f'<Amt><InstdAmt Ccy="{currency}">{amount}</InstdAmt></Amt>{agent}<Cdtr><Nm>{creditor_name}</Nm></Cdtr>'
            f"<CdtrAcct>{account}</CdtrAcct>{remittance}</CdtTrfTxInf>\n")


PAYMENT_INFO_TAIL = b"</PmtInf>\n"
DOCUMENT_TAIL = b"</CstmrCdtTrfInitn>\n</Document>\n"


def document_head(msg_id: str, created: datetime, nb_of_txs: int, ctrl_sum: Decimal, initiating_party: str) -> bytes:
    """XML declaration, ``Document`` start and the complete ``GrpHdr``."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Document xmlns="{NAMESPACE}">\n<CstmrCdtTrfInitn>\n'
        f"<GrpHdr><MsgId>{esc(msg_id)}</MsgId>"
        f"<CreDtTm>{created.isoformat(timespec='seconds')}</CreDtTm>"
        f"<NbOfTxs>{nb_of_txs}</NbOfTxs><CtrlSum>{fmt_decimal(ctrl_sum)}</CtrlSum>"
        f"<InitgPty><Nm>{esc(clip(initiating_party, 140))}</Nm></InitgPty></GrpHdr>\n"
    ).encode()


def payment_info_id(msg_id: str, ordinal: int) -> str:
    """``PmtInfId`` of the ``ordinal``-th block (1-based): at most 35 characters."""
    return f"{clip(msg_id, 26)}-{ordinal:08d}"


def charge_bearer(currency: str, account: DebtorAccount) -> str:
    """SEPA credit transfers share charges by service level; everything else shares them."""
    return "SLEV" if currency == "EUR" and account.is_iban else "SHAR"


def payment_info_head(
    pmt_inf_id: str,
    nb_of_txs: int,
    ctrl_sum: Decimal,
    execution_date: date,
    debtor_name: str,
    account: DebtorAccount,
    charge_bearer_code: str,
) -> bytes:
    """``PmtInf`` start up to ``ChrgBr``; the block's ``CdtTrfTxInf`` elements and
    :data:`PAYMENT_INFO_TAIL` follow."""
    return (
        f"<PmtInf><PmtInfId>{esc(pmt_inf_id)}</PmtInfId><PmtMtd>TRF</PmtMtd>"
        f"<NbOfTxs>{nb_of_txs}</NbOfTxs><CtrlSum>{fmt_decimal(ctrl_sum)}</CtrlSum>"
        f"<ReqdExctnDt><Dt>{execution_date.isoformat()}</Dt></ReqdExctnDt>"
        f"<Dbtr><Nm>{esc(clip(debtor_name, 140))}</Nm></Dbtr>"
        f"<DbtrAcct>{_account(account.id, account.is_iban)}</DbtrAcct>"
        f"<DbtrAgt>{_agent(account.bic, account.aba)}</DbtrAgt>"
        f"<ChrgBr>{charge_bearer_code}</ChrgBr>\n"
    ).encode()


class Pain001Writer:
    """Collect validated transactions, then write one pain.001.001.09 document.

    ``accounts`` maps a debtor account id to the client's :class:`DebtorAccount`
    (for ``DbtrAcct``/``DbtrAgt``); ``minor_units`` maps currency -> decimals.
    """

    def __init__(
        self,
        *,
        msg_id: str,
        created: datetime,
        initiating_party: str,
        debtor_name: str,
        accounts: Mapping[str, DebtorAccount],
        minor_units: Mapping[str, int],
        spool_dir: str | None = None,
        max_open_files: int = 64,
    ) -> None:
        if not 1 <= len(msg_id) <= 35:
            raise ValueError("MsgId must have 1..35 characters")
        if created.tzinfo is None:
            raise ValueError("created must be timezone-aware")
        self.msg_id = msg_id
        self.created = created
        self.initiating_party = initiating_party
        self.debtor_name = debtor_name
        self.accounts = accounts
        self.minor_units = minor_units
        self._spool_dir = spool_dir
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._groups: dict[tuple[str, str, date], _Group] = {}
        self._open: OrderedDict[tuple[str, str, date], BinaryIO] = OrderedDict()
        self._max_open = max_open_files
        self.count = 0
        self.total = Decimal(0)

    # -- spooling
    def _handle(self, key: tuple[str, str, date]) -> tuple[_Group, BinaryIO]:
        fh = self._open.get(key)
        group = self._groups.get(key)
        if fh is not None:
            self._open.move_to_end(key)
            return group, fh
        if group is None:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="pain001-", dir=self._spool_dir)
            group = _Group(key, os.path.join(self._tmp.name, f"g{len(self._groups):06d}.xml"))
            self._groups[key] = group
        if len(self._open) >= self._max_open:
            _, old = self._open.popitem(last=False)
            old.close()
        fh = open(group.path, "ab")
        self._open[key] = fh
        return group, fh

    def add(self, tx: Transaction) -> None:
        if tx.amount is None or tx.requested_execution_date is None or not tx.debtor_account:
            raise ValueError(f"transaction {tx.index} is not resolved (amount, date, debtor account)")
        if tx.debtor_account not in self.accounts:
            raise ValueError(f"transaction {tx.index}: unknown debtor account {tx.debtor_account!r}")
        key = (tx.debtor_account, tx.currency, tx.requested_execution_date)
        group, fh = self._handle(key)
        minor_units = self.minor_units[tx.currency]
        amount = tx.amount.quantize(_QUANTUM[minor_units])  # 15000 EUR -> 15000.00, as written
        fh.write(render_transaction(tx, minor_units).encode("utf-8"))
        group.count += 1
        group.total += amount
        self.count += 1
        self.total += amount

    def add_all(self, transactions: Iterable[Transaction]) -> None:
        for tx in transactions:
            self.add(tx)

    # -- assembly
    def write_to(self, out: BinaryIO) -> Pain001Summary:
        """Write the document to ``out``; may be called once. Needs at least one transaction."""
        if self.count == 0:
            raise ValueError("a pain.001 needs at least one transaction (PmtInf is mandatory)")
        for fh in self._open.values():
            fh.close()
        self._open.clear()
        summary = Pain001Summary(self.msg_id, self.count, self.total)
        w = out.write
        w(document_head(self.msg_id, self.created, self.count, self.total, self.initiating_party))
        for i, key in enumerate(sorted(self._groups), start=1):
            group = self._groups[key]
            account_id, currency, day = key
            acc = self.accounts[account_id]
            pmt_inf_id = payment_info_id(self.msg_id, i)
            w(
                payment_info_head(
                    pmt_inf_id, group.count, group.total, day, self.debtor_name, acc, charge_bearer(currency, acc)
                )
            )
            with open(group.path, "rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 20)
            w(PAYMENT_INFO_TAIL)
            summary.blocks.append((pmt_inf_id, account_id, currency, day, group.count, group.total))
        w(DOCUMENT_TAIL)
        self.close()
        return summary

    def close(self) -> None:
        for fh in self._open.values():
            fh.close()
        self._open.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "Pain001Writer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
