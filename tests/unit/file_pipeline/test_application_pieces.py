"""The application layer's pure pieces: file ids and upload names, the lifecycle, work files,
metered reading, contracts, settings and seed batching."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from choreography.settings import PaymentSettings, Settings, SettingsError
from contracts.payment_files import (
    UNSAFE_NAMES_PARTITION,
    CompensatePaymentFile,
    FileSummary,
    PaymentFileValidated,
    WorkBlob,
)
from file_pipeline.domain.files import (
    CLIENT_ID_RE,
    FILE_ID_RE,
    FileState,
    InvalidTransition,
    Step,
    duplicate_keys,
    file_id_for,
    parse_upload_name,
)
from file_pipeline.domain.model import FileFormat, FileRejected, Finding, Transaction
from file_pipeline.domain.reason_codes import IsoReason
from file_pipeline.domain.reference import ReferenceData
from file_pipeline.instructions import (
    InstructionsBuilder,
    render_pain001,
)
from file_pipeline.seed import MAX_BATCH, batches
from file_pipeline.workfiles import (
    MeteredReader,
    SourceReadError,
    ValidatedWriter,
    VerifiedReader,
    WorkFileCorrupt,
    read_rejections,
    read_validated,
    write_rejections,
)

from .conftest import NOW
from .port_contracts import new_record


# ------------------------------------------------------------------------------------------ names and ids
@pytest.mark.parametrize(("name", "client", "file_name"), [
    ("ACME001/payroll.csv", "ACME001", "payroll.csv"),
    ("ACME001/2026/11/payroll ü.csv", "ACME001", "2026/11/payroll ü.csv"),
])
def test_safe_upload_names_split_into_client_and_file(name, client, file_name):
    upload = parse_upload_name(name)
    assert (upload.client_id, upload.file_name, upload.safe) == (client, file_name, True)


@pytest.mark.parametrize(("name", "partition", "problem"), [
    ("ACME001/../x.csv", "ACME001", "'..'"),
    ("ACME001/a\\b.csv", "ACME001", "backslash"),
    ("ACME001/a\x00b.csv", "ACME001", "control"),
    ("/etc/passwd", UNSAFE_NAMES_PARTITION, "absolute"),
    ("C:/x.csv", UNSAFE_NAMES_PARTITION, "absolute"),
    ("x.csv", UNSAFE_NAMES_PARTITION, "{clientId}/{fileName}"),
    ("ACME 001/x.csv", UNSAFE_NAMES_PARTITION, "{clientId}/{fileName}"),
])
def test_unsafe_upload_names_are_flagged_with_a_printable_form(name, partition, problem):
    upload = parse_upload_name(name)
    assert not upload.safe and upload.client_id == partition and problem in upload.problem
    assert upload.file_name.isprintable()


def test_file_ids_are_per_blob_version_and_safe_everywhere():
    one = file_id_for("payment-files-in", "ACME001/x.csv", '"0x1"')
    assert FILE_ID_RE.match(one) and len(one) <= 35
    assert one == file_id_for("payment-files-in", "ACME001/x.csv", '"0x1"')
    assert one != file_id_for("payment-files-in", "ACME001/x.csv", '"0x2"')
    assert FILE_ID_RE.match(file_id_for("c", "\udcff\x00/..", ""))


def test_duplicate_keys_use_the_msgid_only_when_the_client_chose_it():
    assert [k.kind for k in duplicate_keys("a" * 64, FileFormat.CSV, "PF123")] == ["content"]
    keys = duplicate_keys("a" * 64, FileFormat.PAIN001_03, "MSG-1")
    assert [k.kind for k in keys] == ["content", "MsgId"]
    assert keys[1].key == duplicate_keys("b" * 64, FileFormat.PAIN001_09, "MSG-1")[1].key  # same family
    assert keys[1].key != duplicate_keys("a" * 64, FileFormat.NACHA, "MSG-1")[1].key
    finding = keys[1].finding("PF1", "first.xml")
    assert finding.code is IsoReason.DU01 and "MSG-1" in finding.description


def test_the_lifecycle_refuses_steps_out_of_order():
    record = new_record()
    with pytest.raises(InvalidTransition):
        record.adapted(NOW, {})
    with pytest.raises(InvalidTransition):
        record.compensating(NOW, Step.CREATOR, [])
    released = record.rejected_by(NOW, Step.VALIDATOR, [Finding(IsoReason.FF01, "bad")], {"statusReport": "r"})
    assert released == [] and record.state is FileState.REJECTED and not record.notified
    with pytest.raises(InvalidTransition):
        record.rejected_by(NOW, Step.VALIDATOR, [], {})
    record.announced(NOW)
    assert record.notified and record.state.final
    with pytest.raises(AttributeError):
        new_record().rejected_by(NOW, Step.VALIDATOR, [], {}, details={"state": "Completed"})


def test_contract_patterns_match_the_domain_shapes():
    file_id = file_id_for("c", "n", "e")
    summary = dict(file_id=file_id, client_id="ACME001", file_name="x.csv", format="CSV-v1", msg_id=file_id,
                   original_nb_of_txs=1, original_ctrl_sum=Decimal("1.00"), validated_at=NOW, group_status="ACCP",
                   accepted=1, accepted_sum=Decimal("1.00"), rejected=0, rejected_sum=Decimal(0))
    FileSummary(**summary)
    FileSummary(**{**summary, "client_id": UNSAFE_NAMES_PARTITION})
    for bad in ({"file_id": "PF1"}, {"client_id": "ACME 001"}, {"client_id": "x" * 65}):
        with pytest.raises(ValidationError):
            FileSummary(**{**summary, **bad})
    assert CLIENT_ID_RE.match("a" * 64) and not CLIENT_ID_RE.match("a" * 65)
    blob = WorkBlob(container="payment-files-work", name=f"{file_id}/v.jsonl", sha256="0" * 64, size=1)
    message = PaymentFileValidated(file=FileSummary(**summary), transactions=blob)
    wire = message.to_data()
    assert wire["file"]["fileId"] == file_id and wire["file"]["acceptedSum"] == "1.00"
    assert PaymentFileValidated.model_validate(json.loads(json.dumps(wire))) == message
    with pytest.raises(ValidationError, match="failed_step"):
        CompensatePaymentFile(file_id=file_id, failed_step="FileValidator", reason="x", description="y")


# ------------------------------------------------------------------------------------------ work files
def _tx(i: int, **kw) -> Transaction:
    base = dict(index=i, line=i + 1, end_to_end_id=f"E{i}", amount=Decimal("10.5"), currency="EUR",
                creditor_name="Ü & <Co>", creditor_iban="DE62370400440532013001", creditor_bic="COBADEFFXXX",
                debtor_account="DE89370400440532013000", requested_execution_date=NOW.date(),
                remittance_info="r", payment_block_id="B")
    base.update(kw)
    return Transaction(**base)


def test_validated_transactions_round_trip():
    out = io.BytesIO()
    writer = ValidatedWriter(out, "PF1")
    txs = [_tx(1), _tx(2, amount=Decimal("0.01"), currency="USD", debtor_account="000123456789", line=None),
           _tx(3, creditor_name="tab\there", remittance_info="two\nlines\r", instruction_id="[x]"),
           _tx(4, end_to_end_id="{E4}", creditor_name="Zoë \u2028 ☃", remittance_info="back\\slash \\t")]
    for tx in txs:
        writer.add(tx)
    out.seek(0)
    assert list(read_validated(out, "PF1")) == txs
    lines = out.getvalue().splitlines()
    assert lines[1].count(b"\t") == 14 and lines[3].startswith(b"[")  # free text with a tab: a JSON row


def test_validated_rows_leave_out_what_repeats_and_still_round_trip():
    from file_pipeline.workfiles import DITTO

    out = io.BytesIO()
    writer = ValidatedWriter(out, "PF1")
    txs = [_tx(1), _tx(2), _tx(5, line=None), _tx(6, debtor_account="000123456789", currency="USD"),
           _tx(7, requested_execution_date=date(2027, 1, 4), payment_block_id=""),
           _tx(8, payment_block_id=DITTO), _tx(9, payment_block_id=DITTO), _tx(10, payment_block_id="B"),
           _tx(3, line=40, end_to_end_id=DITTO, remittance_info=DITTO)]
    for tx in txs:
        writer.add(tx)
    out.seek(0)
    assert list(read_validated(out, "PF1")) == txs
    rows = out.getvalue().splitlines()[1:]
    assert rows[1] == "\t".join(["", "1", "E2", "10.5", DITTO, "Ü & <Co>", "DE62370400440532013001", "", "",
                                 "COBADEFFXXX", DITTO, DITTO, "r", "", DITTO]).encode()
    assert rows[5].startswith(b"[") and not rows[6].startswith(b"[")  # a real DITTO is written as it is


def test_validated_rows_written_in_runs_are_those_written_one_by_one():
    """add_run carries the dittos and the index across runs exactly as add does from row to row."""
    from file_pipeline.workfiles import DITTO

    txs = [_tx(1), _tx(2), _tx(5, line=None), _tx(6, debtor_account="000123456789", currency="USD"),
           _tx(7, requested_execution_date=date(2027, 1, 4), payment_block_id=""),
           _tx(8, requested_execution_date=date(2027, 1, 5)), _tx(9, requested_execution_date=date(2027, 1, 5)),
           _tx(10, payment_block_id=DITTO), _tx(11, currency=DITTO),
           _tx(12, creditor_name="tab\there"), _tx(13), _tx(14, debtor_account=DITTO), _tx(15), _tx(3, line=40),
           _tx(16, remittance_info="cr\ronly"), _tx(17), _tx(18, creditor_name="lf\nonly"), _tx(19)]
    one_by_one = io.BytesIO()
    writer = ValidatedWriter(one_by_one, "PF1")
    for tx in txs:
        writer.add(tx)
    for cuts in ([], [1], [2, 3], [0, 4, 4, 9], list(range(1, len(txs))), [5, 10, 12], [14, 15, 16, 17]):
        out = io.BytesIO()
        in_runs = ValidatedWriter(out, "PF1")
        for start, end in zip([0, *cuts], [*cuts, len(txs)], strict=True):
            in_runs.add_run(txs[start:end])
        assert out.getvalue() == one_by_one.getvalue(), cuts
        assert in_runs.count == writer.count == len(txs)
    out.seek(0)
    assert list(read_validated(out, "PF1")) == txs


@pytest.mark.parametrize(("content", "words"), [
    (b"", "header"), (b'{"k": "Rejections", "v": 1, "fileId": "PF1"}\n', "not a ValidatedTransactions"),
    (b'{"k": "ValidatedTransactions", "v": 1, "fileId": "PF1"}\n', "version 1"),
    (b'{"k": "ValidatedTransactions", "v": 2, "fileId": "PF1"}\n', "version 2"),
    (b'{"k": "ValidatedTransactions", "v": 3, "fileId": "PF2"}\n', "belongs to"),
    (b'{"k": "ValidatedTransactions", "v": 3, "fileId": "PF1"}\n1\t2\n', "expected fields"),
    (b'{"k": "ValidatedTransactions", "v": 3, "fileId": "PF1"}\n["1", 2]\n', "JSON array of strings"),
    (b'{"k": "ValidatedTransactions", "v": 3, "fileId": "PF1"}\n[[\n', "neither tab-separated"),
    (b'{"k": "ValidatedTransactions", "v": 3, "fileId": "PF1"}\n\xff\n', "neither tab-separated"),
    (b'{"k": "ValidatedTransactions", "v": 3, "fileId": "PF1"}\n' + b"\t".join([b"1"] * 15) + b"\n",
     "no usable amount/date"),
])
def test_a_work_file_that_is_not_what_the_message_says_is_corrupt(content, words):
    with pytest.raises(WorkFileCorrupt, match=words):
        list(read_validated(io.BytesIO(content), "PF1"))


def test_rejections_round_trip():
    from file_pipeline.domain.validator import Rejection

    rejections = [Rejection(1, 2, "E1", "", "B", "1,00", "EUR", (Finding(IsoReason.AC01, "bad iban"),))]
    out = io.BytesIO()
    write_rejections(out, "PF1", rejections)
    out.seek(0)
    assert list(read_rejections(out, "PF1")) == rejections


def _instructions(ref: ReferenceData) -> bytes:
    client = ref.clients["ACME001"]
    with InstructionsBuilder(ref, client, file_id="PF1", created=NOW) as builder:
        builder.add(_tx(1))
        builder.add(_tx(2, currency="USD", debtor_account="000123456789", creditor_iban="",
                        creditor_account="123", creditor_routing="021000021", creditor_bic="",
                        amount=Decimal("7")))
        builder.add(_tx(3, amount=Decimal("1.5")))
        out = io.BytesIO()
        summary = builder.write_to(out)
    assert (summary.nb_of_txs, summary.ctrl_sum, summary.blocks) == (3, Decimal("19.00"), 2)
    return out.getvalue()


def test_instructions_are_grouped_with_totals_and_render_to_pain001(ref):
    from file_pipeline.formats.xsd import validate_stream

    data = _instructions(ref)
    kinds = [json.loads(line)["k"] if line.startswith(b"{") else line.split(b"\t")[0].decode()
             for line in data.splitlines()]
    assert kinds == ["PaymentInstructions", "block", "t", "block", "t", "t"]
    out = io.BytesIO()
    written = render_pain001(io.BytesIO(data), out, "PF1")
    assert (written.nb_of_txs, written.blocks) == (3, 2)
    out.seek(0)
    validate_stream(out, "pain.001.001.09")


@pytest.mark.parametrize(("edit", "words"), [
    (lambda d: d.replace(b'"nbOfTxs": 3', b'"nbOfTxs": 4'), "declare 4"),
    (lambda d: d.replace(b"\t10.50\t", b"\t11.50\t", 1), "declares"),
    (lambda d: d.replace(b"\t7.00\tUSD\t", b"\t7.00\tEUR\t"), "in EUR, its block in USD"),
    (lambda d: d.rsplit(b"\n", 2)[0] + b"\n", "declares 2 / 12.00, its transactions make 1"),
    (lambda d: b"\n".join(d.split(b"\n")[:3]) + b"\n", "they hold 1"),
    (lambda d: d + b'{"k": "surprise"}\n', "surprise"),
    (lambda d: d + b"x\ty\n", "kind 'x'"),
    (lambda d: d.replace(b"\t7.00\t", b"\t"), "incomplete"),
    (lambda d: d.replace(b"\t7.00\t", b"\tseven\t"), "incomplete"),
])
def test_rendering_recomputes_every_total(ref, edit, words):
    with pytest.raises(WorkFileCorrupt, match=words):
        render_pain001(io.BytesIO(edit(_instructions(ref))), io.BytesIO(), "PF1")


def test_verified_reader_catches_tampering_and_truncation():
    data = b"x" * 1000
    import hashlib

    good = hashlib.sha256(data).hexdigest()
    reader = VerifiedReader(io.BytesIO(data), good, 1000, "w")
    assert io.BufferedReader(reader).read() == data
    for wrong in (b"y" + data[1:], data[:-1]):
        with pytest.raises(WorkFileCorrupt, match="changed or truncated"):
            io.BufferedReader(VerifiedReader(io.BytesIO(wrong), good, 1000, "w")).read()


def test_metered_reader_hashes_counts_and_stops_at_the_limit():
    import hashlib

    reader = MeteredReader(io.BytesIO(b"a" * 100), limit=100)
    buffered = io.BufferedReader(reader, 16)
    assert buffered.read(10) == b"a" * 10
    reader.drain()
    assert reader.count == 100 and reader.hexdigest() == hashlib.sha256(b"a" * 100).hexdigest()
    over = MeteredReader(io.BytesIO(b"a" * 101), limit=100)
    with pytest.raises(FileRejected, match="larger than the limit of 100"):
        io.BufferedReader(over, 1000).read()
    assert over.exceeded

    class Broken(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, b):
            raise ConnectionResetError("gone")

    broken = MeteredReader(Broken())
    with pytest.raises(SourceReadError):
        io.BufferedReader(broken).read()
    assert isinstance(broken.source_error, ConnectionResetError)


# ------------------------------------------------------------------------------------------ settings
def test_settings_defaults_and_parsing():
    s = PaymentSettings.from_env({})
    assert (s.max_bytes, s.fixed_now, s.max_attempts, s.retry_base, s.spool_dir) == (
        512 << 20, None, 6, timedelta(seconds=10), None)
    s = PaymentSettings.from_env({"PAYMENT_FILES_MAX_BYTES": "1024", "PAYMENT_FILES_CLOCK": "2026-11-20T09:00:00Z",
                                   "PAYMENT_FILES_MAX_ATTEMPTS": "3", "PAYMENT_FILES_RETRY_BASE_SECONDS": "0.5",
                                   "PaymentsEventGridTopicKey": "k"})
    assert (s.max_bytes, s.fixed_now, s.max_attempts, s.retry_base, s.event_grid_key) == (
        1024, datetime(2026, 11, 20, 9, tzinfo=UTC), 3, timedelta(seconds=0.5), "k")
    assert PaymentSettings.from_env({"PAYMENT_FILES_CLOCK": "system"}).fixed_now is None
    for bad in ({"PAYMENT_FILES_MAX_BYTES": "lots"}, {"PAYMENT_FILES_MAX_BYTES": "0"},
                {"PAYMENT_FILES_MAX_ATTEMPTS": "0"}, {"PAYMENT_FILES_RETRY_BASE_SECONDS": "0"},
                {"PAYMENT_FILES_RETRY_BASE_SECONDS": "nan"}, {"PAYMENT_FILES_RETRY_BASE_SECONDS": "soon"},
                {"PAYMENT_FILES_CLOCK": "2026-11-20T09:00:00"}, {"PAYMENT_FILES_CLOCK": "tomorrow"}):
        with pytest.raises(SettingsError):
            Settings.from_env(bad)  # the one loader refuses the whole app's settings
    with pytest.raises(SettingsError, match="PaymentsEventGridTopicEndpoint"):
        Settings.from_env({}).require(s.event_grid_endpoint, "PaymentsEventGridTopicEndpoint")
    assert Settings.from_env({"PAYMENT_FILES_MAX_ATTEMPTS": "3"}).payments.max_attempts == 3


# ------------------------------------------------------------------------------------------ seed
def test_seed_batches_stay_within_one_partition_and_100_entities():
    rows = [{"PartitionKey": "BIC", "RowKey": f"B{i:04d}XXXXXX"[:11], "BankName": "x"} for i in range(250)]
    rows += [{"PartitionKey": "CCY", "RowKey": "EUR", "MinorUnits": 2, "Extra": {"a": 1}}]
    chunks = batches(rows)
    assert [len(c) for c in chunks] == [100, 100, 50, 1]
    assert all(len({e["PartitionKey"] for e in c}) == 1 and len(c) <= MAX_BATCH for c in chunks)
    assert chunks[-1][0]["Extra"] == '{"a": 1}'  # Table properties are scalars


def _written_through_check(data: bytes, chunks: int = 7) -> tuple[bytes, Exception | None]:
    from file_pipeline.formats.xsd import ValidatingWriter

    out = io.BytesIO()
    step = max(1, len(data) // chunks)
    with ValidatingWriter(out, "pain.001.001.09") as checked:
        for at in range(0, len(data), step):
            checked.write(data[at:at + step])
        try:
            checked.verdict()
        except FileRejected as exc:
            return out.getvalue(), exc
    return out.getvalue(), None


def test_the_check_while_writing_accepts_what_the_xsd_accepts(ref):
    out = io.BytesIO()
    render_pain001(io.BytesIO(_instructions(ref)), out, "PF1")
    written, problem = _written_through_check(out.getvalue())
    assert problem is None and written == out.getvalue()  # the output is written unchanged


@pytest.mark.parametrize(("edit", "words"), [
    (lambda x: x.replace(b"<IBAN>", b"<IBAN>de", 1), "IBAN"),  # a pattern facet
    (lambda x: x[: len(x) // 2], "truncated"),  # an incomplete document
    (lambda x: x.replace(b"<EndToEndId>", b"<EndToEnd>", 1), ""),  # not even well-formed
])
def test_the_check_while_writing_rejects_what_the_xsd_rejects_with_its_reason(ref, edit, words):
    out = io.BytesIO()
    render_pain001(io.BytesIO(_instructions(ref)), out, "PF1")
    _, problem = _written_through_check(edit(out.getvalue()))
    assert problem is not None and problem.code.value == "FF01" and words in problem.description


def test_the_check_while_writing_survives_a_document_far_larger_than_the_pipe(ref):
    """An early error ends the check while megabytes are still to come: the writer carries on."""
    out = io.BytesIO()
    render_pain001(io.BytesIO(_instructions(ref)), out, "PF1")
    head, _, tail = out.getvalue().partition(b"<PmtInf>")
    junk = b"<!-- " + b"x" * (8 << 20) + b" -->"
    _, problem = _written_through_check(head + b"<Bogus/>" + junk + b"<PmtInf>" + tail, chunks=64)
    assert problem is not None and problem.code.value == "FF01"
