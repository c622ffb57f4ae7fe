"""Streaming reader for ISO 20022 pain.001.001.03 and pain.001.001.09.

Security: the input is hostile. Before lxml sees a byte the prolog is scanned
and any DOCTYPE is rejected (billion laughs, XXE); lxml then runs with
``resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False``;
any element outside the pain.001 namespace (e.g. ``xi:include``) is rejected;
XInclude is never processed. With ``validate_schema=True`` (the default) the
document is also validated against the official XSD while it streams.

Memory: each ``CdtTrfTxInf`` is turned into a :class:`Transaction` and removed
from the tree at its end tag, so memory does not grow with the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, BinaryIO

from lxml import etree

from file_pipeline.domain.iban import normalize_iban
from file_pipeline.domain.model import (
    FileFormat,
    FileHeader,
    FileRejected,
    Finding,
    PaymentBlock,
    Transaction,
)
from file_pipeline.domain.reason_codes import IsoReason
from file_pipeline.formats.detect import PAIN001_NS, peek_head, scan_xml_prolog
from file_pipeline.formats.xsd import load_schema, safe_parser_options

R = IsoReason


def _dec(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        return Decimal(text.strip())
    except InvalidOperation:
        return None


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.isdigit() and text.isascii() else None


class Pain001Reader:
    """Iterate credit transfers of a pain.001 document; ``header`` fills as it streams."""

    def __init__(self, stream: BinaryIO, validate_schema: bool = True) -> None:
        head, self._stream, complete = peek_head(stream)
        if head.startswith(b"\xef\xbb\xbf"):
            head = head[3:]
        local, ns = scan_xml_prolog(head.lstrip(), complete)
        fmt = PAIN001_NS.get(ns)
        if local != "Document" or fmt is None:
            raise FileRejected(R.FF01, f"not a pain.001.001.03/.09 document (root {local}, namespace {ns!r})")
        self.format = fmt
        self.ns = ns
        self.validate_schema = validate_schema
        self.header = FileHeader(fmt)
        self._root = None  # the live root element while streaming (lets tests check the tree stays small)

    def __iter__(self) -> Iterator[Transaction]:
        ns = self.ns
        q = f"{{{ns}}}"
        v03 = self.format is FileFormat.PAIN001_03
        bic_tag = "BIC" if v03 else "BICFI"
        T = {
            name: q + name
            for name in (
                "Document",
                "GrpHdr",
                "PmtInf",
                "CdtTrfTxInf",
                "MsgId",
                "CreDtTm",
                "NbOfTxs",
                "CtrlSum",
                "PmtInfId",
                "ReqdExctnDt",
                "Dt",
                "DtTm",
            )
        }
        P = {
            "initg": f"{q}InitgPty/{q}Nm",
            "dbtr_iban": f"{q}DbtrAcct/{q}Id/{q}IBAN",
            "dbtr_othr": f"{q}DbtrAcct/{q}Id/{q}Othr/{q}Id",
            "dbtr_bic": f"{q}DbtrAgt/{q}FinInstnId/{q}{bic_tag}",
            "instr": f"{q}PmtId/{q}InstrId",
            "e2e": f"{q}PmtId/{q}EndToEndId",
            "amt": f"{q}Amt/{q}InstdAmt",
            "eqvt": f"{q}Amt/{q}EqvtAmt",
            "cdtr_bic": f"{q}CdtrAgt/{q}FinInstnId/{q}{bic_tag}",
            "cdtr_clr": f"{q}CdtrAgt/{q}FinInstnId/{q}ClrSysMmbId",
            "clr_cd": f"{q}ClrSysId/{q}Cd",
            "mmb": f"{q}MmbId",
            "cdtr_nm": f"{q}Cdtr/{q}Nm",
            "cdtr_iban": f"{q}CdtrAcct/{q}Id/{q}IBAN",
            "cdtr_othr": f"{q}CdtrAcct/{q}Id/{q}Othr/{q}Id",
            "ustrd": f"{q}RmtInf/{q}Ustrd",
        }
        header = self.header
        options = safe_parser_options()
        schema = load_schema(self.format.value) if self.validate_schema else None
        block: PaymentBlock | None = None
        block_ctx: dict[str, Any] = {}
        n = 0
        root_seen = False
        root_closed = False
        last_line = 0
        try:
            events = etree.iterparse(
                self._stream,
                events=("start", "end"),
                schema=schema,
                remove_comments=True,
                remove_pis=True,
                **options,
            )
            for event, elem in events:
                tag = elem.tag
                last_line = elem.sourceline or last_line
                if event == "start":
                    if not isinstance(tag, str) or not tag.startswith(q):
                        raise FileRejected(
                            R.FF01,
                            f"element {tag!r} is not part of {self.format.value} "
                            "(XInclude and foreign elements are not accepted)",
                            elem.sourceline,
                        )
                    if not root_seen:
                        root_seen = True
                        self._root = elem
                        docinfo = elem.getroottree().docinfo
                        if docinfo.doctype or docinfo.internalDTD is not None:
                            raise FileRejected(R.FF01, "XML with a DOCTYPE declaration is not accepted")
                    elif tag == T["PmtInf"]:
                        block = PaymentBlock(block_id="", line=elem.sourceline)
                        block_ctx = {}
                    elif tag == T["CdtTrfTxInf"] and block is not None and not block_ctx:
                        block_ctx = self._block_info(elem.getparent(), block, T, P)
                    continue
                # end events
                if tag == T["CdtTrfTxInf"]:
                    if block is None:
                        raise FileRejected(R.FF01, "CdtTrfTxInf outside a PmtInf block", elem.sourceline)
                    n += 1
                    tx = self._transaction(elem, n, block_ctx, P)
                    if tx.amount is not None:
                        block.ctrl_sum += tx.amount
                        header.ctrl_sum += tx.amount
                    block.nb_of_txs += 1
                    header.nb_of_txs = n
                    elem.clear()
                    parent = elem.getparent()
                    while elem.getprevious() is not None:
                        del parent[0]
                    yield tx
                elif tag == T["PmtInf"]:
                    if block is None:  # a PmtInf end tag without its start: lxml never gives one
                        continue
                    if not block_ctx:  # a block without transactions
                        self._block_info(elem, block, T, P)
                    header.blocks.append(block)
                    block = None
                    elem.clear()
                    parent = elem.getparent()
                    while elem.getprevious() is not None:
                        del parent[0]
                elif tag == T["Document"]:
                    root_closed = True
                elif tag == T["GrpHdr"]:
                    header.msg_id = (elem.findtext(T["MsgId"]) or "").strip()
                    header.creation = (elem.findtext(T["CreDtTm"]) or "").strip()
                    header.declared_nb_of_txs = _int(elem.findtext(T["NbOfTxs"]))
                    header.declared_ctrl_sum = _dec(elem.findtext(T["CtrlSum"]))
                    header.initiating_party = (elem.findtext(P["initg"]) or "").strip()
                    elem.clear()
        except etree.XMLSyntaxError as exc:
            # (exc.error_log may hold stale entries of earlier parses: classify by the message;
            # libxml2's schema-validity messages all start with "Element '")
            msg = exc.msg or str(exc)
            kind = (
                "not valid against the XSD"
                if schema is not None and msg.startswith("Element '")
                else "not well-formed XML (truncated or corrupt?)"
            )
            line = exc.lineno if isinstance(exc.lineno, int) and exc.lineno > 0 else last_line
            raise FileRejected(R.FF01, f"{self.format.value} is {kind}: {msg}", line or None) from None
        if not root_closed:
            # lxml's iterparse with a schema does not raise on premature end of data: check ourselves
            raise FileRejected(
                R.FF01,
                f"{self.format.value} is not well-formed XML (truncated: the document "
                "element is never closed)",
                last_line or None,
            )

    def _block_info(self, pmt_inf: Any, block: PaymentBlock, T: dict[str, str], P: dict[str, str]) -> dict[str, Any]:
        block.block_id = (pmt_inf.findtext(T["PmtInfId"]) or "").strip()
        block.declared_nb_of_txs = _int(pmt_inf.findtext(T["NbOfTxs"]))
        block.declared_ctrl_sum = _dec(pmt_inf.findtext(T["CtrlSum"]))
        reqd = pmt_inf.find(T["ReqdExctnDt"])
        date_text = ""
        if reqd is not None:
            date_text = (
                (reqd.text or "").strip()
                if self.format is FileFormat.PAIN001_03
                else (reqd.findtext(T["Dt"]) or (reqd.findtext(T["DtTm"]) or "")[:10]).strip()
            )
        try:
            exec_date = date.fromisoformat(date_text) if len(date_text) == 10 else None
        except ValueError:
            exec_date = None
        return {
            "block_id": block.block_id,
            "date": exec_date,
            "date_text": date_text,
            "debtor": normalize_iban(pmt_inf.findtext(P["dbtr_iban"]) or "")
            or (pmt_inf.findtext(P["dbtr_othr"]) or "").strip(),
            "debtor_bic": (pmt_inf.findtext(P["dbtr_bic"]) or "").strip(),
        }

    def _transaction(self, el: Any, n: int, ctx: dict[str, Any], P: dict[str, str]) -> Transaction:
        findings: tuple[Finding, ...] = ()
        amt = el.find(P["amt"])
        if amt is not None:
            amount_text = (amt.text or "").strip()
            currency = amt.get("Ccy", "")
        else:
            amount_text, currency = "", ""
            if el.find(P["eqvt"]) is not None:
                findings = (Finding(R.CH16, "Amt/EqvtAmt (amount in debtor currency) is not supported"),)
        routing = ""
        clr = el.find(P["cdtr_clr"])
        if clr is not None and (clr.findtext(P["clr_cd"]) or "").strip() == "USABA":
            routing = (clr.findtext(P["mmb"]) or "").strip()
        ustrd = el.findall(P["ustrd"])
        return Transaction(
            index=n,
            line=el.sourceline,
            end_to_end_id=(el.findtext(P["e2e"]) or "").strip(),
            instruction_id=(el.findtext(P["instr"]) or "").strip(),
            amount=_dec(amount_text) if amount_text else None,
            currency=currency,
            amount_text=amount_text,
            creditor_name=(el.findtext(P["cdtr_nm"]) or "").strip(),
            creditor_iban=normalize_iban(el.findtext(P["cdtr_iban"]) or ""),
            creditor_account=(el.findtext(P["cdtr_othr"]) or "").strip(),
            creditor_routing=routing,
            creditor_bic=(el.findtext(P["cdtr_bic"]) or "").strip(),
            debtor_account=ctx.get("debtor", ""),
            debtor_bic=ctx.get("debtor_bic", ""),
            requested_execution_date=ctx.get("date"),
            date_text=ctx.get("date_text", ""),
            remittance_info=" ".join((u.text or "").strip() for u in ustrd),
            payment_block_id=ctx.get("block_id", ""),
            format_findings=findings,
        )
