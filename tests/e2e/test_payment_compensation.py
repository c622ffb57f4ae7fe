"""The payment-file pipeline's compensation paths end to end: a step after FileValidator fails
for good on the running stack, and everything that had succeeded is undone.

Nothing in the app is mocked or hooked. The failure is made the way it happens in production:
the work blob a Service Bus hand-off claim-checks goes missing or is damaged while the message
waits in its queue. To make the message wait, the consuming function is switched off with the
app setting ``AzureWebJobs.<FUNCTION_NAME>.Disabled`` (as an operator would in Azure) and devhost
is restarted; once the blob is damaged, devhost is restarted with the function on again.

What each test then checks is what the pipeline promises for a compensated file: status
``Rejected`` with the failed step and its reason, no output, no work blobs, the upload
quarantined in ``payment-files-rejected``, a pain.002 ``RJCT``, ``PaymentFileRejected`` on Event
Grid, the failing step's message dead-lettered with ``DeadLetterReason`` (and decided on by remediation),
and the duplicate-file (DU01) claims released, so the same file submitted again is accepted
and completes.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceivedMessage, ServiceBusSubQueue
from azure.storage.blob import BlobServiceClient
from lxml import etree

from devstack.traces import SpanRecord
from remediation.domain import DeadLetterRecord

from .conftest import App, assert_hops_chain, call, invocations, start_stack, trace_of

SAMPLES = Path(__file__).resolve().parents[2] / "devstack" / "samples" / "payments"
DEADLINE = 120.0  # generous: a loaded two-core machine runs the whole stack
STEPS = ("file_pipeline_adapt", "file_pipeline_create")
VALIDATED, ADAPTED = "payment-files-validated", "payment-files-adapted"
INPUT, WORK, OUTPUT, REJECTED = "payment-files-in", "payment-files-work", "payment-files-out", "payment-files-rejected"
PAIN002 = {"s": "urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"}


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    """A stack of its own: these tests restart devhost with different settings."""
    stack = start_stack()
    try:
        yield App(stack)
    finally:
        stack.stop()


# ----------------------------------------------------------------------------------- the app's host
def restart_devhost(app: App, *disabled: str) -> None:
    """Restart devhost with ``disabled`` switched off by app setting and the other steps on (in
    Azure, changing an app setting restarts the app the same way)."""
    for name in STEPS:
        app.stack.settings[f"AzureWebJobs.{name}.Disabled"] = "true" if name in disabled else "false"
    app.stack.stop_devhost()
    app.stack.start_devhost()
    host = app.stack.processes["devhost"]
    for name in disabled:
        host.wait_for_line(rf"Function '{name}' is disabled", DEADLINE)


def poll(what: str, probe: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.3)


# ----------------------------------------------------------------------------------- files and status
@dataclass
class Submitted:
    client: str
    name: str
    content: bytes


def submit(app: App, client: str, name: str, content: bytes) -> Submitted:
    container = blobs(app).get_container_client(INPUT)
    if not container.exists():
        container.create_container()
    container.upload_blob(f"{client}/{name}", content, overwrite=True)
    return Submitted(client, name, content)


def unique_csv() -> bytes:
    """The ACME001 sample with end-to-end ids of its own: no other file has its content."""
    return (SAMPLES / "csv_v1_valid.csv").read_bytes().replace(b"ACME-", f"E{uuid.uuid4().hex[:8]}-".encode())


def unique_pain001() -> bytes:
    """The GLOBEX02 pain.001.001.03 sample with a MsgId of its own (content and MsgId are both claimed)."""
    return (SAMPLES / "pain001_03_valid.xml").read_bytes().replace(
        b"<MsgId>GLX-2026-11-20-A", f"<MsgId>GLX-{uuid.uuid4().hex[:12]}".encode())


def status(app: App, file: Submitted) -> tuple[int, Any]:
    code, body, _ = call("GET", f"{app.api}/payment-files/{file.client}/{file.name}")
    return code, body


def wait_state(app: App, file: Submitted, state: str, file_id: str | None = None) -> dict[str, Any]:
    """Until the latest file under this name (or ``file_id``) is in ``state``; a different final
    state fails at once."""
    last: Any = None

    def probe() -> dict[str, Any] | None:
        nonlocal last
        code, body = status(app, file)
        last = body
        if code != 200 or (file_id is not None and body["fileId"] != file_id):
            return None
        if body["state"] in ("Completed", "Rejected") and body["state"] != state:
            raise AssertionError(f"{file.client}/{file.name} ended {body['state']}, not {state}: {body}")
        return body if body["state"] == state else None

    try:
        return poll(f"{file.client}/{file.name} to be {state}", probe)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last status {last}") from None


def blobs(app: App) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(app.stack.storage_connection)


def read(app: App, location: str) -> bytes:
    container, _, name = location.partition("/")
    return blobs(app).get_blob_client(container, name).download_blob().readall()


def exists(app: App, container: str, name: str) -> bool:
    return blobs(app).get_blob_client(container, name).exists()


def work_blobs(app: App, file_id: str) -> list[str]:
    return list(blobs(app).get_container_client(WORK).list_blob_names(name_starts_with=f"{file_id}/"))


def group_status(app: App, location: str) -> tuple[str | None, str | None]:
    """(GrpSts, the first group reason code) of a pain.002 status report."""
    report = etree.parse(io.BytesIO(read(app, location)))
    return (report.findtext(".//s:OrgnlGrpInfAndSts/s:GrpSts", namespaces=PAIN002),
            report.findtext(".//s:OrgnlGrpInfAndSts/s:StsRsnInf/s:Rsn/s:Cd", namespaces=PAIN002))


def events(app: App, kind: str, file_id: str) -> list[dict[str, Any]]:
    found = [entry.get("event", entry) for entry in app.events("payments", type_=kind)]
    return [event for event in found if event.get("id") == f"{kind}:{file_id}"]


# ----------------------------------------------------------------------------------- Service Bus
@dataclass
class Peeked:
    """A message looked at without taking it (no lock, no delivery counted)."""

    message_id: str
    subject: str | None
    correlation_id: str | None
    content_type: str | None
    delivery_count: int | None
    properties: dict[str, Any]
    body: bytes

    @classmethod
    def of(cls, message: ServiceBusReceivedMessage) -> Peeked:
        def text(value: Any) -> Any:
            return value.decode() if isinstance(value, bytes) else value

        return cls(str(message.message_id), message.subject, message.correlation_id, message.content_type,
                   message.delivery_count,
                   {text(k): text(v) for k, v in (message.application_properties or {}).items()},
                   b"".join(message.body))

    @property
    def data(self) -> dict[str, Any]:
        return dict(json.loads(self.body)["data"])


def on_queue(app: App, queue: str, sub_queue: ServiceBusSubQueue | None = None) -> list[Peeked]:
    """Everything on the queue (or its broker dead-letter sub-queue) now, active or locked."""
    found: list[Peeked] = []
    with ServiceBusClient.from_connection_string(app.stack.servicebus_connection) as client, \
            client.get_queue_receiver(queue, sub_queue=sub_queue) as receiver:
        next_sequence = 0
        while batch := receiver.peek_messages(max_message_count=100, sequence_number=next_sequence):
            found += [Peeked.of(message) for message in batch]
            next_sequence = max(m.sequence_number or 0 for m in batch) + 1
    return found


def wait_message(app: App, queue: str, file_id: str, subject: str) -> Peeked:
    def probe() -> Peeked | None:
        return next((m for m in on_queue(app, queue) if m.correlation_id == file_id and m.subject == subject), None)

    return poll(f"{subject} for {file_id} on {queue}", probe)


def dead_letters(app: App, file_id: str) -> list[DeadLetterRecord]:
    """The file's dead letters, as remediation recorded them (it takes every one from ``deadletter``)."""
    return [e.record for e in app.remediations() if e.record.correlation_id == file_id]


def send_again(app: App, queue: str, message: Peeked) -> str:
    """The same message delivered once more, as after a lost lock or a re-send past the queue's
    duplicate-detection window (a new broker message id, so the queue does not drop it)."""
    again = f"{message.message_id}:again-{uuid.uuid4().hex[:6]}"
    with ServiceBusClient.from_connection_string(app.stack.servicebus_connection) as client, \
            client.get_queue_sender(queue) as sender:
        sender.send_messages(ServiceBusMessage(
            message.body, message_id=again, subject=message.subject, correlation_id=message.correlation_id,
            content_type=message.content_type, application_properties=message.properties))
    return again


# ----------------------------------------------------------------------------------- what compensation leaves
def assert_compensated(app: App, file: Submitted, file_id: str, *, step: str, reason: str, queue: str,
                       subject: str) -> None:
    """Everything the pipeline promises for a file whose ``step`` failed for good with ``reason``."""
    body = wait_state(app, file, "Rejected", file_id)
    assert body["failedStep"] == step and body["groupStatus"] == "RJCT"
    [why] = body["reasons"]
    assert why["code"] == "NARR" and f"{step} failed for good" in why["description"]
    assert reason in why["description"]

    # no output, no work blobs, the upload quarantined under its file id and its own name
    assert "output" not in body["locations"]
    assert not exists(app, OUTPUT, f"{file.client}/{file_id}.xml")
    assert work_blobs(app, file_id) == []
    assert body["locations"]["rejected"] == f"{REJECTED}/{file.client}/{file_id}/{file.name}"
    assert read(app, body["locations"]["rejected"]) == file.content
    assert not exists(app, INPUT, f"{file.client}/{file.name}")

    # pain.002 RJCT with the reason
    assert body["locations"]["statusReport"] == f"payment-status-reports/{file.client}/{file_id}.xml"
    assert group_status(app, body["locations"]["statusReport"]) == ("RJCT", "NARR")

    # announced once on Event Grid
    [rejected] = poll(f"PaymentFileRejected for {file_id}", lambda: events(app, "PaymentFileRejected", file_id))
    assert rejected["data"]["step"] == step and rejected["data"]["fileId"] == file_id
    assert reason in rejected["data"]["reasons"][0]["description"]
    assert rejected["data"]["locations"]["rejected"] == body["locations"]["rejected"]

    # the failing step's message, dead-lettered by the app with the reason
    [letter] = poll(f"the dead letter of {file_id}", lambda: dead_letters(app, file_id))
    assert letter.message_type == subject and letter.entity == queue
    assert letter.properties["DeadLetterReason"] == reason
    assert letter.properties["DeadLetterSource"] == queue
    assert letter.properties["DeadLetterErrorDescription"]
    assert letter.properties["OriginalMessageId"] == f"{subject}:{file_id}"


def assert_resubmission_completes(app: App, file: Submitted, rejected_id: str) -> None:
    """The same content under the same name again: accepted (its DU01 claims were released),
    carried through every step, and the name's history keeps the compensated file."""
    again = submit(app, file.client, file.name, file.content)

    def settled() -> dict[str, Any] | None:
        code, body = status(app, again)
        if code == 200 and body["fileId"] != rejected_id and body["state"] in ("Completed", "Rejected"):
            return dict(body)
        return None

    body = poll(f"the resubmitted {file.client}/{file.name} to settle", settled)
    assert body["state"] == "Completed", body  # not DU01: nothing of the compensated file is still claimed
    assert body["previousFileIds"] == [rejected_id]
    assert exists(app, OUTPUT, f"{file.client}/{body['fileId']}.xml")
    poll("PaymentFileCreated for the resubmission", lambda: events(app, "PaymentFileCreated", body["fileId"]))


def assert_one_compensated_journey(app: App, file_id: str, failed: str, reason: str) -> None:
    """The file's trace (issue 11) runs from the upload through the step that failed for good, its
    dead letter and the compensation to the PaymentFileRejected event, across two host restarts."""
    def complete(spans: list[SpanRecord]) -> bool:
        return bool(invocations(spans, "file_pipeline_compensate")) and any(
            s.attributes.get("choreography.message.type") == "PaymentFileRejected" for s in spans)

    spans = trace_of(app.stack, file_id, complete)
    [validate] = invocations(spans, "file_pipeline_validate")
    assert validate.parentSpanId is None
    failing = invocations(spans, failed)
    assert failing[-1].attributes["choreography.outcome"] == "dead-lettered"
    assert failing[-1].attributes["choreography.reason_code"] == reason and failing[-1].status == "ERROR"
    [compensate] = invocations(spans, "file_pipeline_compensate")
    assert compensate.attributes["choreography.message.type"] == "CompensatePaymentFile"
    assert_hops_chain(spans)


# ----------------------------------------------------------------------------------- the tests
def test_file_adaptor_failing_for_good_is_compensated_and_the_file_can_be_sent_again(app: App) -> None:
    restart_devhost(app, "file_pipeline_adapt")
    file = submit(app, "ACME001", f"payroll-{uuid.uuid4().hex[:8]}.csv", unique_csv())
    file_id = wait_state(app, file, "Validated")["fileId"]
    validated = wait_message(app, VALIDATED, file_id, "PaymentFileValidated")
    assert not validated.delivery_count  # waiting for FileAdaptor, never delivered
    claim = validated.data["transactions"]
    assert claim["container"] == WORK and claim["name"] in work_blobs(app, file_id)
    blobs(app).get_blob_client(claim["container"], claim["name"]).delete_blob()  # the claim-checked work is gone

    restart_devhost(app)
    assert_compensated(app, file, file_id, step="FileAdaptor", reason="WorkFileMissing", queue=VALIDATED,
                       subject="PaymentFileValidated")
    assert not [m for m in on_queue(app, ADAPTED) if m.correlation_id == file_id]  # FileCreator never asked
    assert_one_compensated_journey(app, file_id, "file_pipeline_adapt", "WorkFileMissing")
    assert_resubmission_completes(app, file, file_id)


def test_file_creator_failing_for_good_is_compensated_output_included_and_the_file_can_be_sent_again(
        app: App) -> None:
    restart_devhost(app, "file_pipeline_create")
    file = submit(app, "GLOBEX02", f"transfers-{uuid.uuid4().hex[:8]}.xml", unique_pain001())
    file_id = wait_state(app, file, "Adapted")["fileId"]
    adapted = wait_message(app, ADAPTED, file_id, "PaymentFileAdapted")
    assert not adapted.delivery_count  # waiting for FileCreator, never delivered
    claim = adapted.data["instructions"]
    assert claim["container"] == WORK and claim["name"] in work_blobs(app, file_id)
    # The instructions no longer match their claim check, and an earlier attempt is taken to
    # have died right after writing the output: compensation must take that back too.
    blobs(app).get_blob_client(claim["container"], claim["name"]).upload_blob(b"{\"damaged\": true}\n",
                                                                               overwrite=True)
    blobs(app).get_blob_client(OUTPUT, f"{file.client}/{file_id}.xml").upload_blob(b"<partial/>", overwrite=True)

    restart_devhost(app)
    assert_compensated(app, file, file_id, step="FileCreator", reason="WorkFileCorrupt", queue=ADAPTED,
                       subject="PaymentFileAdapted")
    assert events(app, "PaymentFileCreated", file_id) == []
    assert_resubmission_completes(app, file, file_id)


def test_hand_offs_delivered_again_after_completion_produce_no_second_output(app: App) -> None:
    restart_devhost(app, "file_pipeline_adapt", "file_pipeline_create")
    file = submit(app, "ACME001", f"payroll-{uuid.uuid4().hex[:8]}.csv", unique_csv())
    file_id = wait_state(app, file, "Validated")["fileId"]
    validated = wait_message(app, VALIDATED, file_id, "PaymentFileValidated")
    restart_devhost(app, "file_pipeline_create")
    wait_state(app, file, "Adapted")
    adapted = wait_message(app, ADAPTED, file_id, "PaymentFileAdapted")
    restart_devhost(app)
    wait_state(app, file, "Completed")
    output = blobs(app).get_blob_client(OUTPUT, f"{file.client}/{file_id}.xml")
    etag = output.get_blob_properties().etag
    poll("PaymentFileCreated", lambda: events(app, "PaymentFileCreated", file_id))

    sent = [send_again(app, VALIDATED, validated), send_again(app, ADAPTED, adapted)]
    # Taken and completed by the running steps (a failure would leave them, or dead-letter them).
    poll("both copies to be consumed",
         lambda: not any(m.message_id in sent for q in (VALIDATED, ADAPTED) for m in on_queue(app, q)))

    assert output.get_blob_properties().etag == etag  # no second output
    assert len(events(app, "PaymentFileCreated", file_id)) == 1
    assert work_blobs(app, file_id) == []  # FileAdaptor built nothing again
    assert not [m for q in (VALIDATED, ADAPTED) for m in on_queue(app, q) if m.correlation_id == file_id]
    assert dead_letters(app, file_id) == []
    assert not [m for q in (VALIDATED, ADAPTED) for m in on_queue(app, q, ServiceBusSubQueue.DEAD_LETTER)
                if m.correlation_id == file_id]  # nor given up on by the broker
    code, body = status(app, file)
    assert code == 200 and body["state"] == "Completed"
