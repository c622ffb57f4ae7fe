"""The pieces of an ISO 20022 pain.001.001.09 (customer credit transfer initiation) that
FileCreator assembles (:func:`file_pipeline.instructions.render_pain001`).

pain.001 puts ``NbOfTxs``/``CtrlSum`` in the group header and in every ``PmtInf`` block
*before* the transactions, and transactions are grouped into blocks by (debtor account,
currency, requested execution date), while input files arrive in any order: FileAdaptor
therefore spools each group's transactions (:class:`~file_pipeline.instructions.InstructionsBuilder`)
and FileCreator writes the heads rendered here with the totals, then the transactions, block
after block. Input transactions have passed the rules (nothing here re-checks IBANs, lengths,
decimals). :func:`file_pipeline.formats.xsd.validate_stream` validates the output against the
official XSD.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal

from file_pipeline.domain.reference import DebtorAccount
from file_pipeline.formats.xmltext import clip, esc, fmt_decimal

NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"


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
