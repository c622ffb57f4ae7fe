"""Hostile payment files dropped into Blob Storage: each ends ``Rejected`` with an ISO reason and a
status report (never ``Completed``, never a crash loop), and a good file still completes after."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections.abc import Callable

import pytest
from azure.storage.blob import BlobServiceClient

from devstack.samples import generate_csv
from tests.e2e.test_payment_files import settle
from tests.unit.file_pipeline.conftest import data_bytes
from tests.unit.file_pipeline.test_nacha import join, lines, set_field

from .conftest import App

CSV = data_bytes("csv_v1_valid.csv").decode()
HEADER, *ROWS = CSV.splitlines()


def _csv(*rows: str, header: str = HEADER) -> bytes:
    return ("\r\n".join([header, *rows]) + "\r\n").encode()


def _row(**changes: str) -> str:
    """The first valid row with some of its cells replaced (by column name)."""
    names = HEADER.split(",")
    cells = ROWS[0].split(",")
    for name, value in changes.items():
        cells[names.index(name)] = value
    return ",".join(cells)


def _nacha(edit: Callable[[list[str]], list[str]]) -> bytes:
    return join(edit(lines()))


CASES: dict[str, tuple[str, str, bytes]] = {
    # ACME001: CSV-v1, policy reject-file: one bad row rejects the file
    "empty file": ("ACME001", "csv", b""),
    "header only": ("ACME001", "csv", (HEADER + "\r\n").encode()),
    "nul bytes": ("ACME001", "csv", b"\x00" * 4096),
    "binary": ("ACME001", "csv", bytes(range(256)) * 64),
    "utf-16 text": ("ACME001", "csv", CSV.encode("utf-16")),
    "invalid utf-8": ("ACME001", "csv", _csv(*ROWS).replace("Müller".encode(), b"M\xc3\x28ller")),
    "5000 extra cells": ("ACME001", "csv", _csv(ROWS[0] + ",x" * 5000, *ROWS[1:])),
    "too few cells": ("ACME001", "csv", _csv(",".join(ROWS[0].split(",")[:3]), *ROWS[1:])),
    "unterminated quote": ("ACME001", "csv", _csv('"E2E-1,' + ROWS[0], *ROWS[1:])),
    "formula injection with a bad IBAN": ("ACME001", "csv", _csv(_row(CreditorName="=cmd|' /C calc'!A0",
                                                                      CreditorIBAN="DE00370400440532013000"))),
    "huge field": ("ACME001", "csv", _csv(_row(Remittance="x" * 1_000_000))),
    "negative amount": ("ACME001", "csv", _csv(_row(Amount="-10.00"))),
    "zero amount": ("ACME001", "csv", _csv(_row(Amount="0.00"))),
    "amount in exponent": ("ACME001", "csv", _csv(_row(Amount="1e5"))),
    "amount NaN": ("ACME001", "csv", _csv(_row(Amount="NaN"))),
    "amount of 20 digits": ("ACME001", "csv", _csv(_row(Amount="9" * 20 + ".00"))),
    "unknown currency": ("ACME001", "csv", _csv(_row(Currency="XXX"))),
    "impossible date": ("ACME001", "csv", _csv(_row(ExecutionDate="2026-02-30"))),
    "missing mandatory column": ("ACME001", "csv", _csv(*ROWS, header=HEADER.replace("Amount", "Amt"))),
    "semicolons": ("ACME001", "csv", CSV.replace(",", ";").encode()),
    "duplicate end-to-end ids": ("ACME001", "csv", _csv(ROWS[0], ROWS[0])),
    "plain text": ("ACME001", "csv", b"Dear bank, please pay everyone. Thanks!\n"),
    # INITECH03: NACHA
    "nacha truncated": ("INITECH03", "ach", _nacha(lambda L: L[:5])),
    "nacha record of 93": ("INITECH03", "ach", _nacha(lambda L: [*L[:2], L[2][:93], *L[3:]])),
    "nacha addenda type 99": ("INITECH03", "ach", _nacha(lambda L: [*L[:3], set_field(L[3], 1, "99"), *L[4:]])),
    "nacha addenda type 98": ("INITECH03", "ach", _nacha(lambda L: [*L[:3], set_field(L[3], 1, "98"), *L[4:]])),
    "nacha batch total off": (
        "INITECH03", "ach", _nacha(lambda L: [*L[:6], set_field(L[6], 32, "000000858826"), *L[7:]])),
    "nacha entry hash off": (
        "INITECH03", "ach", _nacha(lambda L: [*L[:11], set_field(L[11], 21, "0023900987"), *L[12:]])),
    "nacha non-numeric amount": (
        "INITECH03", "ach", _nacha(lambda L: [*L[:2], set_field(L[2], 29, "00002500AB"), *L[3:]])),
    "nacha no file header": ("INITECH03", "ach", _nacha(lambda L: L[1:])),
    "nacha non-ascii": ("INITECH03", "ach", data_bytes("nacha_valid.ach").replace(b"PETER GIBBONS",
                                                                                  "PETER GIBBÖNS".encode())),
    # XML
    **{f"xml {name}": ("ACME001", "xml", data_bytes(f"hostile/{name}.xml"))
       for name in ("billion_laughs", "xxe_file", "xxe_http", "xinclude", "external_dtd", "xxe_parameter_entity",
                    "doctype_after_comment", "undeclared_entity")},
    "xml nested 100000 deep": ("ACME001", "xml", b"<a>" * 100_000 + b"</a>" * 100_000),
    "xml truncated pain.001": ("ACME001", "xml", data_bytes("pain001_09_valid.xml")[:900]),
    "xml not well formed": ("ACME001", "xml", b"<Document><CstmrCdtTrfInitn></Document>"),
}


@pytest.fixture(scope="module")
def uploaded(app: App) -> dict[str, tuple[str, str]]:
    blobs = BlobServiceClient.from_connection_string(app.stack.storage_connection)
    container = blobs.get_container_client("payment-files-in")
    if not container.exists():
        container.create_container()
    names = {}
    run = uuid.uuid4().hex[:6]
    for i, (case, (client, extension, content)) in enumerate(CASES.items()):
        name = f"hostile-{run}-{i:03d}.{extension}"
        container.upload_blob(f"{client}/{name}", content)
        names[case] = (client, name)
    return names


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_payment_file_is_rejected_with_a_reason_and_a_report(app: App, uploaded, case: str) -> None:
    view = settle(app, *uploaded[case])
    assert view["state"] == "Rejected", view
    reasons = [r["code"] for r in view["reasons"]] + list(view.get("transactionReasons", {}))
    assert reasons and all(len(code) == 4 for code in reasons), view
    assert view["locations"].get("statusReport"), view


def test_a_good_file_still_completes_after_the_hostile_ones(app: App, uploaded) -> None:
    out = io.BytesIO()
    generate_csv(out, 20, execution_date=dt.date(2026, 11, 23), seed=99, prefix=f"G{uuid.uuid4().hex[:6]}")
    name = f"good-{uuid.uuid4().hex[:6]}.csv"
    container = BlobServiceClient.from_connection_string(app.stack.storage_connection).get_container_client(
        "payment-files-in")
    container.upload_blob(f"ACME001/{name}", out.getvalue())
    assert settle(app, "ACME001", name)["state"] == "Completed"
