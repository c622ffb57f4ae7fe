import io
from datetime import date
from decimal import Decimal

import pytest

from file_pipeline.domain.model import FileRejected
from file_pipeline.domain.reason_codes import ReasonCode
from file_pipeline.domain.reference import CsvLayout
from file_pipeline.formats.csv_reader import CsvReader

from .conftest import data_stream


def test_reads_csv_v1(ref):
    reader = CsvReader(data_stream("csv_v1_valid.csv"), ref.formats["CSV-v1"].csv, file_id="F-1")
    txs = list(reader)
    assert len(txs) == 6
    first = txs[0]
    assert (first.end_to_end_id, first.amount, first.currency) == ("ACME-0001", Decimal("1250.00"), "EUR")
    assert first.creditor_name == "Müller & Söhne GmbH"
    assert first.creditor_iban == "DE62370400440532013001"
    assert first.requested_execution_date == date(2026, 11, 23)
    assert first.remittance_info == "Invoice 2026-118 <urgent>"
    assert (first.index, first.line, first.payment_block_id) == (1, 2, "F-1")
    assert txs[1].creditor_iban == "NL91ABNA0417164300"  # print format normalised
    assert txs[1].debtor_account == ""  # -> client's default account
    assert (txs[3].creditor_account, txs[3].creditor_routing) == ("123456789012", "021000021")
    assert txs[4].remittance_info == "Services, October"  # quoted delimiter
    assert txs[5].requested_execution_date is None and txs[5].date_text == ""
    assert reader.header.nb_of_txs == 6
    assert reader.header.ctrl_sum == sum(t.amount for t in txs)


def test_reads_cp1252_semicolon_decimal_comma_layout(ref):
    txs = list(CsvReader(data_stream("csv_eu_valid.csv"), ref.formats["CSV-EU"].csv))
    assert [t.amount for t in txs] == [
        Decimal("1234.56"),
        Decimal("150000"),
        Decimal("1250.500"),
        Decimal("500.00"),
    ]
    assert txs[0].creditor_name == "Société Générale Client"
    assert txs[3].creditor_name == "Straßenbau Süd AG"
    assert txs[0].requested_execution_date == date(2026, 11, 23)
    assert (txs[1].creditor_account, txs[1].creditor_bic, txs[1].currency) == (
        "1234567",
        "BOTKJPJTXXX",
        "JPY",
    )


def test_layout_without_header_uses_indexes():
    layout = CsvLayout(
        "IDX",
        delimiter="|",
        has_header=False,
        columns={"end_to_end_id": 0, "amount": 1, "currency": 2, "creditor_name": 3, "creditor_iban": 4},
    )
    content = b"E1|10.00|EUR|Anna|DE89370400440532013000\n\nE2|5|EUR|Bob|NL91ABNA0417164300\n"
    txs = list(CsvReader(io.BytesIO(content), layout))
    assert [(t.end_to_end_id, t.line) for t in txs] == [("E1", 1), ("E2", 3)]


def test_utf8_bom_is_skipped(ref):
    content = "\ufeff" + (data_stream("csv_v1_valid.csv").read().decode("utf-8"))
    txs = list(CsvReader(io.BytesIO(content.encode("utf-8")), ref.formats["CSV-v1"].csv))
    assert txs[0].end_to_end_id == "ACME-0001"


def test_short_row_becomes_a_row_finding(ref):
    content = (
        b"EndToEndId,CreditorName,CreditorIBAN,Amount,Currency\n"
        b"E1,Anna,DE89370400440532013000,10.00,EUR\nE2,Bob\n"
    )
    txs = list(CsvReader(io.BytesIO(content), ref.formats["CSV-v1"].csv))
    assert txs[0].format_findings == ()
    assert [f.code for f in txs[1].format_findings] == [ReasonCode.FF01]
    assert txs[1].amount is None


@pytest.mark.parametrize("amount_text", ["12,50", "1e5", "ten", "", "--1", "NaN", "Infinity"])
def test_unparsable_amounts_are_none(ref, amount_text):
    content = f'EndToEndId,CreditorName,Amount,Currency\nE1,Anna,"{amount_text}",EUR\n'.encode()
    (tx,) = CsvReader(io.BytesIO(content), ref.formats["CSV-v1"].csv)
    assert tx.amount is None and tx.amount_text == amount_text


@pytest.mark.parametrize(
    "content,match",
    [
        (b"Foo,Bar\n1,2\n", "lacks mandatory column"),
        (b"", "no header row"),
        (b'EndToEndId,CreditorName,Amount,Currency\nE1,"Anna,10,EUR\n', "CSV syntax error"),
        (b"EndToEndId,CreditorName,Amount,Currency\nE1,Ann\xe9,10,EUR\n", "not valid utf-8"),
    ],
)
def test_broken_files_are_rejected(ref, content, match):
    with pytest.raises(FileRejected, match=match) as exc:
        list(CsvReader(io.BytesIO(content), ref.formats["CSV-v1"].csv))
    assert exc.value.code is ReasonCode.FF01
