import io
from datetime import date
from decimal import Decimal

import pytest

from file_pipeline.domain.model import FileFormat, FileRejected
from file_pipeline.domain.reason_codes import IsoReason
from file_pipeline.formats.pain001_reader import Pain001Reader

from .conftest import data_bytes, data_stream


def test_reads_pain001_09(ref):
    reader = Pain001Reader(data_stream("pain001_09_valid.xml"))
    txs = list(reader)
    assert reader.format is FileFormat.PAIN001_09
    assert [t.end_to_end_id for t in txs] == ["ACME-E2E-0001", "ACME-E2E-0002", "ACME-E2E-0003"]
    t1, t2, t3 = txs
    assert (t1.instruction_id, t1.amount, t1.currency, t1.creditor_bic) == (
        "INSTR-1",
        Decimal("1250.00"),
        "EUR",
        "COBADEFFXXX",
    )
    assert t1.creditor_name == "Müller & Söhne GmbH"
    assert (t1.debtor_account, t1.debtor_bic) == ("DE89370400440532013000", "COBADEFFXXX")
    assert t1.requested_execution_date == date(2026, 11, 23)
    assert t1.payment_block_id == "ACME-PMT-EUR-01" and t1.line is not None
    assert t2.creditor_bic == "" and t2.remittance_info == ""
    assert (t3.payment_block_id, t3.requested_execution_date) == ("ACME-PMT-GBP-01", date(2026, 11, 24))
    assert t3.remittance_info == "Services October"
    h = reader.header
    assert (h.msg_id, h.declared_nb_of_txs, h.declared_ctrl_sum) == (
        "ACME-MSG-20261120-01",
        3,
        Decimal("2149.60"),
    )
    assert (h.nb_of_txs, h.ctrl_sum) == (3, Decimal("2149.60"))
    assert [
        (b.block_id, b.declared_nb_of_txs, b.nb_of_txs, b.declared_ctrl_sum, b.ctrl_sum) for b in h.blocks
    ] == [
        ("ACME-PMT-EUR-01", 2, 2, Decimal("1349.50"), Decimal("1349.50")),
        ("ACME-PMT-GBP-01", 1, 1, Decimal("800.10"), Decimal("800.10")),
    ]
    assert h.initiating_party == "ACME Industries GmbH"


def test_reads_pain001_03(ref):
    reader = Pain001Reader(data_stream("pain001_03_valid.xml"))
    txs = list(reader)
    assert reader.format is FileFormat.PAIN001_03
    assert [(t.end_to_end_id, t.amount, t.creditor_bic) for t in txs] == [
        ("GLX-E2E-1", Decimal("1234.56"), "SOGEFRPP"),
        ("GLX-E2E-2", Decimal("500.00"), ""),
    ]
    assert txs[0].requested_execution_date == date(2026, 11, 23)
    assert txs[0].debtor_bic == "AIBKIE2DXXX"
    assert reader.header.msg_id == "GLX-2026-11-20-A"


def test_us_clearing_member_and_other_account_are_read():
    xml = (
        data_bytes("pain001_09_valid.xml")
        .replace(
            b"<CdtrAgt><FinInstnId><BICFI>NWBKGB2LXXX</BICFI></FinInstnId></CdtrAgt>",
            b"<CdtrAgt><FinInstnId><ClrSysMmbId><ClrSysId><Cd>USABA</Cd></ClrSysId><MmbId>021000021</MmbId>"
            b"</ClrSysMmbId></FinInstnId></CdtrAgt>",
        )
        .replace(b"<Id><IBAN>GB29NWBK60161331926819</IBAN></Id>", b"<Id><Othr><Id>123456789</Id></Othr></Id>")
    )
    tx = list(Pain001Reader(io.BytesIO(xml)))[2]
    assert (tx.creditor_routing, tx.creditor_account, tx.creditor_iban) == ("021000021", "123456789", "")


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        (b'<InstdAmt Ccy="EUR">99.50</InstdAmt>', b'<InstdAmt Ccy="EURO">99.50</InstdAmt>', "XSD"),
        (b'<InstdAmt Ccy="EUR">99.50</InstdAmt>', b'<InstdAmt Ccy="EUR">99.500001</InstdAmt>', "XSD"),
        (
            b"<BICFI>COBADEFFXXX</BICFI></FinInstnId></CdtrAgt>",
            b"<BICFI>cobadeff</BICFI></FinInstnId></CdtrAgt>",
            "XSD",
        ),
        (b"<PmtId><EndToEndId>ACME-E2E-0002</EndToEndId></PmtId>", b"<PmtId></PmtId>", "XSD"),
        (b"</Document>", b"", "not well-formed"),  # truncated
        (b"<Cdtr><Nm>Jan de Vries</Nm></Cdtr>", b"<Cdtr><Nm>Jan de Vries</Cdtr>", "not well-formed"),
    ],
)
def test_invalid_input_is_rejected_ff01(old, new, match):
    xml = data_bytes("pain001_09_valid.xml")
    assert old in xml
    with pytest.raises(FileRejected, match=match) as exc:
        list(Pain001Reader(io.BytesIO(xml.replace(old, new, 1))))
    assert exc.value.code is IsoReason.FF01


def test_truncated_in_the_middle_is_rejected_after_streaming_what_it_could():
    xml = data_bytes("pain001_09_valid.xml")
    cut = xml[: xml.index(b"ACME-PMT-GBP-01")]
    reader = Pain001Reader(io.BytesIO(cut))
    seen = []
    with pytest.raises(FileRejected, match="not well-formed"):
        seen.extend(tx.end_to_end_id for tx in reader)
    assert seen == ["ACME-E2E-0001", "ACME-E2E-0002"]


def test_schema_validation_can_be_switched_off_for_lenient_reading():
    xml = data_bytes("pain001_09_valid.xml").replace(
        b"<BICFI>COBADEFFXXX</BICFI></FinInstnId></CdtrAgt>",
        b"<BICFI>cobadeff</BICFI></FinInstnId></CdtrAgt>",
    )
    txs = list(Pain001Reader(io.BytesIO(xml), validate_schema=False))
    assert txs[0].creditor_bic == "cobadeff"  # left for the RC01 rule


def test_wrong_root_is_rejected():
    with pytest.raises(FileRejected, match=r"not a pain\.001"):
        Pain001Reader(io.BytesIO(b"<Document xmlns='urn:x'/>"))


def test_many_transactions_stream_without_keeping_the_tree(ref):
    """The reader drops every CdtTrfTxInf once read: the root keeps at most the current block."""
    tx = (
        b'<CdtTrfTxInf><PmtId><EndToEndId>E%d</EndToEndId></PmtId><Amt><InstdAmt Ccy="EUR">1.00</InstdAmt>'
        b"</Amt><Cdtr><Nm>N</Nm></Cdtr><CdtrAcct><Id><IBAN>NL91ABNA0417164300</IBAN></Id></CdtrAcct>"
        b"</CdtTrfTxInf>"
    )
    n = 12000
    body = b"".join(tx % i for i in range(n))
    xml = (
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"><CstmrCdtTrfInitn><GrpHdr>'
        b"<MsgId>M</MsgId><CreDtTm>2026-11-20T08:00:00</CreDtTm><NbOfTxs>%d</NbOfTxs><InitgPty><Nm>X</Nm>"
        b"</InitgPty></GrpHdr><PmtInf><PmtInfId>P</PmtInfId><PmtMtd>TRF</PmtMtd><ReqdExctnDt><Dt>2026-11-23"
        b"</Dt></ReqdExctnDt><Dbtr><Nm>D</Nm></Dbtr><DbtrAcct><Id><IBAN>DE89370400440532013000</IBAN></Id>"
        b"</DbtrAcct><DbtrAgt><FinInstnId><BICFI>COBADEFFXXX</BICFI></FinInstnId></DbtrAgt>"
        % n
        + body
        + b"</PmtInf></CstmrCdtTrfInitn></Document>"
    )
    reader = Pain001Reader(io.BytesIO(xml))
    largest = 0
    for _tx in reader:
        largest = max(largest, sum(1 for _ in reader._root.iter()))
    assert reader.header.nb_of_txs == n
    # lxml parses ahead by one input chunk, so a few hundred elements are alive at a time; a kept
    # tree would hold 12 nodes per transaction (144,000 here)
    assert largest < 5000
