"""process_file end to end on small inputs: bad inputs give a pain.002 rejection, never a pain.001."""

import csv
import io
from datetime import date

import pytest
from lxml import etree

from file_pipeline.domain.pipeline import process_file
from file_pipeline.formats.safe_csv import escape_cell, write_error_report, write_rows
from file_pipeline.formats.samples import generate_csv, generate_nacha
from file_pipeline.formats.xsd import validate_stream

from .conftest import NOW, data_bytes

NS2 = {"s": "urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"}


def _run(ref, tmp_path, content: bytes, client="ACME001"):
    out1, out2 = tmp_path / "o.xml", tmp_path / "s.xml"
    result = process_file(
        io.BytesIO(content), ref, client, NOW, file_id="F-1", pain001_path=str(out1), pain002_path=str(out2)
    )
    return result, out1, out2


@pytest.mark.parametrize(
    "content,reason",
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
def test_empty_truncated_binary_inputs_are_rejected_with_a_reason(ref, tmp_path, content, reason):
    result, out1, out2 = _run(ref, tmp_path, content)
    v = result.validation
    assert v.group_status == "RJCT"
    assert [f.code.value for f in v.file_findings] == ["FF01"]
    assert reason.lower() in v.file_findings[0].description.lower()
    assert not out1.exists()
    doc = etree.parse(str(out2))
    assert doc.findtext(".//s:GrpSts", namespaces=NS2) == "RJCT"
    assert doc.findtext(".//s:StsRsnInf/s:Rsn/s:Cd", namespaces=NS2) == "FF01"


def test_csv_truncated_mid_row_rejects_only_that_row_under_pass_valid(ref, tmp_path):
    content = data_bytes("csv_eu_valid.csv")
    content = content[: content.rindex(b";") - 3]  # cut inside the last row
    result, out1, _ = _run(ref, tmp_path, content, client="GLOBEX02")
    v = result.validation
    assert (v.group_status, v.accepted, v.rejected) == ("PART", 3, 1)
    assert [f.code.value for r in v.rejections for f in r.findings][0] == "FF01"
    validate_stream(str(out1))


def test_file_name_is_never_used_content_decides(ref, tmp_path):
    # a NACHA file under a client that only has CSV+PAIN001 agreed: detected as NACHA, refused as not agreed
    result, _, _ = _run(ref, tmp_path, data_bytes("nacha_valid.ach"), client="GLOBEX02")
    assert result.detection.format.value == "NACHA"
    assert "not agreed" in result.validation.file_findings[0].description


def test_unknown_client_gets_a_rejection_report(ref, tmp_path):
    result, out1, out2 = _run(ref, tmp_path, data_bytes("csv_v1_valid.csv"), client="NOBODY")
    assert result.validation.group_status == "RJCT" and not out1.exists() and out2.exists()
    assert result.validation.file_findings[0].code.value == "NARR"


def test_generated_files_pass_end_to_end(ref, tmp_path):
    buf = io.BytesIO()
    generate_csv(buf, 1500, execution_date=date(2026, 11, 23), bad_every=500)
    result, out1, _ = _run(ref, tmp_path, buf.getvalue(), client="GLOBEX02")
    # GLOBEX02 expects CSV-EU: a CSV-v1 file lacks its columns
    assert result.validation.file_findings[0].code.value == "FF01"
    from file_pipeline.domain.reference import ReferenceData, load_seed_entities

    rows = load_seed_entities()
    for row in rows:
        if row["RowKey"] == "ACME001":
            row["RejectionPolicy"] = "pass-valid"
    lenient = ReferenceData.from_entities(rows)
    result, out1, _ = _run(lenient, tmp_path, buf.getvalue())
    v = result.validation
    assert (v.group_status, v.accepted, v.rejected) == ("PART", 1497, 3)
    validate_stream(str(out1))
    buf = io.BytesIO()
    generate_nacha(buf, 1200, effective_date=date(2026, 11, 23), entries_per_batch=500, with_addenda_every=3)
    result, out1, _ = _run(ref, tmp_path, buf.getvalue(), client="INITECH03")
    assert (result.validation.group_status, result.pain001.nb_of_txs) == ("ACCP", 1200)
    validate_stream(str(out1))


# ------------------------------------------------------------------------ safe CSV
@pytest.mark.parametrize(
    "value,expected",
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


def test_error_report_is_formula_safe(ref, tmp_path):
    content = (
        data_bytes("csv_v1_valid.csv")
        .replace(b"Jan de Vries", b'=HYPERLINK("http://x")')
        .replace(b"ACME-0002", b"@SUM(1)")
        .replace(b"99.5,EUR", b"0,EUR")
    )
    result, _, _ = _run(ref, tmp_path, content)
    buf = io.BytesIO()
    n = write_error_report(buf, result.validation.rejections)
    rows = list(csv.reader(io.StringIO(buf.getvalue().decode("utf-8"))))
    assert n == 1 and rows[0][0] == "index"
    assert rows[1][2] == "'@SUM(1)" and rows[1][6] == "AM01"
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)


def test_write_rows_quotes_and_counts():
    buf = io.BytesIO()
    assert write_rows(buf, [["a,b", "-3", 'q"uote']], header=["h1", "h2", "h3"]) == 1
    assert buf.getvalue().decode() == 'h1,h2,h3\r\n"a,b",\'-3,"q""uote"\r\n'


def test_accept_run_takes_the_runs_instead_of_accept_one_by_one(ref):
    from file_pipeline.domain.pipeline import validate_source

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
