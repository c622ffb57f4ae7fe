"""Official ISO 20022 XSDs (shipped by the ``sepaxml`` package) and XSD validation.

``sepaxml`` keeps the schemas as package data in ``sepaxml/schemas/``
(pain.001.001.03/.09/.10/.11, pain.008.*); they are loaded with
:mod:`importlib.resources` and compiled once per process. ``sepaxml`` ships no
pain.002 schema.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import BinaryIO

from lxml import etree

from file_pipeline.domain.model import FileRejected
from file_pipeline.domain.reason_codes import ReasonCode

SCHEMA_PACKAGE = "sepaxml"
SCHEMA_FOLDER = "schemas"


def safe_parser_options() -> dict:
    """lxml options for untrusted XML: no entity expansion, no network, no DTD."""
    return dict(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, dtd_validation=False
    )


@cache
def load_schema(message: str) -> etree.XMLSchema:
    """Compiled XSD for ``message`` such as ``"pain.001.001.09"``."""
    ref = resources.files(SCHEMA_PACKAGE) / SCHEMA_FOLDER / f"{message}.xsd"
    if not ref.is_file():
        raise LookupError(f"{SCHEMA_PACKAGE} ships no schema for {message}")
    parser = etree.XMLParser(**safe_parser_options())
    with ref.open("rb") as fh:
        return etree.XMLSchema(etree.parse(fh, parser))


def validate_stream(source: BinaryIO | str, message: str = "pain.001.001.09") -> None:
    """Validate an XML document against the official XSD while streaming it.

    Memory stays flat: each ``CdtTrfTxInf``/``PmtInf`` is dropped once parsed.
    Raises :class:`FileRejected` (``FF01``) with the first schema error.
    """
    schema = load_schema(message)
    ns = f"urn:iso:std:iso:20022:tech:xsd:{message}"
    root = f"{{{ns}}}Document"
    tags = (f"{{{ns}}}CdtTrfTxInf", f"{{{ns}}}PmtInf", root)
    closed = False
    try:
        for _, elem in etree.iterparse(
            source, events=("end",), tag=tags, schema=schema, **safe_parser_options()
        ):
            if elem.tag == root:
                closed = True
            elem.clear()
            parent = elem.getparent()
            if parent is not None:
                while elem.getprevious() is not None:
                    del parent[0]
    except etree.XMLSyntaxError as exc:
        raise FileRejected(ReasonCode.FF01, f"not valid against {message}.xsd: {exc.msg or exc}") from None
    if not closed:  # iterparse with a schema does not raise on premature end of data
        raise FileRejected(ReasonCode.FF01, f"not a complete {message} document (truncated?)")
