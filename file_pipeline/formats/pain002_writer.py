"""Writer of ISO 20022 pain.002.001.10 (customer payment status report).

The report answers one submitted file: group status ``ACCP`` / ``PART`` /
``RJCT`` with group-level reasons, counts and sums per status, and every
rejected transaction (``TxSts`` ``RJCT``) with its ISO reason code(s) and the
description in ``AddtlInf`` (split into 105-character pieces, the XSD limit),
grouped under the original payment block id.

Rejections are read from an iterable (e.g. the validator's on-disk
:class:`~file_pipeline.domain.validator.RejectionLog`), so memory does not
depend on how many transactions were rejected. Consecutive rejections with the
same block id share one ``OrgnlPmtInfAndSts``; readers emit blocks in order.

``sepaxml`` ships no pain.002 schema, so the output is checked for
well-formedness (:func:`check_well_formed`), not against the XSD; the element
order follows the pain.002.001.10 message definition.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import BinaryIO

from lxml import etree

from file_pipeline.domain.model import FileRejected, Finding
from file_pipeline.domain.reason_codes import IsoReason
from file_pipeline.domain.validator import ACCP, RJCT, Rejection
from file_pipeline.formats.xmltext import chunks, clip, esc, fmt_decimal
from file_pipeline.formats.xsd import safe_parser_options

NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"


@dataclass(frozen=True)
class OriginalMessage:
    msg_id: str  # GrpHdr/MsgId of the original, or the file id for CSV/NACHA
    msg_name: str  # pain.001.001.09, CSV-v1, NACHA ...
    nb_of_txs: int
    ctrl_sum: Decimal


def _reasons(findings: Iterable[Finding], line: int | None = None) -> str:
    out = []
    for f in findings:
        text = f"line {line}: {f.description}" if line else f.description
        info = "".join(f"<AddtlInf>{esc(c)}</AddtlInf>" for c in chunks(text, 105)[:5])
        out.append(f"<StsRsnInf><Rsn><Cd>{f.code.value}</Cd></Rsn>{info}</StsRsnInf>")
    return "".join(out)


def write_pain002(
    out: BinaryIO,
    *,
    msg_id: str,
    created: datetime,
    original: OriginalMessage,
    group_status: str,
    group_reasons: Iterable[Finding],
    accepted: int,
    accepted_sum: Decimal,
    rejected: int,
    rejected_sum: Decimal,
    rejections: Iterable[Rejection],
) -> None:
    w = out.write
    w(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    per_status = ""
    if group_status == RJCT:  # a rejected file rejects every transaction in it
        rejected, rejected_sum = rejected + accepted, rejected_sum + accepted_sum
        accepted = 0
    if accepted:
        per_status += (
            f"<NbOfTxsPerSts><DtldNbOfTxs>{accepted}</DtldNbOfTxs><DtldSts>{ACCP}</DtldSts>"
            f"<DtldCtrlSum>{fmt_decimal(accepted_sum)}</DtldCtrlSum></NbOfTxsPerSts>"
        )
    if rejected:
        per_status += (
            f"<NbOfTxsPerSts><DtldNbOfTxs>{rejected}</DtldNbOfTxs><DtldSts>{RJCT}</DtldSts>"
            f"<DtldCtrlSum>{fmt_decimal(rejected_sum)}</DtldCtrlSum></NbOfTxsPerSts>"
        )
    w(
        f'<Document xmlns="{NAMESPACE}">\n<CstmrPmtStsRpt>\n'
        f"<GrpHdr><MsgId>{esc(clip(msg_id, 35))}</MsgId>"
        f"<CreDtTm>{created.isoformat(timespec='seconds')}</CreDtTm></GrpHdr>\n"
        f"<OrgnlGrpInfAndSts><OrgnlMsgId>{esc(clip(original.msg_id or 'NOTPROVIDED', 35))}</OrgnlMsgId>"
        f"<OrgnlMsgNmId>{esc(clip(original.msg_name, 35))}</OrgnlMsgNmId>"
        f"<OrgnlNbOfTxs>{original.nb_of_txs}</OrgnlNbOfTxs>"
        f"<OrgnlCtrlSum>{fmt_decimal(original.ctrl_sum)}</OrgnlCtrlSum>"
        f"<GrpSts>{group_status}</GrpSts>{_reasons(group_reasons)}{per_status}"
        f"</OrgnlGrpInfAndSts>\n".encode()
    )
    current: str | None = None
    for rej in rejections:
        block = clip(rej.block_id or "NOTPROVIDED", 35)
        if block != current:
            if current is not None:
                w(b"</OrgnlPmtInfAndSts>\n")
            w(f"<OrgnlPmtInfAndSts><OrgnlPmtInfId>{esc(block)}</OrgnlPmtInfId>\n".encode())
            current = block
        instr = (
            f"<OrgnlInstrId>{esc(clip(rej.instruction_id, 35))}</OrgnlInstrId>" if rej.instruction_id else ""
        )
        w(
            f"<TxInfAndSts>{instr}<OrgnlEndToEndId>{esc(clip(rej.end_to_end_id or 'NOTPROVIDED', 35))}"
            f"</OrgnlEndToEndId><TxSts>RJCT</TxSts>{_reasons(rej.findings, rej.line)}</TxInfAndSts>\n".encode()
        )
    if current is not None:
        w(b"</OrgnlPmtInfAndSts>\n")
    w(b"</CstmrPmtStsRpt>\n</Document>\n")


def check_well_formed(source: BinaryIO | str) -> None:
    """Stream-parse a written pain.002; raise FileRejected (FF01) if it is not well-formed."""
    try:
        for _, elem in etree.iterparse(source, events=("end",), **safe_parser_options()):
            if elem.getparent() is not None and elem.getparent().getparent() is not None:
                continue
            elem.clear()
    except etree.XMLSyntaxError as exc:
        raise FileRejected(IsoReason.FF01, f"pain.002 is not well-formed: {exc}") from None
