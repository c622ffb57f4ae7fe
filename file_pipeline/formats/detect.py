"""Detect the format of an uploaded payment file from its first bytes.

The blob name is never trusted: ``payroll.csv`` may hold a pain.001 and the
other way round. :func:`detect_format` looks at the head of the content only and
either returns a :class:`Detection` or raises
:class:`~file_pipeline.domain.model.FileRejected` (reason ``FF01``) with a
sentence a person can act on: empty file, binary content (zip/xlsx, pdf, gzip,
NUL bytes), UTF-16, DOCTYPE in XML, unknown XML document, unsupported pain.001
version, truncated first record, unrecognised text.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any, BinaryIO

from file_pipeline.domain.model import FileFormat, FileRejected
from file_pipeline.domain.reason_codes import IsoReason

HEAD_SIZE = 64 * 1024
PAIN001_NS = {
    "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03": FileFormat.PAIN001_03,
    "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09": FileFormat.PAIN001_09,
}
_MAGIC = (
    (b"PK\x03\x04", "a ZIP archive (an .xlsx workbook?)"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xd0\xcf\x11\xe0", "an OLE document (.xls/.doc)"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"7z\xbc\xaf", "a 7-zip archive"),
)
_CSV_DELIMS = (b",", b";", b"\t", b"|")
_XML_NAME = rb"[A-Za-z_][\w.\-]*"
_PROLOG_ITEM = re.compile(
    rb"\s+|<\?xml\s[^>]*\?>|<\?(?!xml[\s?])" + _XML_NAME + rb"(?:\s[^>]*)?\?>|<!--(?:(?!-->).)*-->", re.S
)
_ROOT_TAG = re.compile(rb"<(?:(" + _XML_NAME + rb"):)?(" + _XML_NAME + rb")((?:\s+[^<>]*?)?)\s*/?>", re.S)
_XMLNS = re.compile(rb"""xmlns(?::(""" + _XML_NAME + rb"""))?\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_ENCODING = re.compile(rb"""<\?xml[^>]*\sencoding\s*=\s*["']([A-Za-z0-9._\-]+)["']""")


@dataclass(frozen=True)
class Detection:
    format: FileFormat
    namespace: str = ""  # XML only
    note: str = ""


def _reject(text: str) -> FileRejected:
    return FileRejected(IsoReason.FF01, text)


def scan_xml_prolog(head: bytes, complete: bool) -> tuple[str, str]:
    """Walk the XML prolog up to the root start tag; return (root local name, root namespace).

    Rejects a DOCTYPE (the way in for billion-laughs and XXE), a non-UTF-8
    encoding declaration and prologs too long to inspect.
    """
    m = _ENCODING.match(head)
    if m and m.group(1).lower().replace(b"_", b"-") not in (b"utf-8", b"utf8"):
        raise _reject(
            f"XML encoding {m.group(1).decode('ascii')} is not accepted; ISO 20022 files must be UTF-8"
        )
    pos = 0
    while True:
        m = _PROLOG_ITEM.match(head, pos)
        if not m:
            break
        pos = m.end()
    rest = head[pos:]
    if rest[:9].upper() == b"<!DOCTYPE":
        raise _reject(
            "XML with a DOCTYPE declaration is not accepted (entity expansion / external entity risk)"
        )
    if not rest or rest[:2] in (b"<!", b"<?"):
        if complete:
            raise _reject("XML is truncated before its root element")
        raise _reject(f"XML prolog is longer than {HEAD_SIZE} bytes or malformed; not accepted")
    if rest[:1] != b"<":
        raise _reject("content after the XML prolog is not an element")
    m = _ROOT_TAG.match(rest)
    if not m:
        if complete or len(rest) < 4096:
            raise _reject("XML is truncated inside its root element tag")
        raise _reject("XML root element tag is malformed")
    prefix, local, attrs = m.group(1), m.group(2), m.group(3)
    ns = b""
    for am in _XMLNS.finditer(attrs):
        if am.group(1) == prefix:
            ns = am.group(2) if am.group(2) is not None else am.group(3)
    return local.decode("utf-8", "replace"), ns.decode("utf-8", "replace")


def detect_format(head: bytes, complete: bool = False) -> Detection:
    """Classify ``head`` (the first bytes of a file). ``complete`` says head is the whole file."""
    body = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    if not body or not body.strip(b" \t\r\n\x00"):
        raise _reject("the file is empty" if not body else "the file contains only whitespace")
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise _reject(f"binary content: the file is {what}, not a payment file")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _reject("UTF-16 text is not accepted; send UTF-8 (or the agreed 8-bit encoding)")
    if b"\x00" in head:
        raise _reject("binary content: the file contains NUL bytes")
    sample = head[:8192]
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13))
    if controls > max(2, len(sample) // 100):
        raise _reject("binary content: too many control characters for a text file")
    text = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    stripped = text.lstrip()
    if stripped.startswith(b"<"):
        local, ns = scan_xml_prolog(stripped, complete)
        if local != "Document":
            raise _reject(f"XML root element <{local}> is not an ISO 20022 <Document>")
        fmt = PAIN001_NS.get(ns)
        if fmt is None:
            if ns.startswith("urn:iso:std:iso:20022:tech:xsd:pain.001."):
                raise _reject(
                    f"pain.001 version {ns.rsplit(':', 1)[-1]} is not supported (use .001.03 or .001.09)"
                )
            raise _reject(
                f"XML namespace {ns or '(none)'} is not a supported message (pain.001.001.03 "
                "or pain.001.001.09)"
            )
        return Detection(fmt, namespace=ns)
    if text.startswith(b"101"):
        end = text.find(b"\n")
        first = text[: end if end >= 0 else len(text)].rstrip(b"\r")
        if len(first) > 94 and (end < 0 or len(first) % 94 == 0):
            first = text[:94]  # NACHA without line breaks (perhaps one at the end): fixed 94-byte records
        if len(first) == 94:
            return Detection(FileFormat.NACHA)
        if len(first) < 94 and end < 0 and complete:
            raise _reject(f"NACHA file is truncated: first record has {len(first)} of 94 characters")
        if len(first) < 94 and end < 0:
            raise _reject("NACHA file is truncated inside its first record")
        raise _reject(f"looks like NACHA but the file header record has {len(first)} characters, not 94")
    first_line = text.split(b"\n", 1)[0]
    if any(d in first_line for d in _CSV_DELIMS):
        return Detection(FileFormat.CSV)
    raise _reject("unrecognised content: not CSV, pain.001 XML or NACHA")


class _PrefixedRaw(io.RawIOBase):
    """Raw stream that replays ``head`` and then continues with ``rest``."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = memoryview(head)
        self._pos = 0
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._pos < len(self._head):
            n = min(len(buffer), len(self._head) - self._pos)
            buffer[:n] = self._head[self._pos : self._pos + n]
            self._pos += n
            return n
        data = self._rest.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n


def peek_head(stream: BinaryIO, size: int = HEAD_SIZE) -> tuple[bytes, BinaryIO, bool]:
    """Read up to ``size`` bytes; return (head, a stream that starts at the same place, complete)."""
    chunks = []
    got = 0
    while got < size:
        chunk = stream.read(size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    head = b"".join(chunks)
    complete = got < size
    return head, io.BufferedReader(_PrefixedRaw(head, stream), buffer_size=1 << 16), complete


def sniff(stream: BinaryIO) -> tuple[Detection, BinaryIO]:
    """Detect the format of a (non-seekable) binary stream; return it with a replaying stream."""
    head, replay, complete = peek_head(stream)
    return detect_format(head, complete), replay
