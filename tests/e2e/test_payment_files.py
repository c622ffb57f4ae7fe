"""Payment-file pipeline end to end: a blob dropped in Azurite, the blob trigger in devhost,
Service Bus hand-offs, files out, status over HTTP and events on Event Grid."""

from __future__ import annotations

import io
import time
import uuid
from pathlib import Path
from typing import Any

from azure.storage.blob import BlobServiceClient
from lxml import etree

from file_pipeline.formats.xsd import load_schema

from .conftest import App, call

SAMPLES = Path(__file__).resolve().parents[2] / "devstack" / "samples" / "payments"


def drop(app: App, client: str, sample: str, content: bytes | None = None) -> str:
    blobs = BlobServiceClient.from_connection_string(app.stack.storage_connection)
    container = blobs.get_container_client("payment-files-in")
    if not container.exists():
        container.create_container()
    name = f"e2e-{uuid.uuid4().hex[:8]}-{sample}"
    container.upload_blob(f"{client}/{name}", content if content is not None else (SAMPLES / sample).read_bytes())
    return name


def settle(app: App, client: str, name: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: Any = None
    while time.monotonic() < deadline:
        code, body, _ = call("GET", f"{app.api}/payment-files/{client}/{name}")
        if code == 200 and body["state"] in ("Completed", "Rejected"):
            return body
        time.sleep(0.3)
    raise AssertionError(f"{client}/{name} did not settle: {body}")


def read(app: App, location: str) -> bytes:
    container, _, name = location.partition("/")
    blobs = BlobServiceClient.from_connection_string(app.stack.storage_connection)
    return blobs.get_blob_client(container, name).download_blob().readall()


def test_valid_csv_becomes_an_xsd_valid_pain001_and_an_accp_report(app: App) -> None:
    name = drop(app, "ACME001", "csv_v1_valid.csv")
    status = settle(app, "ACME001", name)
    assert (status["state"], status["groupStatus"]) == ("Completed", "ACCP")
    output = etree.parse(io.BytesIO(read(app, status["locations"]["output"])))
    load_schema("pain.001.001.09").assertValid(output)
    assert b"ACCP" in read(app, status["locations"]["statusReport"])
    app.wait_event_on("payments", "PaymentFileCreated", status["fileId"])


def test_nacha_and_pain001_03_inputs_complete(app: App) -> None:
    nacha = drop(app, "INITECH03", "nacha_valid.ach")
    pain = drop(app, "GLOBEX02", "pain001_03_valid.xml")
    assert settle(app, "INITECH03", nacha)["state"] == "Completed"
    assert settle(app, "GLOBEX02", pain)["state"] == "Completed"


def test_reject_file_policy_rejects_moves_and_reports(app: App) -> None:
    name = drop(app, "ACME001", "csv_v1_bad_iban.csv")
    status = settle(app, "ACME001", name)
    assert (status["state"], status["groupStatus"]) == ("Rejected", "RJCT")
    assert "AC01" in status["transactionReasons"]
    assert read(app, status["locations"]["rejected"]) == (SAMPLES / "csv_v1_bad_iban.csv").read_bytes()
    assert "output" not in status["locations"]
    app.wait_event_on("payments", "PaymentFileRejected", status["fileId"])


def test_pass_valid_policy_passes_the_valid_ones(app: App) -> None:
    name = drop(app, "GLOBEX02", "csv_eu_mixed.csv")
    status = settle(app, "GLOBEX02", name)
    assert (status["state"], status["groupStatus"]) == ("Completed", "PART")
    assert status["counts"]["accepted"] > 0 and status["counts"]["rejected"] > 0


def test_malicious_xml_is_rejected_not_expanded(app: App) -> None:
    name = drop(app, "GLOBEX02", "billion_laughs.xml")
    status = settle(app, "GLOBEX02", name)
    assert status["state"] == "Rejected"
    assert [r["code"] for r in status["reasons"]] == ["FF01"]


def test_identical_resubmission_is_a_du01_duplicate(app: App) -> None:
    unique = b"<MsgId>E2E" + uuid.uuid4().hex[:6].encode()
    content = (SAMPLES / "pain001_03_valid.xml").read_bytes().replace(b"<MsgId>", unique)
    first = drop(app, "GLOBEX02", "dup.xml", content)
    assert settle(app, "GLOBEX02", first)["state"] == "Completed"
    second = drop(app, "GLOBEX02", "dup.xml", content)
    status = settle(app, "GLOBEX02", second)
    assert status["state"] == "Rejected" and "DU01" in [r["code"] for r in status["reasons"]]
