import io

import pytest

from file_pipeline.domain.model import FileFormat, FileRejected
from file_pipeline.domain.reason_codes import IsoReason
from file_pipeline.formats.detect import HEAD_SIZE, detect_format, sniff

from .conftest import data_bytes


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("csv_v1_valid.csv", FileFormat.CSV),
        ("csv_eu_valid.csv", FileFormat.CSV),
        ("pain001_09_valid.xml", FileFormat.PAIN001_09),
        ("pain001_03_valid.xml", FileFormat.PAIN001_03),
        ("nacha_valid.ach", FileFormat.NACHA),
    ],
)
def test_detects_each_sample_from_content(name, fmt):
    assert detect_format(data_bytes(name), complete=True).format is fmt


def test_detection_ignores_bom_whitespace_and_prefixed_roots():
    xml = (
        b"\xef\xbb\xbf\n  <?xml version='1.0'?>\n<!-- c --><p:Document "
        b"xmlns:p='urn:iso:std:iso:20022:tech:xsd:pain.001.001.03'><p:CstmrCdtTrfInitn/></p:Document>"
    )
    assert detect_format(xml, complete=True).format is FileFormat.PAIN001_03


def test_nacha_without_line_breaks_is_detected():
    records = data_bytes("nacha_valid.ach").replace(b"\n", b"")
    assert detect_format(records[:HEAD_SIZE]).format is FileFormat.NACHA


@pytest.mark.parametrize(
    ("content", "complete", "reason"),
    [
        (b"", True, "empty"),
        (b" \r\n\t ", True, "only whitespace"),
        (b"PK\x03\x04\x14\x00\x06\x00", True, "ZIP archive"),
        (b"%PDF-1.7\n", True, "PDF"),
        (b"\x1f\x8b\x08\x00", True, "gzip"),
        (b"EndToEndId,Amount\x00\x00\x00", True, "NUL"),
        (bytes(range(1, 32)) * 20, True, "control characters"),
        (b"\xff\xfe<\x00D\x00", True, "UTF-16"),
        (b"101 026009593 0260095932611", True, "truncated"),
        (b"101 0260095\n", True, "94"),
        (b"<?xml version='1.0'?>\n<Docu", True, "truncated"),
        (b"<?xml version='1.0'?>\n", True, "truncated"),
        (b"<?xml version='1.0' encoding='ISO-8859-1'?><Document/>", True, "UTF-8"),
        (b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:pain.001.001.11'/>", True, "not supported"),
        (b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:pain.008.001.08'/>", True, "not a supported"),
        (b"<html><body>hi</body></html>", True, "not an ISO 20022"),
        (b"<!DOCTYPE Document><Document/>", True, "DOCTYPE"),
        (b'{"payments": []}', True, "unrecognised"),
        (b"just some words\nand more words\n", True, "unrecognised"),
    ],
)
def test_rejections_have_a_reason(content, complete, reason):
    with pytest.raises(FileRejected) as exc:
        detect_format(content, complete=complete)
    assert exc.value.code is IsoReason.FF01
    assert reason.lower() in exc.value.description.lower()


def test_overlong_prolog_is_rejected_not_scanned_forever():
    head = b"<?xml version='1.0'?>" + b"<!--" + b"x" * HEAD_SIZE
    with pytest.raises(FileRejected, match="prolog"):
        detect_format(head[:HEAD_SIZE], complete=False)


def test_sniff_replays_the_whole_stream():
    content = data_bytes("pain001_09_valid.xml") * 3  # longer than any single read
    big = content + b" " * (HEAD_SIZE * 2)
    detection, stream = sniff(io.BytesIO(big))
    assert detection.format is FileFormat.PAIN001_09
    assert stream.read() == big
