"""Use cases of the payment-file pipeline on in-memory fakes: every outcome, every compensation
path, idempotency under redelivery, hostile input. The same flows run against Azurite and the
emulators in tests/integration/file_pipeline."""

from __future__ import annotations

import csv
import io
import json
from datetime import date

import pytest
from lxml import etree

from choreography.entities import (
    ADAPTED_QUEUE,
    COMPENSATION_QUEUE,
    INPUT_CONTAINER,
    OUTPUT_CONTAINER,
    REJECTED_CONTAINER,
    REPORTS_CONTAINER,
    VALIDATED_QUEUE,
    WORK_CONTAINER,
)
from choreography.handling import consume
from choreography.messaging import Cause, Incoming, Outgoing
from contracts.payment_files import UNSAFE_NAMES_PARTITION, CompensatePaymentFile
from devstack.samples import generate_csv
from fakes.file_pipeline import FakeReferenceSource, FakeTriggerBlob
from file_pipeline.domain.files import FileState, Step, file_id_for
from file_pipeline.formats.xsd import validate_stream
from file_pipeline.steps.shared import ReferenceUnavailable
from file_pipeline.steps.status import FileStatus, StatusProblem
from file_pipeline.steps.validate import Outcome, Upload
from file_pipeline.workfiles import SourceReadError

from .conftest import data_bytes
from .fakes import Harness

NS2 = {"s": "urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"}
NS1 = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"}
VALIDATED, ADAPTED, COMPENSATION = VALIDATED_QUEUE.name, ADAPTED_QUEUE.name, COMPENSATION_QUEUE.name


@pytest.fixture
def h() -> Harness:
    return Harness()


def report(h: Harness, record) -> etree._ElementTree:
    return etree.parse(io.BytesIO(h.blobs.data(REPORTS_CONTAINER, f"{record.client_id}/{record.file_id}.xml")))


def group_status(h: Harness, record) -> str:
    return report(h, record).findtext(".//s:GrpSts", namespaces=NS2)


def tx_reason_codes(h: Harness, record) -> list[str]:
    return report(h, record).xpath("//s:TxInfAndSts/s:StsRsnInf/s:Rsn/s:Cd/text()", namespaces=NS2)


def bad_acme_csv(n_bad: int = 1, e2e_prefix: str = "ACME-B") -> bytes:
    lines = data_bytes("csv_v1_valid.csv").decode().splitlines()
    rows = [lines[0]] + [line.replace("ACME-", e2e_prefix + "-") for line in lines[1:]]
    for i in range(1, n_bad + 1):
        rows[i] = rows[i].replace("DE62370400440532013001", "DE00370400440532013001").replace(
            "NL91 ABNA 0417 1643 00", "NL00 ABNA 0417 1643 00")
    return ("\r\n".join(rows) + "\r\n").encode()


# ------------------------------------------------------------------------------------------ accepted
@pytest.mark.parametrize(("sample", "client"), [
    ("csv_v1_valid.csv", "ACME001"),
    ("nacha_valid.ach", "INITECH03"),
    ("pain001_03_valid.xml", "GLOBEX02"),
    ("pain001_09_valid.xml", "ACME001"),
])
def test_a_valid_file_flows_to_an_xsd_valid_pain001_and_an_accp_report(h, sample, client):
    record = h.submit(client, f"in/{sample}", data_bytes(sample))
    assert record.state is FileState.COMPLETED and record.notified
    output = h.blobs.data(OUTPUT_CONTAINER, f"{client}/{record.file_id}.xml")
    validate_stream(io.BytesIO(output), "pain.001.001.09")
    assert group_status(h, record) == "ACCP"
    assert record.locations["output"] == f"{OUTPUT_CONTAINER}/{client}/{record.file_id}.xml"
    assert record.locations["statusReport"] == f"{REPORTS_CONTAINER}/{client}/{record.file_id}.xml"
    assert h.blobs.names(WORK_CONTAINER, record.file_id) == []  # work files cleaned up
    assert h.blobs.names(INPUT_CONTAINER) == [f"{client}/in/{sample}"]  # an accepted upload stays
    [event] = h.events.of(record.file_id)
    assert (event.type, event.id, event.subject) == ("PaymentFileCreated", f"PaymentFileCreated:{record.file_id}",
                                                     f"/payment-files/{client}/{record.file_id}")
    assert event.data["locations"]["output"] == record.locations["output"]
    assert h.publisher.dead_letters == []
    body = h.pipeline.status(client, f"in/{sample}").view
    assert body["state"] == "Completed" and body["counts"]["rejected"] == 0
    assert body["locations"]["output"] == record.locations["output"]


def test_a_large_generated_file_is_grouped_by_debtor_currency_and_date(h):
    buf = io.BytesIO()
    generate_csv(buf, 3000, execution_date=date(2026, 11, 23))
    record = h.submit("ACME001", "big.csv", buf.getvalue())
    assert record.state is FileState.COMPLETED and record.accepted == 3000
    doc = etree.parse(io.BytesIO(h.blobs.data(OUTPUT_CONTAINER, f"ACME001/{record.file_id}.xml")))
    assert doc.findtext(".//p:GrpHdr/p:NbOfTxs", namespaces=NS1) == "3000"
    assert len(doc.findall(".//p:CdtTrfTxInf", NS1)) == 3000


# ------------------------------------------------------------------------------------------ rejected
def test_bad_transactions_under_reject_file_reject_the_whole_file_with_every_reason(h):
    upload = h.upload("ACME001", "payroll.csv", bad_acme_csv(2))
    assert h.pipeline.validate(upload) is Outcome.REJECTED
    record, _ = h.records.latest("ACME001", "payroll.csv")
    assert record.state is FileState.REJECTED and record.notified
    assert (record.transactions, record.accepted, record.rejected) == (6, 4, 2)
    assert record.reasons[0][0] == "NARR" and "policy reject-file" in record.reasons[0][1]
    assert record.transaction_reasons == {"AC01": 2}
    # input moved, pain.002 RJCT with the transaction reasons, no output, no hand-off
    assert h.blobs.names(INPUT_CONTAINER) == []
    assert h.blobs.data(REJECTED_CONTAINER, f"ACME001/{record.file_id}/payroll.csv") == bad_acme_csv(2)
    kept = f"ACME001/{record.file_id}/payroll.csv"
    assert h.blobs.blobs[(REJECTED_CONTAINER, kept)].metadata["fileId"] == record.file_id
    assert group_status(h, record) == "RJCT" and tx_reason_codes(h, record) == ["AC01", "AC01"]
    assert h.blobs.names(OUTPUT_CONTAINER) == [] and h.publisher.sent == []
    # dead-lettered with a reason code and description; announced
    [letter] = h.publisher.dead_letters
    assert (letter.reason, letter.incoming.correlation_id) == ("NARR", record.file_id)
    assert letter.incoming.application_properties["transactionReasonCodes"] == "AC01"
    assert "policy reject-file" in letter.description
    assert json.loads(letter.incoming.body)["locations"]["rejected"] == f"{REJECTED_CONTAINER}/{kept}"
    [event] = h.events.of(record.file_id)
    assert event.type == "PaymentFileRejected" and event.data["step"] == "FileValidator"
    assert event.data["transactionReasons"] == {"AC01": 2}


def test_bad_transactions_under_pass_valid_pass_the_valid_ones_and_report_the_others(h):
    record = h.submit("GLOBEX02", "mixed.csv", data_bytes("csv_eu_mixed.csv"))
    assert record.state is FileState.COMPLETED and record.group_status == "PART"
    assert (record.accepted, record.rejected) == (2, 7)
    doc = etree.parse(io.BytesIO(h.blobs.data(OUTPUT_CONTAINER, f"GLOBEX02/{record.file_id}.xml")))
    assert sorted(doc.xpath("//p:EndToEndId/text()", namespaces=NS1)) == ["GLX-10", "GLX-17"]
    assert group_status(h, record) == "PART"
    assert sorted(tx_reason_codes(h, record)) == sorted(["AC01", "CH20", "DT03", "RC01", "DU04", "AM03", "AM14"])
    errors = h.blobs.data(REPORTS_CONTAINER, f"GLOBEX02/{record.file_id}.errors.csv").decode()
    assert "AC01" in errors and record.locations["errorReport"].endswith(".errors.csv")
    assert h.publisher.dead_letters == []


def test_the_error_report_escapes_formula_cells(h):
    content = bad_acme_csv(1).replace(b"ACME-B-0001", b"=HYPERLINK(x)")
    h.pipeline.validate(h.upload("ACME001", "formula.csv", content))
    record, _ = h.records.latest("ACME001", "formula.csv")
    rows = list(csv.reader(io.StringIO(h.blobs.data(REPORTS_CONTAINER,
                                                     f"ACME001/{record.file_id}.errors.csv").decode())))
    assert rows[1][2] == "'=HYPERLINK(x)"


def test_an_identical_resubmission_is_a_du01_duplicate(h):
    first = h.submit("ACME001", "payroll.csv", data_bytes("csv_v1_valid.csv"))
    assert first.state is FileState.COMPLETED
    again = h.submit("ACME001", "payroll-again.csv", data_bytes("csv_v1_valid.csv"))
    assert again.state is FileState.REJECTED
    assert again.reasons[0][0] == "DU01" and first.file_id in again.reasons[0][1]
    assert group_status(h, again) == "RJCT"
    assert h.publisher.dead_letters[-1].reason == "DU01"
    # overwriting the same name with the same bytes is a new version, and a duplicate too
    third = h.submit("ACME001", "payroll.csv", data_bytes("csv_v1_valid.csv"))
    assert third.file_id != first.file_id and third.reasons[0][0] == "DU01"
    # another client may send the same bytes
    assert h.records.get("ACME001", first.file_id).state is FileState.COMPLETED


def test_a_reused_msgid_with_different_content_is_a_du01_duplicate(h):
    h.submit("ACME001", "a.xml", data_bytes("pain001_09_valid.xml"))
    changed = data_bytes("pain001_09_valid.xml").replace(b"</Document>", b"<!-- resent -->\n</Document>")
    record = h.submit("ACME001", "b.xml", changed)
    assert [c for c, _ in record.reasons] == ["DU01"] and "MsgId" in record.reasons[0][1]


def test_losing_the_duplicate_claim_race_is_a_du01_rejection(h):
    content = data_bytes("csv_v1_valid.csv")
    rival = h.upload("ACME001", "rival.csv", content)
    upload = h.upload("ACME001", "mine.csv", content)

    def accept_rival_first(record):
        if record.file_name == "mine.csv" and record.state is FileState.VALIDATED:
            h.records.before_save = lambda r: None
            assert h.pipeline.validate(rival) is Outcome.ACCEPTED

    h.records.before_save = accept_rival_first
    assert h.pipeline.validate(upload) is Outcome.REJECTED
    mine, _ = h.records.latest("ACME001", "mine.csv")
    assert mine.reasons[0][0] == "DU01" and h.blobs.names(WORK_CONTAINER, mine.file_id) == []


def test_a_second_rejection_under_the_same_name_keeps_the_first_ones_evidence(h):
    first = h.submit("ACME001", "payroll.csv", bad_acme_csv(1))
    second = h.submit("ACME001", "payroll.csv", bad_acme_csv(2))
    assert first.file_id != second.file_id
    for record, content in ((first, bad_acme_csv(1)), (second, bad_acme_csv(2))):
        record = h.records.get("ACME001", record.file_id)
        assert record.state is FileState.REJECTED
        container, _, kept = record.locations["rejected"].partition("/")
        assert (container, kept) == (REJECTED_CONTAINER, f"ACME001/{record.file_id}/payroll.csv")
        assert h.blobs.data(REJECTED_CONTAINER, kept) == content
    assert len(h.blobs.names(REJECTED_CONTAINER)) == 2


@pytest.mark.parametrize("hostile", ["billion_laughs.xml", "xxe_file.xml", "xxe_http.xml", "xinclude.xml",
                                     "external_dtd.xml", "xxe_parameter_entity.xml", "doctype_after_comment.xml",
                                     "undeclared_entity.xml"])
def test_malicious_xml_is_rejected_never_expanded(h, hostile):
    record = h.submit("ACME001", hostile, data_bytes(f"hostile/{hostile}"))
    assert record.state is FileState.REJECTED and record.reasons[0][0] == "FF01"
    assert h.blobs.names(OUTPUT_CONTAINER) == []
    assert "root:" not in json.dumps(record.status_view())  # nothing of /etc/passwd anywhere
    assert h.blobs.names(REJECTED_CONTAINER) == [f"ACME001/{record.file_id}/{hostile}"]


@pytest.mark.parametrize(("content", "words"), [
    (b"", "empty"), (b"PK\x03\x04" + b"\x00" * 200, "zip"), (b"\x00\xff" * 300, "binary"),
    (data_bytes("nacha_valid.ach")[:700], "truncated"), (data_bytes("pain001_09_valid.xml")[:900], "pain.001.001.09"),
])
def test_empty_binary_and_truncated_files_are_rejected_with_a_reason(h, content, words):
    record = h.submit("ACME001", "odd.dat", content)
    assert record.state is FileState.REJECTED
    assert record.reasons[0][0] == "FF01" and words in record.reasons[0][1].lower()


@pytest.mark.parametrize("name", ["ACME001/../other/x.csv", "ACME001/a\\b.csv", "ACME001/ctl\x01.csv",
                                  "/ACME001/x.csv", "ACME001//x.csv", "ACME001/./x.csv", "no-folder.csv",
                                  "bad client!/x.csv"])
def test_unsafe_blob_names_are_rejected_and_never_used_as_paths(h, name):
    content = data_bytes("csv_v1_valid.csv")
    upload = Upload(INPUT_CONTAINER, name, len(content), '"0x1"', io.BytesIO(content))
    assert h.pipeline.validate(upload) is Outcome.REJECTED
    assert name not in h.blobs.touched  # storage was never addressed with it
    file_id = file_id_for(INPUT_CONTAINER, name, '"0x1"')
    record = h.records.find(file_id)
    assert record.state is FileState.REJECTED and record.reasons[0][0] == "NARR"
    assert "not accepted" in record.reasons[0][1]
    kept = record.locations["rejected"].split("/", 1)[1]
    assert kept == f"{record.client_id}/{file_id}.unsafe-name"  # a server-side name
    assert h.blobs.data(REJECTED_CONTAINER, kept) == content  # the file is not lost
    assert group_status(h, record) == "RJCT"
    assert h.publisher.dead_letters[-1].reason == "NARR"
    if name.startswith(("/", "no-", "bad")):
        assert record.client_id == UNSAFE_NAMES_PARTITION


def test_an_oversize_file_is_rejected_without_being_read(h):
    h = Harness(max_bytes=100)
    upload = h.upload("ACME001", "huge.csv", data_bytes("csv_v1_valid.csv"))
    assert h.pipeline.validate(upload) is Outcome.REJECTED
    assert h.blobs.opened == []
    record, _ = h.records.latest("ACME001", "huge.csv")
    assert record.reasons[0][0] == "NARR" and "larger than the limit of 100 bytes" in record.reasons[0][1]
    assert h.blobs.names(REJECTED_CONTAINER) == [f"ACME001/{record.file_id}/huge.csv"]


def test_a_file_longer_than_announced_is_stopped_at_the_limit(h):
    h = Harness(max_bytes=300)
    upload = h.upload("ACME001", "liar.csv", data_bytes("csv_v1_valid.csv"))
    liar = Upload(upload.container, upload.name, 10, upload.etag, None)
    assert h.pipeline.validate(liar) is Outcome.REJECTED
    record, _ = h.records.latest("ACME001", "liar.csv")
    assert "larger than the limit of 300 bytes" in record.reasons[0][1]


def test_an_unknown_client_folder_is_rejected(h):
    record = h.submit("NOBODY9", "x.csv", data_bytes("csv_v1_valid.csv"))
    assert record.state is FileState.REJECTED and "unknown client" in record.reasons[0][1]


# ------------------------------------------------------------------------------------------ idempotency
def test_the_same_blob_version_twice_hands_off_once(h):
    upload = h.upload("ACME001", "payroll.csv", data_bytes("csv_v1_valid.csv"))
    assert h.pipeline.validate(upload) is Outcome.ACCEPTED
    upload.content.seek(0)
    assert h.pipeline.validate(upload) is Outcome.ALREADY_PROCESSED
    assert len(h.publisher.sent) == 2 and len(h.publisher.accepted(VALIDATED)) == 1  # the re-send was dropped
    h.run()
    assert h.pipeline.validate(upload) is Outcome.ALREADY_PROCESSED
    assert len(h.publisher.accepted(VALIDATED)) == 1


def test_redelivered_messages_produce_no_second_output(h):
    h.pipeline.validate(h.upload("ACME001", "payroll.csv", data_bytes("csv_v1_valid.csv")))
    validated = h.deliver(VALIDATED)
    writes = len(h.blobs.writes)
    h.deliver(VALIDATED, delivery_count=2, sent=validated)  # redelivery: hand-off again, nothing redone
    assert len(h.blobs.writes) == writes
    assert len(h.publisher.accepted(ADAPTED)) == 1
    adapted = h.deliver(ADAPTED)
    record, _ = h.records.latest("ACME001", "payroll.csv")
    output = (OUTPUT_CONTAINER, f"ACME001/{record.file_id}.xml")
    etag = h.blobs.blobs[output].etag
    h.deliver(ADAPTED, delivery_count=2, sent=adapted)
    h.deliver(VALIDATED, delivery_count=3, sent=validated)
    assert h.blobs.blobs[output].etag == etag
    assert h.blobs.writes.count(output) == 1
    assert [e.type for e in h.events.of(record.file_id)] == ["PaymentFileCreated"]


def test_a_crash_after_the_output_commit_is_finished_by_the_redelivery(h):
    h.pipeline.validate(h.upload("ACME001", "payroll.csv", data_bytes("csv_v1_valid.csv")))
    h.deliver(VALIDATED)
    adapted = h.publisher.take(ADAPTED)

    def crash(record):
        if record.state is FileState.COMPLETED:
            raise ConnectionError("table storage unavailable")

    h.records.before_save = crash
    h.deliver(ADAPTED, sent=adapted)  # transient: attempt 2 is scheduled
    assert h.publisher.pending[ADAPTED][0].outgoing.payload.attempt == 2
    h.records.before_save = lambda r: None
    first = h.blobs.data(OUTPUT_CONTAINER, h.blobs.names(OUTPUT_CONTAINER)[0])
    h.deliver(ADAPTED, delivery_count=2, sent=adapted)
    record, _ = h.records.latest("ACME001", "payroll.csv")
    assert record.state is FileState.COMPLETED
    assert h.blobs.data(OUTPUT_CONTAINER, f"ACME001/{record.file_id}.xml") == first  # deterministic bytes
    assert len(h.events.of(record.file_id)) == 1


def test_an_announcement_that_failed_is_finished_once_by_the_redelivery(h):
    h.pipeline.validate(h.upload("ACME001", "payroll.csv", data_bytes("csv_v1_valid.csv")))
    h.deliver(VALIDATED)
    adapted = h.publisher.take(ADAPTED)
    h.events.fail = ConnectionError("event grid unavailable")
    h.deliver(ADAPTED, sent=adapted)
    record, _ = h.records.latest("ACME001", "payroll.csv")
    assert record.state is FileState.COMPLETED and not record.notified
    h.events.fail = None
    h.deliver(ADAPTED)  # attempt 2 finishes the announcement
    h.deliver(ADAPTED, delivery_count=3, sent=adapted)
    [event] = h.events.of(record.file_id)
    assert event.data["nbOfTxs"] == 6 and event.data["paymentBlocks"] == 5


def _crash_while_rejecting(h: Harness, at: str) -> None:
    failure = ConnectionError(f"crash at {at}")
    if at == "record":
        h.records.before_save = lambda r: _raise(failure) if r.state is FileState.REJECTED else None
    elif at == "announcement":
        h.events.fail = failure
    elif at == "quarantine":
        h.blobs.fail_move = lambda c, n: failure if c == INPUT_CONTAINER else None


def _raise(exc: Exception) -> None:
    raise exc


def _recover(h: Harness) -> None:
    h.records.before_save = lambda r: None
    h.events.fail = None
    h.blobs.fail_move = lambda c, n: None


@pytest.mark.parametrize("at", ["record", "announcement", "quarantine"])
def test_a_rejection_interrupted_at_any_step_is_finished_by_the_upload_s_next_trigger(h, at):
    upload_name = "ACME001/payroll.csv"
    upload = h.upload("ACME001", "payroll.csv", bad_acme_csv(1))
    _crash_while_rejecting(h, at)
    with pytest.raises(ConnectionError):
        h.pipeline.validate(upload)
    # The upload is what re-triggers FileValidator: it must outlive the crash.
    assert h.blobs.names(INPUT_CONTAINER) == [upload_name]
    crashed, _ = h.records.latest("ACME001", "payroll.csv")
    if crashed.state is FileState.REJECTED:  # whoever reads the record finds the evidence already kept
        container, _, kept = crashed.locations["rejected"].partition("/")
        assert h.blobs.data(container, kept) == bad_acme_csv(1)
    _recover(h)
    upload.content.seek(0)
    h.pipeline.validate(upload)
    h.pipeline.validate(upload)  # and once more after it ended: nothing new
    record, _ = h.records.latest("ACME001", "payroll.csv")
    assert record.state is FileState.REJECTED and record.notified
    assert [e.type for e in h.events.of(record.file_id)] == ["PaymentFileRejected"]
    assert len({letter.incoming.message_id for letter in h.publisher.dead_letters}) == 1
    assert h.blobs.names(INPUT_CONTAINER) == []
    assert h.blobs.names(REJECTED_CONTAINER) == [f"ACME001/{record.file_id}/payroll.csv"]
    assert record.locations["rejected"] == f"{REJECTED_CONTAINER}/ACME001/{record.file_id}/payroll.csv"
    assert h.blobs.names(REPORTS_CONTAINER, f"ACME001/{record.file_id}.xml")


def test_work_files_of_a_completed_file_are_removed_by_the_redelivery_after_a_crash(h):
    h.pipeline.validate(h.upload("ACME001", "payroll.csv", data_bytes("csv_v1_valid.csv")))
    h.deliver(VALIDATED)
    adapted = h.publisher.take(ADAPTED)
    record, _ = h.records.latest("ACME001", "payroll.csv")
    original_delete_prefix = h.blobs.delete_prefix

    def crash_before_cleanup(container: str, prefix: str) -> int:
        if container == WORK_CONTAINER:
            raise ConnectionError("host killed before the work files were deleted")
        return original_delete_prefix(container, prefix)

    h.blobs.delete_prefix = crash_before_cleanup
    h.deliver(ADAPTED, sent=adapted)  # the error: attempt 2 is scheduled
    assert h.records.get("ACME001", record.file_id).state is FileState.COMPLETED
    assert h.blobs.names(WORK_CONTAINER, f"{record.file_id}/")
    h.blobs.delete_prefix = original_delete_prefix
    h.deliver(ADAPTED, delivery_count=2, sent=adapted)
    assert h.blobs.names(WORK_CONTAINER) == []
    assert [e.type for e in h.events.of(record.file_id)] == ["PaymentFileCreated"]


def test_no_work_file_outlives_a_file_whatever_its_end(h):
    h.submit("ACME001", "good.csv", data_bytes("csv_v1_valid.csv"))
    h.submit("ACME001", "bad.csv", bad_acme_csv(1))
    h.submit("ACME001", "good.csv", data_bytes("csv_v1_valid.csv"))  # DU01 after validation
    assert h.blobs.names(WORK_CONTAINER) == []


def test_a_source_error_mid_stream_is_transient_and_the_retry_validates(h):
    upload = h.upload("ACME001", "payroll.csv", data_bytes("csv_v1_valid.csv"))
    original = h.blobs.open_read

    class Flaky(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, buffer):
            raise TimeoutError("connection reset")

    h.blobs.open_read = lambda c, n, etag=None: io.BufferedReader(Flaky())
    with pytest.raises(SourceReadError):
        h.pipeline.validate(upload)
    record, _ = h.records.latest("ACME001", "payroll.csv")
    assert record.state is FileState.VALIDATING
    h.blobs.open_read = original
    assert h.pipeline.validate(upload) is Outcome.ACCEPTED


def test_the_reference_table_is_loaded_once_per_process(h):
    for i in range(3):
        h.submit("ACME001", f"f{i}.csv", bad_acme_csv(0, f"E{i}"))
    assert h.reference.loads == 1


def test_an_empty_reference_table_is_a_transient_failure_not_a_rejection():
    from file_pipeline.domain.reference import ReferenceData

    empty = FakeReferenceSource(ReferenceData.from_entities([]))
    h = Harness(reference=empty)
    upload = h.upload("ACME001", "x.csv", data_bytes("csv_v1_valid.csv"))
    with pytest.raises(ReferenceUnavailable):
        h.pipeline.validate(upload)
    empty.data = ReferenceData.seed()
    assert h.pipeline.validate(upload) is Outcome.ACCEPTED and empty.loads == 2


# ------------------------------------------------------------------------------------------ compensation
def _corrupt_instructions(h: Harness, file_id: str) -> None:
    """Tamper with the claim-checked work file in a way only its hash reveals."""
    key = (WORK_CONTAINER, f"{file_id}/instructions.jsonl")
    h.blobs.blobs[key].data = h.blobs.blobs[key].data.replace(b"Jan de Vries", b"Jan de Vriez")


def test_a_permanent_failure_in_file_creator_is_compensated_and_a_resubmission_accepted(h):
    content = data_bytes("csv_v1_valid.csv")
    h.pipeline.validate(h.upload("ACME001", "payroll.csv", content))
    h.deliver(VALIDATED)
    record, _ = h.records.latest("ACME001", "payroll.csv")
    _corrupt_instructions(h, record.file_id)
    # as if an earlier attempt had committed an output before crashing
    h.blobs.put(OUTPUT_CONTAINER, f"ACME001/{record.file_id}.xml", b"<partial/>")
    h.deliver(ADAPTED)
    [letter] = h.publisher.dead_letters  # the failing message, with its reason
    assert letter.reason == "WorkFileCorrupt" and "changed or truncated" in letter.description
    assert letter.incoming.source == ADAPTED
    h.run()  # the compensation
    record = h.records.get("ACME001", record.file_id)
    assert record.state is FileState.REJECTED and record.failed_step == "FileCreator"
    assert record.reasons[0][0] == "NARR" and "WorkFileCorrupt" in record.reasons[0][1]
    assert h.blobs.names(OUTPUT_CONTAINER) == []  # partial output deleted
    assert h.blobs.names(WORK_CONTAINER) == []  # work files deleted
    assert h.blobs.names(INPUT_CONTAINER) == []
    assert h.blobs.names(REJECTED_CONTAINER) == [f"ACME001/{record.file_id}/payroll.csv"]
    assert group_status(h, record) == "RJCT"
    assert h.records.claims == {}  # DU01 record released
    assert [e.type for e in h.events.of(record.file_id)] == ["PaymentFileRejected"]
    assert h.events.of(record.file_id)[0].data["step"] == "FileCreator"
    assert "output" not in record.locations
    # the same file again is not a duplicate now
    again = h.submit("ACME001", "payroll.csv", content)
    assert again.file_id != record.file_id and again.state is FileState.COMPLETED
    body = h.pipeline.status("ACME001", "payroll.csv").view
    assert body["state"] == "Completed" and body["previousFileIds"] == [record.file_id]


def test_a_permanent_failure_in_file_adaptor_is_compensated(h):
    h.pipeline.validate(h.upload("ACME001", "payroll.csv", data_bytes("csv_v1_valid.csv")))
    record, _ = h.records.latest("ACME001", "payroll.csv")
    del h.blobs.blobs[(WORK_CONTAINER, f"{record.file_id}/validated.jsonl")]
    h.run()
    record = h.records.get("ACME001", record.file_id)
    assert record.state is FileState.REJECTED and record.failed_step == "FileAdaptor"
    assert h.publisher.dead_letters[0].reason == "WorkFileMissing"
    assert h.records.claims == {} and h.blobs.names(WORK_CONTAINER) == []


def test_a_transient_failure_is_tried_again_later_and_compensated_only_after_the_last_attempt(h):
    h.pipeline.validate(h.upload("ACME001", "payroll.csv", data_bytes("csv_v1_valid.csv")))
    h.deliver(VALIDATED)
    h.blobs.fail_write = lambda c, n: TimeoutError("storage busy") if c == OUTPUT_CONTAINER else None
    delays = []
    for attempt in range(1, 6):
        sent = h.deliver(ADAPTED)  # returns: the message completes, a later attempt is scheduled
        assert sent.outgoing.payload.attempt == attempt
        retry = h.publisher.pending[ADAPTED][0]
        assert retry.outgoing.payload.attempt == attempt + 1
        assert retry.outgoing.message_id.endswith(f":attempt-{attempt + 1}")
        delays.append((retry.outgoing.scheduled_at - h.clock.now()).total_seconds())
        assert h.publisher.pending.get(COMPENSATION) in (None, []) and h.publisher.dead_letters == []
    assert delays == [10, 20, 40, 80, 160]
    h.deliver(ADAPTED)  # the sixth and last attempt: compensate, dead-letter, complete
    assert h.publisher.dead_letters[0].reason == "RetriesExhausted"
    assert "attempt 6 of 6" in h.publisher.dead_letters[0].description
    h.run()
    record, _ = h.records.latest("ACME001", "payroll.csv")
    assert record.state is FileState.REJECTED and h.blobs.names(OUTPUT_CONTAINER) == []
    # the pain.002 written before the output commit now says RJCT
    assert group_status(h, record) == "RJCT"


def test_an_outage_shorter_than_the_retries_ends_completed_once(h):
    h.pipeline.validate(h.upload("ACME001", "payroll.csv", data_bytes("csv_v1_valid.csv")))
    h.deliver(VALIDATED)
    failures = iter([ConnectionResetError("Azurite restarting")] * 3)
    h.blobs.fail_write = lambda c, n: next(failures, None) if c == OUTPUT_CONTAINER else None
    h.run()
    record, _ = h.records.latest("ACME001", "payroll.csv")
    assert record.state is FileState.COMPLETED and record.notified
    assert len(h.blobs.names(OUTPUT_CONTAINER)) == 1 and h.blobs.names(WORK_CONTAINER) == []
    assert [e.type for e in h.events.of(record.file_id)] == ["PaymentFileCreated"]
    assert [s.outgoing.payload.attempt for s in h.publisher.accepted(ADAPTED)] == [1, 2, 3, 4]


def test_the_brokers_delivery_count_is_not_the_budget(h):
    """Deliveries used up by crashes or locks that ran out say nothing about the step: a slow
    step seen on the queue's last delivery (MaxDeliveryCount 5) that fails is tried again later."""
    h.pipeline.validate(h.upload("ACME001", "payroll.csv", data_bytes("csv_v1_valid.csv")))
    h.deliver(VALIDATED)
    adapted = h.publisher.take(ADAPTED)
    h.blobs.fail_write = lambda c, n: TimeoutError("slow storage") if c == OUTPUT_CONTAINER else None
    h.deliver(ADAPTED, delivery_count=5, sent=adapted)
    assert h.publisher.dead_letters == [] and h.publisher.pending.get(COMPENSATION) in (None, [])
    h.blobs.fail_write = lambda c, n: None
    h.run()
    assert h.records.latest("ACME001", "payroll.csv")[0].state is FileState.COMPLETED


def test_a_run_that_fails_after_another_run_finished_the_file_is_no_failure(h):
    """The race behind valid files rejected as 'FileCreator failed for good': a run of a slow
    message loses its lock, the redelivered message runs and completes the file, then the first
    run fails (its save conflicts, or its output collides). That is not the step failing."""
    h.pipeline.validate(h.upload("ACME001", "payroll.csv", data_bytes("csv_v1_valid.csv")))
    h.deliver(VALIDATED)
    adapted = h.publisher.take(ADAPTED)
    raced = []

    def the_redelivery_finishes_first(container, name):
        if container == OUTPUT_CONTAINER and not raced:
            raced.append(name)
            h.deliver(ADAPTED, delivery_count=2, sent=adapted)  # completes the file meanwhile
            return OSError("the block list was discarded by the other run's commit")
        return None

    h.blobs.fail_write = the_redelivery_finishes_first
    h.deliver(ADAPTED, delivery_count=5, sent=adapted)  # the slow run, on the queue's last delivery
    record, _ = h.records.latest("ACME001", "payroll.csv")
    assert raced and record.state is FileState.COMPLETED
    assert h.publisher.dead_letters == [] and h.publisher.pending.get(COMPENSATION) in (None, [])
    assert h.publisher.pending.get(ADAPTED) in (None, [])  # nothing to try again
    assert [e.type for e in h.events.of(record.file_id)] == ["PaymentFileCreated"]


def test_a_save_that_conflicts_with_a_finished_run_is_no_failure_on_the_last_attempt(h):
    h.pipeline.validate(h.upload("ACME001", "payroll.csv", data_bytes("csv_v1_valid.csv")))
    h.deliver(VALIDATED)
    adapted = h.publisher.take(ADAPTED)
    sixth = adapted.outgoing.payload.model_copy(update={"attempt": 6})
    h.publisher.send([Outgoing(ADAPTED_QUEUE, sixth, "PaymentFileAdapted:attempt-6", adapted.outgoing.correlation_id)],
                     Cause("earlier", None))
    sent = h.publisher.take(ADAPTED)
    save = h.records.save

    def another_run_saves_first(record, **kwargs):
        if record.state is FileState.COMPLETED and h.records.get(record.client_id, record.file_id).state \
                is FileState.ADAPTED:
            h.records.save = save
            h.deliver(ADAPTED, sent=adapted)  # attempt 1's redelivery completes the file
        return save(record, **kwargs)

    h.records.save = another_run_saves_first
    h.deliver(ADAPTED, sent=sent)  # attempt 6 of 6 conflicts at its save: not "failed for good"
    record, _ = h.records.latest("ACME001", "payroll.csv")
    assert record.state is FileState.COMPLETED
    assert h.publisher.dead_letters == [] and h.publisher.pending.get(COMPENSATION) in (None, [])


def test_compensation_is_idempotent_and_leaves_completed_files_alone(h):
    h.pipeline.validate(h.upload("ACME001", "payroll.csv", data_bytes("csv_v1_valid.csv")))
    h.deliver(VALIDATED)
    record, _ = h.records.latest("ACME001", "payroll.csv")
    _corrupt_instructions(h, record.file_id)
    h.deliver(ADAPTED)
    command = h.publisher.take(COMPENSATION)
    for attempt in (1, 2, 3):
        h.deliver(COMPENSATION, delivery_count=attempt, sent=command)
    assert len(h.events.of(record.file_id)) == 1
    done = h.submit("ACME001", "other.csv", bad_acme_csv(0, "OTHER"))
    h.pipeline.request_compensation(done.file_id, "ACME001", Step.CREATOR, "Test", "late", Cause("m", None))
    h.run()
    assert h.records.get("ACME001", done.file_id).state is FileState.COMPLETED


def test_an_unreadable_message_is_dead_lettered_and_its_file_compensated(h):
    h.pipeline.validate(h.upload("ACME001", "payroll.csv", data_bytes("csv_v1_valid.csv")))
    sent = h.publisher.take(VALIDATED)
    envelope = json.loads(sent.envelope.to_json())
    envelope["schemaVersion"] = 99
    bad = Incoming(body=json.dumps(envelope).encode(), message_id=sent.outgoing.message_id, source=VALIDATED,
                   correlation_id=sent.envelope.correlation_id, application_properties=sent.envelope.properties())
    consume(bad, h.pipeline.adaptor, h.publisher)
    assert h.publisher.dead_letters[0].reason == "UnknownSchemaVersion"
    h.run()
    record, _ = h.records.latest("ACME001", "payroll.csv")
    assert record.state is FileState.REJECTED and record.failed_step == "FileAdaptor"
    garbage = Incoming(body=b"not json", message_id="x", source=VALIDATED, correlation_id="not-a-file-id")
    consume(garbage, h.pipeline.adaptor, h.publisher)
    assert h.publisher.dead_letters[-1].reason == "MalformedMessage" and h.publisher.pending.get(COMPENSATION) == []


def test_a_hand_off_pointing_outside_the_file_s_work_area_is_refused(h):
    h.pipeline.validate(h.upload("ACME001", "payroll.csv", data_bytes("csv_v1_valid.csv")))
    sent = h.publisher.take(VALIDATED)
    data = json.loads(sent.envelope.to_json())
    data["data"]["transactions"]["name"] = "PF000000000000000000000000/validated.jsonl"
    forged = Incoming(body=json.dumps(data).encode(), message_id="forged", source=VALIDATED,
                      correlation_id=sent.envelope.correlation_id)
    consume(forged, h.pipeline.adaptor, h.publisher)
    assert h.publisher.dead_letters[0].reason == "MalformedMessage"


# ------------------------------------------------------------------------------------------ status
def test_status_answers_404_for_unknown_and_400_for_unsafe_names(h):
    assert h.pipeline.status("ACME001", "nothing.csv").status == 404
    assert h.pipeline.status("bad client", "x.csv").status == 404
    problem = h.pipeline.status("ACME001", "../x.csv")
    assert isinstance(problem, StatusProblem)
    assert problem.status == 400 and problem.title and "not accepted" in problem.detail
    record = h.submit("ACME001", "sub/dir/payroll.csv", bad_acme_csv(1))
    found = h.pipeline.status("ACME001", "sub/dir/payroll.csv")
    assert isinstance(found, FileStatus)
    body = found.view
    assert body["fileId"] == record.file_id and body["state"] == "Rejected"
    assert body["reasons"][0]["code"] == "NARR" and body["transactionReasons"] == {"AC01": 1}
    assert body["counts"] == {"transactions": 6, "accepted": 5, "rejected": 1}
    assert set(body["locations"]) == {"input", "rejected", "statusReport", "errorReport"}


def test_file_creator_losing_a_race_with_compensation_takes_its_output_back(h):
    h.pipeline.validate(h.upload("ACME001", "payroll.csv", data_bytes("csv_v1_valid.csv")))
    h.deliver(VALIDATED)
    adapted = h.publisher.take(ADAPTED)
    record, _ = h.records.latest("ACME001", "payroll.csv")

    def compensate_first(saving):
        if saving.state is FileState.COMPLETED:
            h.records.before_save = lambda r: None
            h.pipeline.compensate(CompensatePaymentFile(file_id=record.file_id, client_id="ACME001",
                                                        failed_step="FileCreator", reason="Test",
                                                        description="raced"), Cause("c", None))

    h.records.before_save = compensate_first
    h.deliver(ADAPTED, sent=adapted)
    assert h.records.get("ACME001", record.file_id).state is FileState.REJECTED
    assert h.blobs.names(OUTPUT_CONTAINER) == [] and group_status(h, record) == "RJCT"
    assert [e.type for e in h.events.of(record.file_id)] == ["PaymentFileRejected"]


def test_an_upload_overwritten_before_it_is_read_is_left_to_its_newer_version(h):
    upload = h.upload("ACME001", "payroll.csv", data_bytes("csv_v1_valid.csv"))
    h.blobs.put(INPUT_CONTAINER, "ACME001/payroll.csv", bad_acme_csv(0, "NEW"))
    assert h.pipeline.validate(upload) is Outcome.GONE
    assert h.records.files == {}


def test_a_validation_interrupted_then_orphaned_by_an_overwrite_is_closed(h):
    upload = h.upload("ACME001", "payroll.csv", data_bytes("csv_v1_valid.csv"))
    h.records.before_save = lambda r: (_ for _ in ()).throw(ConnectionError("crash"))
    with pytest.raises(ConnectionError):
        h.pipeline.validate(upload)
    h.records.before_save = lambda r: None
    h.blobs.put(INPUT_CONTAINER, "ACME001/payroll.csv", bad_acme_csv(0, "NEW"))
    assert h.pipeline.validate(upload) is Outcome.REJECTED
    record = h.records.find(file_id_for(INPUT_CONTAINER, "ACME001/payroll.csv", upload.etag))
    assert record.state is FileState.REJECTED and "overwritten" in record.reasons[0][1]
    assert h.blobs.data(INPUT_CONTAINER, "ACME001/payroll.csv") == bad_acme_csv(0, "NEW")  # left alone


# ------------------------------------------------------------------- SDK-type trigger (a BlobClient)
def trigger_upload(h: Harness, name: str, **options) -> tuple[Upload, FakeTriggerBlob]:
    blob = FakeTriggerBlob(h.blobs, INPUT_CONTAINER, name, **options)
    return Upload(INPUT_CONTAINER, name, blob=blob), blob


def test_a_trigger_client_is_read_once_for_its_etag_and_its_version_handed_off_once(h):
    content = data_bytes("csv_v1_valid.csv")
    etag = h.blobs.put(INPUT_CONTAINER, "ACME001/payroll.csv", content)
    upload, _ = trigger_upload(h, "ACME001/payroll.csv")
    assert h.pipeline.validate(upload) is Outcome.ACCEPTED
    file_id = file_id_for(INPUT_CONTAINER, "ACME001/payroll.csv", etag)
    assert h.records.get("ACME001", file_id).state is FileState.VALIDATED
    assert h.pipeline.validate(upload) is Outcome.ALREADY_PROCESSED  # the same version again
    assert len(h.publisher.accepted(VALIDATED)) == 1
    h.run()
    assert h.records.get("ACME001", file_id).state is FileState.COMPLETED


def test_an_upload_overwritten_while_it_is_read_is_closed_at_once_and_the_new_version_runs_on_its_own(h):
    name = "ACME001/payroll.csv"
    first = h.blobs.put(INPUT_CONTAINER, name, data_bytes("csv_v1_valid.csv"))
    newer = bad_acme_csv(0, "ACME-N")

    def overwrite(index: int) -> None:
        if index == 0:
            h.blobs.put(INPUT_CONTAINER, name, newer)

    upload, _ = trigger_upload(h, name, chunk=64, after_chunk=overwrite)
    assert h.pipeline.validate(upload) is Outcome.REJECTED  # closed now: a retry would read the new version
    record = h.records.get("ACME001", file_id_for(INPUT_CONTAINER, name, first))
    assert record.state is FileState.REJECTED and record.reasons[0][0] == "NARR"
    assert "overwritten" in record.reasons[0][1]
    assert h.blobs.data(INPUT_CONTAINER, name) == newer  # the newer version stays where it is
    assert h.publisher.accepted(VALIDATED) == []

    again, _ = trigger_upload(h, name)  # the newer version's own trigger
    assert h.pipeline.validate(again) is Outcome.ACCEPTED


def test_an_unsafe_name_from_a_trigger_client_is_rejected_without_touching_storage(h):
    name = "ACME001/../other/x.csv"
    upload, _ = trigger_upload(h, name)
    assert h.pipeline.validate(upload) is Outcome.REJECTED
    assert name not in h.blobs.touched  # neither the ETag nor the content was read by that name
    record = h.records.find(file_id_for(INPUT_CONTAINER, name, ""))
    assert record.state is FileState.REJECTED and record.reasons[0][0] == "NARR"
    assert "rejected" not in record.locations and h.blobs.names(REJECTED_CONTAINER) == []
