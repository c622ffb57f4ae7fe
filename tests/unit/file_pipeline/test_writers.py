import csv
import dataclasses
import io
from datetime import date, timedelta
from decimal import Decimal

import pytest
from lxml import etree

from devstack.samples import generate_csv
from file_pipeline.domain.model import FileRejected, Finding
from file_pipeline.domain.reason_codes import IsoReason
from file_pipeline.domain.validator import Rejection
from file_pipeline.formats.pain002_writer import OriginalMessage, check_well_formed, write_pain002
from file_pipeline.formats.xsd import load_schema, validate_stream
from file_pipeline.instructions import InstructionsBuilder, render_pain001

from .conftest import NOW, assert_golden, data_bytes
from .fakes import process

NS1 = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"}
NS2 = {"s": "urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"}


def run(tmp_path, sample, client):
    """``sample`` through the three steps; its record, and the pain.001 and pain.002 as files."""
    done = process(data_bytes(sample), client, name=sample)
    out1, out2 = tmp_path / "pain001.xml", tmp_path / "pain002.xml"
    if done.pain001 is not None:
        out1.write_bytes(done.pain001)
    if done.pain002 is not None:
        out2.write_bytes(done.pain002)
    return done, out1, out2


def rejected_rows(done) -> dict[str, list[str]]:
    """``{endToEndId@line: [reason codes]}`` from the file's error report."""
    rows = list(csv.reader(io.StringIO(done.error_report.decode("utf-8"))))[1:]
    out: dict[str, list[str]] = {}
    for row in rows:
        out.setdefault(f"{row[2]}@{row[1]}", []).append(row[6])
    return out


@pytest.mark.parametrize(
    ("sample", "client", "golden"),
    [
        ("csv_v1_valid.csv", "ACME001", "golden_pain001_from_csv_v1.xml"),
        ("csv_eu_valid.csv", "GLOBEX02", "golden_pain001_from_csv_eu.xml"),
        ("pain001_03_valid.xml", "GLOBEX02", "golden_pain001_from_pain001_03.xml"),
        ("pain001_09_valid.xml", "ACME001", "golden_pain001_from_pain001_09.xml"),
        ("nacha_valid.ach", "INITECH03", "golden_pain001_from_nacha.xml"),
    ],
)
def test_pain001_golden_and_xsd_valid(tmp_path, sample, client, golden):
    done, out1, out2 = run(tmp_path, sample, client)
    assert done.record.group_status == "ACCP", done.record.reasons
    validate_stream(str(out1), "pain.001.001.09")  # FileCreator did too; be explicit
    load_schema("pain.001.001.09").assertValid(etree.parse(str(out1)))  # and the non-streaming way
    assert_golden(out1.read_bytes(), golden)
    report = etree.parse(str(out2))
    assert report.findtext(".//s:GrpSts", namespaces=NS2) == "ACCP"


def test_pain001_groups_and_totals(tmp_path):
    done, out1, _ = run(tmp_path, "csv_v1_valid.csv", "ACME001")
    doc = etree.parse(str(out1))
    blocks = doc.findall(".//p:PmtInf", NS1)
    keys = [
        (
            b.findtext("p:DbtrAcct/p:Id/p:IBAN", namespaces=NS1)
            or b.findtext("p:DbtrAcct/p:Id/p:Othr/p:Id", namespaces=NS1),
            b.find("p:CdtTrfTxInf/p:Amt/p:InstdAmt", NS1).get("Ccy"),
            b.findtext("p:ReqdExctnDt/p:Dt", namespaces=NS1),
            int(b.findtext("p:NbOfTxs", namespaces=NS1)),
        )
        for b in blocks
    ]
    assert keys == [
        ("000123456789", "USD", "2026-11-23", 1),
        ("DE89370400440532013000", "CHF", "2026-11-23", 1),  # no date in the file -> earliest
        ("DE89370400440532013000", "EUR", "2026-11-23", 2),
        ("DE89370400440532013000", "EUR", "2026-11-24", 1),
        ("DE89370400440532013000", "GBP", "2026-11-24", 1),
    ]
    for b in blocks:
        amounts = [Decimal(a.text) for a in b.findall("p:CdtTrfTxInf/p:Amt/p:InstdAmt", NS1)]
        assert Decimal(b.findtext("p:CtrlSum", namespaces=NS1)) == sum(amounts)
    assert doc.findtext(".//p:GrpHdr/p:NbOfTxs", namespaces=NS1) == "6"
    assert Decimal(doc.findtext(".//p:GrpHdr/p:CtrlSum", namespaces=NS1)) == Decimal("23849.60")
    assert done.record.accepted == 6


def test_amounts_follow_minor_units(tmp_path):
    _, out1, _ = run(tmp_path, "csv_eu_valid.csv", "GLOBEX02")
    amounts = {a.get("Ccy"): a.text for a in etree.parse(str(out1)).iterfind(".//p:InstdAmt", NS1)}
    assert amounts["JPY"] == "150000" and amounts["BHD"] == "1250.500"


def test_many_groups_and_spool_handle_recycling_stay_xsd_valid(ref, tmp_path):
    """More groups than open spool handles; output still grouped, counted and XSD-valid."""
    buf = io.BytesIO()
    generate_csv(buf, 400, execution_date=date(2026, 11, 23))
    from file_pipeline.formats.csv_reader import CsvReader

    client = ref.clients["ACME001"]
    expected: dict[date, int] = {}
    with InstructionsBuilder(ref, client, file_id="MANY-GROUPS", created=NOW, max_open_files=3) as builder:
        for i, tx in enumerate(CsvReader(io.BytesIO(buf.getvalue()), ref.formats["CSV-v1"].csv)):
            day = date(2026, 11, 23) + timedelta(days=i % 9)  # 9 dates, interleaved
            builder.add(dataclasses.replace(tx, requested_execution_date=day,
                                            debtor_account=client.default_account(tx.currency).id))
            expected[day] = expected.get(day, 0) + 1
        instructions = io.BytesIO()
        builder.write_to(instructions)
    out = tmp_path / "many.xml"
    with open(out, "wb") as fh:
        written = render_pain001(io.BytesIO(instructions.getvalue()), fh, "MANY-GROUPS")
    validate_stream(str(out))
    doc = etree.parse(str(out))
    per_day: dict[date, int] = {}
    for block in doc.iterfind(".//p:PmtInf", NS1):
        day = date.fromisoformat(block.findtext("p:ReqdExctnDt/p:Dt", namespaces=NS1))
        per_day[day] = per_day.get(day, 0) + int(block.findtext("p:NbOfTxs", namespaces=NS1))
    assert per_day == expected and written.nb_of_txs == 400


def test_instructions_refuse_unresolved_or_foreign_transactions(ref):
    from file_pipeline.domain.model import Transaction
    from file_pipeline.workfiles import WorkFileCorrupt

    tx = Transaction(1, 1, "E", Decimal("1.00"), "EUR", creditor_name="A", creditor_iban="NL91ABNA0417164300")
    with InstructionsBuilder(ref, ref.clients["ACME001"], file_id="X", created=NOW) as builder:
        with pytest.raises(WorkFileCorrupt, match="no amount/date"):
            builder.add(tx)
        with pytest.raises(WorkFileCorrupt, match="is not an account"):
            builder.add(dataclasses.replace(tx, debtor_account="DE00", requested_execution_date=date(2026, 11, 23)))
        with pytest.raises(WorkFileCorrupt, match="no validated transaction"):
            builder.write_to(io.BytesIO())


def test_escaping_keeps_output_valid(tmp_path):
    _, out1, _ = run(tmp_path, "csv_v1_valid.csv", "ACME001")
    doc = etree.parse(str(out1))
    names = [n.text for n in doc.iterfind(".//p:Cdtr/p:Nm", NS1)]
    assert "Müller & Söhne GmbH" in names
    assert "Invoice 2026-118 <urgent>" in [u.text for u in doc.iterfind(".//p:Ustrd", NS1)]


def test_xsd_catches_what_it_can_and_misses_what_rules_must_catch(tmp_path):
    _, out1, _ = run(tmp_path, "csv_v1_valid.csv", "ACME001")
    good = out1.read_bytes()
    caught = [
        (b'Ccy="EUR"', b'Ccy="EU1"'),
        (b'<InstdAmt Ccy="GBP">800.10', b'<InstdAmt Ccy="GBP">800.101234'),
        (b"<BICFI>NWBKGB2LXXX</BICFI>", b"<BICFI>NWBK-GB2L</BICFI>"),
        (b"<EndToEndId>ACME-0005</EndToEndId>", b""),
    ]
    for old, new in caught:
        with pytest.raises(FileRejected, match=r"pain\.001\.001\.09\.xsd"):
            validate_stream(io.BytesIO(good.replace(old, new, 1)))
    missed = [
        (b"GB29NWBK60161331926819", b"GB00NWBK60161331926819"),  # IBAN checksum
        (b"<CtrlSum>1349.50</CtrlSum>", b"<CtrlSum>1.00</CtrlSum>"),
    ]  # wrong CtrlSum
    for old, new in missed:
        validate_stream(io.BytesIO(good.replace(old, new, 1)))
    with pytest.raises(FileRejected, match="truncated"):
        validate_stream(io.BytesIO(good[: len(good) // 2]))


# ------------------------------------------------------------------------ pain.002
def test_pain002_partial_golden(tmp_path):
    done, out1, out2 = run(tmp_path, "csv_eu_mixed.csv", "GLOBEX02")
    assert (done.record.group_status, done.record.accepted, done.record.rejected) == ("PART", 2, 7)
    assert rejected_rows(done) == {
        "GLX-11@3": ["AC01"],
        "GLX-12@4": ["CH20"],
        "GLX-13@5": ["DT03"],
        "GLX-14@6": ["RC01"],
        "GLX-10@7": ["DU04"],
        "GLX-15@8": ["AM03"],
        "GLX-16@9": ["AM14"],
    }
    check_well_formed(str(out2))
    validate_stream(str(out1))
    assert_golden(out2.read_bytes(), "golden_pain002_partial.xml")
    doc = etree.parse(str(out2))
    assert doc.findtext(".//s:GrpSts", namespaces=NS2) == "PART"
    assert [e.text for e in doc.iterfind(".//s:TxInfAndSts/s:TxSts", NS2)] == ["RJCT"] * 7
    per_status = {
        e.findtext("s:DtldSts", namespaces=NS2): int(e.findtext("s:DtldNbOfTxs", namespaces=NS2))
        for e in doc.iterfind(".//s:NbOfTxsPerSts", NS2)
    }
    assert per_status == {"ACCP": 2, "RJCT": 7}


def test_pain002_rejected_file_golden():
    """ACME001 is reject-file: one bad IBAN rejects the whole file and no pain.001 is written."""
    content = data_bytes("csv_v1_valid.csv").replace(b"DE62370400440532013001", b"DE00370400440532013001")
    done = process(content, "ACME001", name="csv_v1_rejected.csv")
    assert done.record.group_status == "RJCT" and done.pain001 is None
    assert_golden(done.pain002, "golden_pain002_rejected.xml")
    doc = etree.parse(io.BytesIO(done.pain002))
    assert doc.findtext(".//s:OrgnlGrpInfAndSts/s:StsRsnInf/s:Rsn/s:Cd", namespaces=NS2) == "NARR"
    assert doc.findtext(".//s:NbOfTxsPerSts/s:DtldNbOfTxs", namespaces=NS2) == "6"


def test_pain002_element_order_follows_the_message_definition(tmp_path):
    _, _, out2 = run(tmp_path, "csv_eu_mixed.csv", "GLOBEX02")
    doc = etree.parse(str(out2))
    local = lambda el: etree.QName(el).localname  # noqa: E731
    root = doc.getroot()
    assert local(root) == "Document" and [local(c) for c in root] == ["CstmrPmtStsRpt"]
    rpt = root[0]
    assert [local(c) for c in rpt] == ["GrpHdr", "OrgnlGrpInfAndSts", "OrgnlPmtInfAndSts"]
    assert [local(c) for c in rpt[1]] == [
        "OrgnlMsgId",
        "OrgnlMsgNmId",
        "OrgnlNbOfTxs",
        "OrgnlCtrlSum",
        "GrpSts",
        "NbOfTxsPerSts",
        "NbOfTxsPerSts",
    ]
    tx = rpt[2].find("s:TxInfAndSts", NS2)
    assert [local(c) for c in tx] == ["OrgnlEndToEndId", "TxSts", "StsRsnInf"]
    assert [local(c) for c in tx[2]] == ["Rsn", "AddtlInf"]


def test_pain002_limits_and_multiple_blocks(tmp_path):
    long = Finding(IsoReason.CH16, "x" * 300)
    rejections = [
        Rejection(1, 2, "E" * 40, "I" * 40, "BLOCK-A", "1.00", "EUR", (long,)),
        Rejection(2, 3, "", "", "BLOCK-A", "", "EUR", (Finding(IsoReason.AM12, "amount missing"),)),
        Rejection(3, 9, "E3", "", "BLOCK-B", "2.00", "EUR", (Finding(IsoReason.AM01, "zero"),)),
    ]
    buf = io.BytesIO()
    write_pain002(
        buf,
        msg_id="S" * 50,
        created=NOW,
        original=OriginalMessage("M" * 50, "pain.001.001.09", 3, Decimal("3.00")),
        group_status="PART",
        group_reasons=[],
        accepted=1,
        accepted_sum=Decimal("1"),
        rejected=3,
        rejected_sum=Decimal("3.00"),
        rejections=rejections,
    )
    check_well_formed(io.BytesIO(buf.getvalue()))
    doc = etree.fromstring(buf.getvalue())
    assert [e.text for e in doc.iterfind(".//s:OrgnlPmtInfId", NS2)] == ["BLOCK-A", "BLOCK-B"]
    assert all(
        len(e.text) <= 35
        for tag in ("MsgId", "OrgnlMsgId", "OrgnlEndToEndId", "OrgnlInstrId")
        for e in doc.iterfind(f".//s:{tag}", NS2)
    )
    assert all(len(e.text) <= 105 for e in doc.iterfind(".//s:AddtlInf", NS2))
    assert [e.text for e in doc.iterfind(".//s:OrgnlEndToEndId", NS2)][1] == "NOTPROVIDED"


def test_check_well_formed_rejects_broken_xml():
    with pytest.raises(FileRejected):
        check_well_formed(io.BytesIO(b"<Document><a></Document>"))


def test_sepaxml_has_no_pain002_schema():
    with pytest.raises(LookupError):
        load_schema("pain.002.001.10")
