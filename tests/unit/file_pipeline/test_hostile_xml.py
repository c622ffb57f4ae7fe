"""Hostile XML is rejected with a reason and never expanded, fetched or included."""

import io
from pathlib import Path

import pytest
from lxml import etree

from file_pipeline.domain.model import FileFormat, FileRejected
from file_pipeline.domain.reason_codes import IsoReason
from file_pipeline.formats.detect import HEAD_SIZE, detect_format
from file_pipeline.formats.pain001_reader import Pain001Reader
from file_pipeline.formats.xsd import safe_parser_options

from .conftest import DATA
from .fakes import process

HOSTILE = DATA / "hostile"
WITH_DOCTYPE = [
    "billion_laughs.xml",
    "xxe_file.xml",
    "xxe_http.xml",
    "xxe_parameter_entity.xml",
    "external_dtd.xml",
    "doctype_after_comment.xml",
]
WITHOUT_DOCTYPE = ["xinclude.xml", "undeclared_entity.xml"]


def test_corpus_is_complete():
    assert sorted(p.name for p in HOSTILE.glob("*.xml")) == sorted(WITH_DOCTYPE + WITHOUT_DOCTYPE)


@pytest.mark.parametrize("name", WITH_DOCTYPE)
def test_doctype_is_rejected_by_detection(name):
    with pytest.raises(FileRejected, match="DOCTYPE") as exc:
        detect_format((HOSTILE / name).read_bytes(), complete=True)
    assert exc.value.code is IsoReason.FF01


@pytest.mark.parametrize("name", WITH_DOCTYPE)
def test_doctype_is_rejected_by_the_reader_itself(name):
    with pytest.raises(FileRejected, match="DOCTYPE"):
        Pain001Reader(io.BytesIO((HOSTILE / name).read_bytes()))


@pytest.mark.parametrize(
    ("name", "match"), [("xinclude.xml", "XInclude"), ("undeclared_entity.xml", "not (well-formed|valid)")]
)
def test_xinclude_and_entity_references_without_doctype_are_rejected(name, match):
    content = (HOSTILE / name).read_bytes()
    assert detect_format(content, complete=True).format is FileFormat.PAIN001_09  # looks fine at first
    for validate_schema in (True, False):  # rejected even without the XSD
        with pytest.raises(FileRejected, match=match) as exc:
            list(Pain001Reader(io.BytesIO(content), validate_schema=validate_schema))
        assert exc.value.code is IsoReason.FF01


@pytest.mark.parametrize("name", WITH_DOCTYPE + WITHOUT_DOCTYPE)
def test_pipeline_answers_hostile_files_with_a_rejection_report(name):
    done = process((HOSTILE / name).read_bytes(), "ACME001", name="evil.xml")
    assert done.record.group_status == "RJCT"
    assert [code for code, _ in done.record.reasons] == [IsoReason.FF01.value]
    assert done.pain001 is None and done.pain002 is not None
    report = done.pain002.decode()
    assert "<GrpSts>RJCT</GrpSts>" in report and "<Cd>FF01</Cd>" in report
    assert "lollol" not in report and "root:" not in report  # nothing expanded or included


def test_external_entity_target_never_leaks(ref, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-MARKER")
    xml = (HOSTILE / "xxe_file.xml").read_text().replace("file:///etc/passwd", secret.as_uri())
    for content in (xml, xml.replace("<!DOCTYPE", "<!--x-->\n<!DOCTYPE")):
        with pytest.raises(FileRejected) as exc:
            list(Pain001Reader(io.BytesIO(content.encode())))
        assert "TOPSECRET" not in str(exc.value)
        done = process(content.encode(), "ACME001", name="evil.xml")
        assert done.pain002 is not None and b"TOPSECRET" not in done.pain002
        assert done.record.group_status == "RJCT"
        assert all("TOPSECRET" not in text for _, text in done.record.reasons)


def test_doctype_hidden_behind_a_long_prolog_is_rejected():
    xml = (
        b"<?xml version='1.0'?>\n<!--"
        + b"x" * (HEAD_SIZE + 10)
        + b"-->\n"
        + (HOSTILE / "billion_laughs.xml").read_bytes().split(b"?>", 1)[1]
    )
    with pytest.raises(FileRejected, match="prolog"):
        Pain001Reader(io.BytesIO(xml))


def test_utf16_xml_is_rejected():
    xml = (HOSTILE / "billion_laughs.xml").read_text().replace('encoding="UTF-8"', 'encoding="UTF-16"')
    with pytest.raises(FileRejected, match="UTF-16"):
        detect_format(xml.encode("utf-16"), complete=True)


def test_parser_options_alone_do_not_expand_entities():
    """Second line of defence: even if a DOCTYPE reached lxml, our options do not expand or fetch."""
    content = (HOSTILE / "billion_laughs.xml").read_bytes()
    try:
        texts = [
            el.text or ""
            for _, el in etree.iterparse(io.BytesIO(content), events=("end",), **safe_parser_options())
        ]
    except etree.XMLSyntaxError:
        return  # refusing is fine too
    assert max(len(t) for t in texts) < 1000

    xxe = (HOSTILE / "xxe_file.xml").read_bytes()
    try:
        texts = [
            el.text or ""
            for _, el in etree.iterparse(io.BytesIO(xxe), events=("end",), **safe_parser_options())
        ]
    except etree.XMLSyntaxError:
        return
    assert not any("root:" in t for t in texts)


def test_hostile_corpus_files_are_small_so_rejection_is_not_size_driven():
    assert all(p.stat().st_size < 4096 for p in Path(HOSTILE).glob("*.xml"))
