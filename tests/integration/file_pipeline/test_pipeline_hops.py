"""Each hop and each outcome of the payment-file pipeline, through the decorated handlers called
with real trigger objects, on real adapters against Azurite, the Service Bus emulator and the
Event Grid emulator."""

from __future__ import annotations

import io
import json

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from lxml import etree

from choreography.entities import (
    FILES_TABLE,
    INPUT_CONTAINER,
    OUTPUT_CONTAINER,
    REJECTED_CONTAINER,
    REPORTS_CONTAINER,
    WORK_CONTAINER,
)
from choreography.runtime import reset_runtime
from devstack.stack import EventGridEmulator
from file_pipeline import handlers
from file_pipeline.domain.files import file_id_for
from file_pipeline.formats.xsd import validate_stream
from tests.support.waiting import wait_until
from tests.unit.file_pipeline.conftest import data_bytes

from .conftest import Inbox, Uploaded, blob_trigger, http_get, unique_name, upload

VALIDATED, ADAPTED, COMPENSATION, DEADLETTER = (
    "payment-files-validated", "payment-files-adapted", "payment-files-compensation", "deadletter")
NS2 = {"s": "urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"}
NS1 = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"}


def read(blobs: BlobServiceClient, container: str, name: str) -> bytes:
    return blobs.get_blob_client(container, name).download_blob().readall()


def exists(blobs: BlobServiceClient, container: str, name: str) -> bool:
    return blobs.get_blob_client(container, name).exists()


def grp_sts(blobs: BlobServiceClient, client: str, file_id: str) -> str:
    doc = etree.parse(io.BytesIO(read(blobs, REPORTS_CONTAINER, f"{client}/{file_id}.xml")))
    return doc.findtext(".//s:GrpSts", namespaces=NS2)


def row(tables: TableServiceClient, client: str, file_id: str) -> dict:
    return dict(tables.get_table_client(FILES_TABLE).get_entity(client, f"file-{file_id}"))


def claims_of(tables: TableServiceClient, file_id: str) -> list[str]:
    rows = tables.get_table_client(FILES_TABLE).query_entities("fileId eq @f", parameters={"f": file_id})
    return [r["RowKey"] for r in rows if r["RowKey"].startswith("dup-")]


def status(path: str) -> tuple[int, dict]:
    response = handlers.file_pipeline_status(http_get(path))
    return response.status_code, json.loads(response.get_body())


def run_to_completion(inbox: Inbox, file_id: str) -> None:
    """FileValidator has run: carry the file through FileAdaptor and FileCreator."""
    handlers.file_pipeline_adapt(inbox.for_file(VALIDATED, file_id, "PaymentFileValidated").trigger())
    handlers.file_pipeline_create(inbox.for_file(ADAPTED, file_id, "PaymentFileAdapted").trigger())


def event(eventgrid: EventGridEmulator, kind: str, file_id: str) -> dict:
    [found] = wait_until(lambda: [e for e in eventgrid.events("payments") if e["id"] == f"{kind}:{file_id}"],
                         f"{kind} for {file_id}")
    return found["event"]


@pytest.mark.parametrize(("sample", "client"), [
    ("csv_v1_valid.csv", "ACME001"),
    ("nacha_valid.ach", "INITECH03"),
    ("pain001_03_valid.xml", "GLOBEX02"),
])
def test_a_valid_file_becomes_an_xsd_valid_pain001_with_an_accp_report(app, blob_service, tables, inbox,
                                                                        eventgrid, sample, client):
    uploaded = upload(blob_service, client, unique_name("in") + "/" + sample, data_bytes(sample))
    handlers.file_pipeline_validate(uploaded.trigger())
    file_id = uploaded.file_id
    assert row(tables, client, file_id)["state"] == "Validated"
    assert len([n for n in blob_service.get_container_client(WORK_CONTAINER).list_blob_names(
        name_starts_with=file_id)]) >= 1  # the claim check: transactions in a work blob
    run_to_completion(inbox, file_id)

    output = read(blob_service, OUTPUT_CONTAINER, f"{client}/{file_id}.xml")
    validate_stream(io.BytesIO(output), "pain.001.001.09")
    assert etree.parse(io.BytesIO(output)).findtext(".//p:GrpHdr/p:MsgId", namespaces=NS1) == file_id
    assert grp_sts(blob_service, client, file_id) == "ACCP"
    record = row(tables, client, file_id)
    assert record["state"] == "Completed" and record["notified"] is True
    created = event(eventgrid, "PaymentFileCreated", file_id)
    assert created["source"] == "/payment-files" and created["subject"] == f"/payment-files/{client}/{file_id}"
    assert created["data"]["locations"]["output"] == f"{OUTPUT_CONTAINER}/{client}/{file_id}.xml"
    assert list(blob_service.get_container_client(WORK_CONTAINER).list_blob_names(name_starts_with=file_id)) == []
    code, body = status(f"{client}/{uploaded.name}")
    assert code == 200 and body["state"] == "Completed" and body["groupStatus"] == "ACCP"
    assert body["locations"]["statusReport"] == f"{REPORTS_CONTAINER}/{client}/{file_id}.xml"


def _bad_acme_csv(tag: str) -> bytes:
    text = data_bytes("csv_v1_valid.csv").decode().replace("ACME-", f"{tag}-")
    return text.replace("DE62370400440532013001", "DE00370400440532013001").encode()


def test_bad_transactions_under_reject_file_reject_the_file(app, blob_service, tables, inbox, eventgrid):
    uploaded = upload(blob_service, "ACME001", unique_name("payroll") + ".csv", _bad_acme_csv(unique_name("R")))
    handlers.file_pipeline_validate(uploaded.trigger())
    file_id = uploaded.file_id
    record = row(tables, "ACME001", file_id)
    assert record["state"] == "Rejected" and json.loads(record["transactionReasons"]) == {"AC01": 1}
    # moved, reported, dead-lettered with a reason code and description, announced
    assert not exists(blob_service, INPUT_CONTAINER, f"ACME001/{uploaded.name}")
    assert read(blob_service, REJECTED_CONTAINER, f"ACME001/{file_id}/{uploaded.name}") == uploaded.content
    assert grp_sts(blob_service, "ACME001", file_id) == "RJCT"
    letter = inbox.for_file(DEADLETTER, file_id)
    assert letter.application_properties["DeadLetterReason"] == "NARR"
    assert "policy reject-file" in letter.application_properties["DeadLetterErrorDescription"]
    assert letter.application_properties["transactionReasonCodes"] == "AC01"
    rejected = event(eventgrid, "PaymentFileRejected", file_id)
    assert rejected["data"]["reasons"][0]["code"] == "NARR" and rejected["data"]["step"] == "FileValidator"
    assert not exists(blob_service, OUTPUT_CONTAINER, f"ACME001/{file_id}.xml")


def test_two_rejections_under_one_name_each_keep_their_own_quarantined_upload(app, blob_service, tables, inbox):
    name = unique_name("payroll") + ".csv"
    first = upload(blob_service, "ACME001", name, _bad_acme_csv(unique_name("Q1")))
    handlers.file_pipeline_validate(first.trigger())
    second = upload(blob_service, "ACME001", name, _bad_acme_csv(unique_name("Q2")))  # same name, new version
    handlers.file_pipeline_validate(second.trigger())
    assert first.file_id != second.file_id and first.content != second.content
    for uploaded in (first, second):
        record = row(tables, "ACME001", uploaded.file_id)
        assert record["state"] == "Rejected"
        rejected = json.loads(record["locations"])["rejected"]
        assert rejected == f"{REJECTED_CONTAINER}/ACME001/{uploaded.file_id}/{name}"
        assert read(blob_service, REJECTED_CONTAINER, rejected.partition("/")[2]) == uploaded.content
    code, body = status(f"ACME001/{name}")  # the name's latest version, pointing at its own evidence
    assert code == 200 and body["locations"]["rejected"] == f"{REJECTED_CONTAINER}/ACME001/{second.file_id}/{name}"
    assert not exists(blob_service, INPUT_CONTAINER, f"ACME001/{name}")


def test_bad_transactions_under_pass_valid_pass_the_valid_ones(app, blob_service, tables, inbox):
    content = data_bytes("csv_eu_mixed.csv").replace(b"GLX-1", unique_name("G").encode() + b"-1")
    uploaded = upload(blob_service, "GLOBEX02", unique_name("mixed") + ".csv", content)
    handlers.file_pipeline_validate(uploaded.trigger())
    run_to_completion(inbox, uploaded.file_id)
    output = read(blob_service, OUTPUT_CONTAINER, f"GLOBEX02/{uploaded.file_id}.xml")
    validate_stream(io.BytesIO(output), "pain.001.001.09")
    assert len(etree.parse(io.BytesIO(output)).findall(".//p:CdtTrfTxInf", NS1)) == 2
    assert grp_sts(blob_service, "GLOBEX02", uploaded.file_id) == "PART"
    _, body = status(f"GLOBEX02/{uploaded.name}")
    assert body["state"] == "Completed" and body["counts"] == {"transactions": 9, "accepted": 2, "rejected": 7}
    assert body["locations"]["errorReport"] == f"{REPORTS_CONTAINER}/GLOBEX02/{uploaded.file_id}.errors.csv"


def test_an_identical_resubmission_is_a_du01_duplicate(app, blob_service, tables, inbox):
    content = data_bytes("pain001_09_valid.xml").replace(b"ACME-MSG-20261120-01", unique_name("MSG").encode())
    first = upload(blob_service, "ACME001", unique_name("a") + ".xml", content)
    handlers.file_pipeline_validate(first.trigger())
    run_to_completion(inbox, first.file_id)
    second = upload(blob_service, "ACME001", unique_name("b") + ".xml", content)
    handlers.file_pipeline_validate(second.trigger())
    record = row(tables, "ACME001", second.file_id)
    assert record["state"] == "Rejected"
    assert {c for c, _ in json.loads(record["reasons"])} == {"DU01"}
    assert inbox.for_file(DEADLETTER, second.file_id).application_properties["DeadLetterReason"] == "DU01"


@pytest.mark.parametrize("hostile", ["billion_laughs.xml", "xxe_file.xml", "xinclude.xml"])
def test_malicious_xml_is_rejected_and_kept_for_investigation(app, blob_service, tables, inbox, hostile):
    uploaded = upload(blob_service, "ACME001", unique_name("evil") + ".xml", data_bytes(f"hostile/{hostile}"))
    handlers.file_pipeline_validate(uploaded.trigger())
    record = row(tables, "ACME001", uploaded.file_id)
    assert record["state"] == "Rejected" and json.loads(record["reasons"])[0][0] == "FF01"
    assert read(blob_service, REJECTED_CONTAINER, f"ACME001/{uploaded.file_id}/{uploaded.name}") == uploaded.content
    assert inbox.for_file(DEADLETTER, uploaded.file_id).application_properties["DeadLetterReason"] == "FF01"


def test_an_unsafe_blob_name_is_rejected_without_being_used(app, blob_service, tables, inbox):
    # The trigger's client addresses storage by that name (an HTTP client would resolve the
    # "..", reaching another blob), so it is never used: not for the ETag, not for a copy.
    name = f"ACME001/{unique_name('x')}/../../payment-files-out/ACME001/evil.csv"
    handlers.file_pipeline_validate(blob_trigger(name))
    file_id = file_id_for(INPUT_CONTAINER, name, "")
    record = row(tables, "ACME001", file_id)
    assert record["state"] == "Rejected" and "'..'" in json.loads(record["reasons"])[0][1]
    assert "rejected" not in json.loads(record["locations"] or "{}")
    assert not exists(blob_service, REJECTED_CONTAINER, f"ACME001/{file_id}.unsafe-name")
    assert not exists(blob_service, OUTPUT_CONTAINER, "ACME001/evil.csv")
    assert inbox.for_file(DEADLETTER, file_id).application_properties["DeadLetterReason"] == "NARR"
    assert blob_service.get_container_client(INPUT_CONTAINER).exists()  # Azurite is fine


def test_an_oversize_file_is_rejected_unread(app, blob_service, tables, inbox, monkeypatch):
    monkeypatch.setenv("PAYMENT_FILES_MAX_BYTES", "512")
    reset_runtime()
    uploaded = upload(blob_service, "ACME001", unique_name("big") + ".csv", data_bytes("csv_v1_valid.csv"))
    handlers.file_pipeline_validate(uploaded.trigger())
    record = row(tables, "ACME001", uploaded.file_id)
    assert record["state"] == "Rejected" and "larger than the limit of 512 bytes" in record["reasons"]
    assert record["sha256"] == ""  # never read
    assert exists(blob_service, REJECTED_CONTAINER, f"ACME001/{uploaded.file_id}/{uploaded.name}")


def _tamper(blob_service: BlobServiceClient, file_id: str) -> None:
    blob = blob_service.get_blob_client(WORK_CONTAINER, f"{file_id}/instructions.jsonl")
    blob.upload_blob(blob.download_blob().readall().replace(b"Jan de Vries", b"Jan de Vriez"), overwrite=True)


def test_a_failure_in_file_creator_is_compensated_and_a_corrected_resubmission_accepted(
        app, blob_service, tables, inbox, eventgrid):
    content = _bad_acme_csv(unique_name("C")).replace(b"DE00370400440532013001", b"DE62370400440532013001")
    name = unique_name("payroll") + ".csv"
    uploaded = upload(blob_service, "ACME001", name, content)
    handlers.file_pipeline_validate(uploaded.trigger())
    file_id = uploaded.file_id
    assert len(claims_of(tables, file_id)) == 1  # the content hash is claimed (a CSV has no MsgId)
    handlers.file_pipeline_adapt(inbox.for_file(VALIDATED, file_id).trigger())
    _tamper(blob_service, file_id)  # the claim-checked work file no longer matches its message
    blob_service.get_blob_client(OUTPUT_CONTAINER, f"ACME001/{file_id}.xml").upload_blob(
        b"<partial/>", overwrite=True)  # as if an earlier attempt had died after writing output
    handlers.file_pipeline_create(inbox.for_file(ADAPTED, file_id).trigger())  # completes: dead-lettered

    letter = inbox.for_file(DEADLETTER, file_id, "PaymentFileAdapted")
    assert letter.application_properties["DeadLetterReason"] == "WorkFileCorrupt"
    assert letter.application_properties["DeadLetterSource"] == ADAPTED
    handlers.file_pipeline_compensate(inbox.for_file(COMPENSATION, file_id, "CompensatePaymentFile").trigger())

    record = row(tables, "ACME001", file_id)
    assert record["state"] == "Rejected" and record["failedStep"] == "FileCreator"
    assert "WorkFileCorrupt" in json.loads(record["reasons"])[0][1]
    assert not exists(blob_service, OUTPUT_CONTAINER, f"ACME001/{file_id}.xml")
    assert list(blob_service.get_container_client(WORK_CONTAINER).list_blob_names(name_starts_with=file_id)) == []
    assert not exists(blob_service, INPUT_CONTAINER, f"ACME001/{name}")
    assert read(blob_service, REJECTED_CONTAINER, f"ACME001/{file_id}/{name}") == content
    assert grp_sts(blob_service, "ACME001", file_id) == "RJCT"
    assert claims_of(tables, file_id) == []  # the DU01 record is released
    assert event(eventgrid, "PaymentFileRejected", file_id)["data"]["step"] == "FileCreator"

    again: Uploaded = upload(blob_service, "ACME001", name, content)  # the same file, resubmitted
    handlers.file_pipeline_validate(again.trigger())
    run_to_completion(inbox, again.file_id)
    assert row(tables, "ACME001", again.file_id)["state"] == "Completed"
    _, body = status(f"ACME001/{name}")
    assert body["state"] == "Completed" and body["previousFileIds"] == [file_id]


def test_redelivered_triggers_and_messages_produce_no_second_output(app, blob_service, tables, inbox,
                                                                     eventgrid):
    uploaded = upload(blob_service, "ACME001", unique_name("payroll") + ".csv",
                      _bad_acme_csv(unique_name("D")).replace(b"DE00370400440532013001", b"DE62370400440532013001"))
    file_id = uploaded.file_id
    handlers.file_pipeline_validate(uploaded.trigger())
    handlers.file_pipeline_validate(uploaded.trigger())  # same version again (a lost receipt)
    validated = inbox.for_file(VALIDATED, file_id)
    assert [m for m in inbox.all_until_sentinel(VALIDATED) if m.correlation_id == file_id] == []

    handlers.file_pipeline_adapt(validated.trigger())
    handlers.file_pipeline_adapt(validated.trigger(delivery_count=2))  # redelivered
    adapted = inbox.for_file(ADAPTED, file_id)
    assert [m for m in inbox.all_until_sentinel(ADAPTED) if m.correlation_id == file_id] == []

    handlers.file_pipeline_create(adapted.trigger())
    output = blob_service.get_blob_client(OUTPUT_CONTAINER, f"ACME001/{file_id}.xml")
    etag = output.get_blob_properties().etag
    handlers.file_pipeline_create(adapted.trigger(delivery_count=2))  # redelivered
    handlers.file_pipeline_adapt(validated.trigger(delivery_count=3))  # a very late one
    assert output.get_blob_properties().etag == etag
    event(eventgrid, "PaymentFileCreated", file_id)  # exactly one (the helper unpacks one)
    assert row(tables, "ACME001", file_id)["state"] == "Completed"
    assert [m for m in inbox.all_until_sentinel(ADAPTED) if m.correlation_id == file_id] == []


def test_status_of_unknown_and_unsafe_names(app):
    assert status("ACME001/never-sent.csv")[0] == 404
    assert status("ACME001/../x.csv")[0] == 400


def _eur_file(tag: str, amounts: list[str], day: str = "2026-12-15") -> bytes:
    head = ("EndToEndId,DebtorIBAN,CreditorName,CreditorIBAN,CreditorAccount,CreditorRouting,CreditorBIC,Amount,"
            "Currency,ExecutionDate,Remittance")
    rows = [f"{tag}-{i},DE89370400440532013000,Anna Schmidt,DE62370400440532013001,,,COBADEFFXXX,{amount},EUR,{day},"
            for i, amount in enumerate(amounts)]
    return ("\r\n".join([head, *rows]) + "\r\n").encode()


def test_the_seeded_daily_limit_holds_across_files_and_compensation_gives_the_room_back(
        app, blob_service, tables, inbox):
    """ACME001's seeded EUR daily limit is 20 000 000.00, its per-file limit 10 000 000.00; no other
    test pays on 2026-12-15."""
    files = tables.get_table_client(FILES_TABLE)

    def day_total() -> str:
        return files.get_entity("ACME001", "day-EUR-2026-12-15")["amount"]

    ten_million = ["250000.00"] * 40
    first = upload(blob_service, "ACME001", unique_name("big") + ".csv", _eur_file(unique_name("A"), ten_million))
    handlers.file_pipeline_validate(first.trigger())
    second = upload(blob_service, "ACME001", unique_name("big") + ".csv", _eur_file(unique_name("B"), ten_million))
    handlers.file_pipeline_validate(second.trigger())
    assert [row(tables, "ACME001", f.file_id)["state"] for f in (first, second)] == ["Validated"] * 2
    assert day_total() == "20000000.00"  # exactly the limit
    assert json.loads(row(tables, "ACME001", second.file_id)["dailyAmounts"]) == {
        "EUR-2026-12-15": "10000000.00"}

    cent = _eur_file(unique_name("C"), ["0.01"])
    over = upload(blob_service, "ACME001", unique_name("cent") + ".csv", cent)
    handlers.file_pipeline_validate(over.trigger())
    record = row(tables, "ACME001", over.file_id)
    assert record["state"] == "Rejected" and json.loads(record["transactionReasons"]) == {"AM14": 1}
    doc = etree.parse(io.BytesIO(read(blob_service, REPORTS_CONTAINER, f"ACME001/{over.file_id}.xml")))
    why = "".join(doc.xpath("//s:TxInfAndSts/s:StsRsnInf/s:AddtlInf/text()", namespaces=NS2))  # 105-char pieces
    assert "daily limit of 20000000.00 EUR" in why and "2026-12-15" in why
    assert day_total() == "20000000.00"

    # the first file fails for good in FileAdaptor: compensation takes its amounts back
    blob_service.get_blob_client(WORK_CONTAINER, f"{first.file_id}/validated.jsonl").delete_blob()
    handlers.file_pipeline_adapt(inbox.for_file(VALIDATED, first.file_id).trigger())
    command = inbox.for_file(COMPENSATION, first.file_id, "CompensatePaymentFile")
    handlers.file_pipeline_compensate(command.trigger())
    handlers.file_pipeline_compensate(command.trigger(delivery_count=2))  # redelivered: nothing taken twice
    assert row(tables, "ACME001", first.file_id)["state"] == "Rejected"
    assert day_total() == "10000000.00"

    again = upload(blob_service, "ACME001", unique_name("cent") + ".csv", cent)  # the cent, sent again
    handlers.file_pipeline_validate(again.trigger())
    assert row(tables, "ACME001", again.file_id)["state"] == "Validated"
    assert day_total() == "10000000.01"
