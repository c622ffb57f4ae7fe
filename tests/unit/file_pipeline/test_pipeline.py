"""Whole files through the three steps (the unit harness, as the functions run them) on small
inputs: bad inputs give a pain.002 rejection, never a pain.001."""

import csv
import io
from datetime import date

import pytest
from lxml import etree

from devstack.samples import generate_csv, generate_nacha
from file_pipeline.domain.files import FileState
from file_pipeline.formats.safe_csv import escape_cell, write_rows
from file_pipeline.formats.xsd import validate_stream
from file_pipeline.validation import validate_source

from .conftest import NOW, data_bytes
from .fakes import process

NS2 = {"s": "urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"PK\x03\x04" + b"\x00" * 100, "ZIP"),
        (b"\x00\x01\x02\x03" * 50, "NUL"),
        (data_bytes("nacha_valid.ach")[:500], "truncated"),
        (data_bytes("nacha_valid.ach")[:50], "truncated"),
        (data_bytes("pain001_09_valid.xml")[:1500], "truncated"),
        (data_bytes("pain001_09_valid.xml")[:60], "truncated"),
        (b"\xef\xbb\xbf", "empty"),
        (b"\xef\xbb\xbf \r\n", "whitespace"),
    ],
)
def test_empty_truncated_binary_inputs_are_rejected_with_a_reason(content, reason):
    done = process(content, "ACME001")
    assert done.record.state is FileState.REJECTED and done.record.group_status == "RJCT"
    assert [code for code, _ in done.record.reasons] == ["FF01"]
    assert reason.lower() in done.record.reasons[0][1].lower()
    assert done.pain001 is None
    doc = etree.parse(io.BytesIO(done.pain002))
    assert doc.findtext(".//s:GrpSts", namespaces=NS2) == "RJCT"
    assert doc.findtext(".//s:StsRsnInf/s:Rsn/s:Cd", namespaces=NS2) == "FF01"


def test_csv_truncated_mid_row_rejects_only_that_row_under_pass_valid():
    content = data_bytes("csv_eu_valid.csv")
    content = content[: content.rindex(b";") - 3]  # cut inside the last row
    done = process(content, "GLOBEX02")
    record = done.record
    assert (record.group_status, record.accepted, record.rejected) == ("PART", 3, 1)
    rows = list(csv.reader(io.StringIO(done.error_report.decode("utf-8"))))
    assert rows[1][6] == "FF01"  # the row's first finding: it is cut short
    validate_stream(io.BytesIO(done.pain001))


def test_file_name_is_never_used_content_decides():
    # a NACHA file under a client that only has CSV+PAIN001 agreed: detected as NACHA, refused as not agreed
    done = process(data_bytes("nacha_valid.ach"), "GLOBEX02", name="payroll.csv")
    assert done.record.format == "NACHA"
    assert "not agreed" in done.record.reasons[0][1]


def test_unknown_client_gets_a_rejection_report():
    done = process(data_bytes("csv_v1_valid.csv"), "NOBODY")
    assert done.record.group_status == "RJCT" and done.pain001 is None and done.pain002 is not None
    assert done.record.reasons[0][0] == "NARR"


def test_generated_files_pass_end_to_end():
    buf = io.BytesIO()
    generate_csv(buf, 1500, execution_date=date(2026, 11, 23), bad_every=500)
    done = process(buf.getvalue(), "GLOBEX02")
    # GLOBEX02 expects CSV-EU: a CSV-v1 file lacks its columns
    assert done.record.reasons[0][0] == "FF01"
    from file_pipeline.domain.reference import ReferenceData, load_seed_entities

    rows = load_seed_entities()
    for row in rows:
        if row["RowKey"] == "ACME001":
            row["RejectionPolicy"] = "pass-valid"
    lenient = ReferenceData.from_entities(rows)
    done = process(buf.getvalue(), "ACME001", reference=lenient)
    assert (done.record.group_status, done.record.accepted, done.record.rejected) == ("PART", 1497, 3)
    validate_stream(io.BytesIO(done.pain001))
    buf = io.BytesIO()
    generate_nacha(buf, 1200, effective_date=date(2026, 11, 23), entries_per_batch=500, with_addenda_every=3)
    done = process(buf.getvalue(), "INITECH03")
    assert done.record.group_status == "ACCP"
    assert etree.parse(io.BytesIO(done.pain001)).findtext(
        ".//p:GrpHdr/p:NbOfTxs", namespaces={"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"}) == "1200"
    validate_stream(io.BytesIO(done.pain001))


# ------------------------------------------------------------------------ safe CSV
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=SUM(A1:A9)", "'=SUM(A1:A9)"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@cmd", "'@cmd"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("\x00=1", "'=1"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        (None, ""),
        (12, "12"),
    ],
)
def test_escape_cell(value, expected):
    assert escape_cell(value) == expected


def test_error_report_is_formula_safe():
    content = (
        data_bytes("csv_v1_valid.csv")
        .replace(b"Jan de Vries", b'=HYPERLINK("http://x")')
        .replace(b"ACME-0002", b"@SUM(1)")
        .replace(b"99.5,EUR", b"0,EUR")
    )
    done = process(content, "ACME001")
    assert done.error_report is not None
    rows = list(csv.reader(io.StringIO(done.error_report.decode("utf-8"))))
    assert len(rows) == 2 and rows[0][0] == "index"
    assert rows[1][2] == "'@SUM(1)" and rows[1][6] == "AM01"
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)


def test_write_rows_quotes_and_counts():
    buf = io.BytesIO()
    assert write_rows(buf, [["a,b", "-3", 'q"uote']], header=["h1", "h2", "h3"]) == 1
    assert buf.getvalue().decode() == 'h1,h2,h3\r\n"a,b",\'-3,"q""uote"\r\n'


def test_accept_run_takes_the_runs_instead_of_accept_one_by_one(ref):
    buf = io.BytesIO()
    generate_csv(buf, 1200, execution_date=date(2026, 11, 23), bad_every=400)
    one_by_one, runs = [], []
    plain = validate_source(io.BytesIO(buf.getvalue()), ref, "ACME001", NOW, file_id="F", accept=one_by_one.append)

    def refuse(tx):
        raise AssertionError("accept is not called when accept_run is given")

    in_runs = validate_source(io.BytesIO(buf.getvalue()), ref, "ACME001", NOW, file_id="F", accept=refuse,
                              accept_run=runs.append)
    assert len(runs) > 1 and [tx for run in runs for tx in run] == one_by_one
    assert len(one_by_one) == plain.validation.accepted == in_runs.validation.accepted == 1197
