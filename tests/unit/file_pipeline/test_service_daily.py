"""Daily limits through the use cases, on the fakes: reserved when a file is accepted, judged
against the client's other live files, safe when two files race, released by compensation once."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from lxml import etree

from choreography.entities import (
    ADAPTED_QUEUE,
    COMPENSATION_QUEUE,
    INPUT_CONTAINER,
    REPORTS_CONTAINER,
    VALIDATED_QUEUE,
    WORK_CONTAINER,
)
from fakes.file_pipeline import FakeReferenceSource
from file_pipeline.domain.daily import DayTotal
from file_pipeline.domain.files import FileState
from file_pipeline.ports import DailyTotalsMoved
from file_pipeline.steps.validate import Outcome

from .conftest import data_bytes
from .fakes import Harness
from .test_daily import MON, TUE, csv_file, reference, tx

VALIDATED, ADAPTED, COMPENSATION = VALIDATED_QUEUE.name, ADAPTED_QUEUE.name, COMPENSATION_QUEUE.name
NS2 = {"s": "urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"}


def harness(**acme: object) -> Harness:
    """ACME001 with a daily limit of EUR 1000.00 (and ``acme`` changes to its reference row)."""
    return Harness(reference=FakeReferenceSource(reference(ACME001={"DailyLimits": {"EUR": "1000.00"}, **acme})))


def totals(h: Harness) -> dict[str, str]:
    return h.records.day_amounts("ACME001")


def record_of(h: Harness, name: str):
    record, _ = h.records.latest("ACME001", name)
    assert record is not None
    return record


def tx_reasons(h: Harness, record) -> list[tuple[str, str]]:
    doc = etree.parse(io.BytesIO(h.blobs.data(REPORTS_CONTAINER, f"ACME001/{record.file_id}.xml")))
    return [(info.findtext("s:OrgnlEndToEndId", namespaces=NS2), info.findtext(".//s:Rsn/s:Cd", namespaces=NS2))
            for info in doc.iterfind(".//s:TxInfAndSts", namespaces=NS2)]


def group_status(h: Harness, record) -> str:
    doc = etree.parse(io.BytesIO(h.blobs.data(REPORTS_CONTAINER, f"ACME001/{record.file_id}.xml")))
    return doc.findtext(".//s:GrpSts", namespaces=NS2)


def opened(h: Harness, name: str) -> int:
    return h.blobs.opened.count((INPUT_CONTAINER, f"ACME001/{name}"))


# ------------------------------------------------------------------------------------------ in sequence
def test_a_second_file_that_would_pass_the_daily_limit_is_rejected_and_reserves_nothing():
    h = harness()
    first = h.submit("ACME001", "one.csv", csv_file(tx("A1", "600.00"), tx("A2", "1000.00", day=TUE)))
    assert first.state is FileState.COMPLETED
    assert first.daily_amounts == {"EUR-2026-11-23": "600.00", "EUR-2026-11-24": "1000.00"}
    assert totals(h) == {"EUR-2026-11-23": "600.00", "EUR-2026-11-24": "1000.00"}

    # B1 takes Monday exactly to the limit; B2 is one cent over on Tuesday
    second = h.submit("ACME001", "two.csv", csv_file(tx("B1", "400.00"), tx("B2", "0.01", day=TUE)))
    assert second.state is FileState.REJECTED and group_status(h, second) == "RJCT"  # policy reject-file
    assert tx_reasons(h, second) == [("B2", "AM14")]
    assert second.transaction_reasons == {"AM14": 1} and second.daily_amounts == {}
    assert totals(h) == {"EUR-2026-11-23": "600.00", "EUR-2026-11-24": "1000.00"}  # unchanged


def test_under_pass_valid_the_rest_of_the_file_goes_on_and_only_it_is_reserved():
    h = harness(RejectionPolicy="pass-valid")
    h.submit("ACME001", "one.csv", csv_file(tx("A1", "900.00")))
    second = h.submit("ACME001", "two.csv",
                      csv_file(tx("B1", "100.01"), tx("B2", "100.00"), tx("B3", "50.00", day=TUE)))
    assert second.state is FileState.COMPLETED and group_status(h, second) == "PART"
    assert tx_reasons(h, second) == [("B1", "AM14")]
    assert second.daily_amounts == {"EUR-2026-11-23": "100.00", "EUR-2026-11-24": "50.00"}
    assert totals(h) == {"EUR-2026-11-23": "1000.00", "EUR-2026-11-24": "50.00"}


def test_a_client_without_daily_limits_reads_and_writes_no_totals():
    h = Harness()  # the seed: INITECH03 has no DailyLimits
    record = h.submit("INITECH03", "payroll.ach", data_bytes("nacha_valid.ach"))
    assert record.state is FileState.COMPLETED and record.daily_amounts == {} and h.records.days == {}


# ------------------------------------------------------------------------------------------ racing files
def _accept_rival_during_my_save(h: Harness, rival_name: str, rival: bytes) -> None:
    """Another file of the client is accepted between my reading of the totals and my save."""
    upload = h.upload("ACME001", rival_name, rival)

    def rival_first(record):
        if record.file_name == "mine.csv" and record.state is FileState.VALIDATED:
            h.records.before_save = lambda r: None
            assert h.pipeline.validate(upload) is Outcome.ACCEPTED

    h.records.before_save = rival_first


def test_totals_moved_meanwhile_without_changing_the_verdict_are_written_again_without_validating_again():
    h = harness()
    _accept_rival_during_my_save(h, "rival.csv", csv_file(tx("R1", "300.00")))
    assert h.pipeline.validate(h.upload("ACME001", "mine.csv", csv_file(tx("M1", "700.00")))) is Outcome.ACCEPTED
    assert opened(h, "mine.csv") == 1  # validated once
    assert record_of(h, "mine.csv").state is FileState.VALIDATED
    assert totals(h) == {"EUR-2026-11-23": "1000.00"}  # 300 + 700: neither file's amount lost


def test_totals_moved_meanwhile_so_the_file_no_longer_fits_it_is_validated_again_on_the_fresh_totals():
    h = harness()
    _accept_rival_during_my_save(h, "rival.csv", csv_file(tx("R1", "300.01")))
    mine = h.upload("ACME001", "mine.csv", csv_file(tx("M1", "700.00")))
    with pytest.raises(DailyTotalsMoved):  # transient: the blob trigger tries again
        h.pipeline.validate(mine)
    assert record_of(h, "mine.csv").state is FileState.VALIDATING and h.publisher.accepted(VALIDATED) != []
    assert [s.envelope.correlation_id for s in h.publisher.accepted(VALIDATED)] == [record_of(h, "rival.csv").file_id]
    assert totals(h) == {"EUR-2026-11-23": "300.01"}

    mine.content.seek(0)
    assert h.pipeline.validate(mine) is Outcome.REJECTED  # the retry: validated again, 300.01 + 700 > 1000
    assert opened(h, "mine.csv") == 2
    record = record_of(h, "mine.csv")
    assert tx_reasons(h, record) == [("M1", "AM14")] and record.daily_amounts == {}
    assert totals(h) == {"EUR-2026-11-23": "300.01"}
    assert h.blobs.names(WORK_CONTAINER, record.file_id) == []


def test_room_freed_meanwhile_lets_the_validation_that_ran_again_accept_what_it_refused():
    h = harness(RejectionPolicy="pass-valid")
    h.records.set_day_total("ACME001", DayTotal("EUR", MON, Decimal("500.00")))  # an earlier file's amounts

    def free_the_room(record):
        if record.file_name == "mine.csv" and record.state is FileState.VALIDATED:
            h.records.before_save = lambda r: None
            h.records.set_day_total("ACME001", DayTotal("EUR", MON, Decimal("0.00")))  # that file compensated

    h.records.before_save = free_the_room
    mine = h.upload("ACME001", "mine.csv", csv_file(tx("M1", "400.00"), tx("M2", "600.00")))
    with pytest.raises(DailyTotalsMoved):  # M2 was refused on totals that no longer hold
        h.pipeline.validate(mine)
    mine.content.seek(0)
    assert h.pipeline.validate(mine) is Outcome.ACCEPTED
    h.run()
    record = record_of(h, "mine.csv")
    assert record.state is FileState.COMPLETED and group_status(h, record) == "ACCP"
    assert totals(h) == {"EUR-2026-11-23": "1000.00"}


def test_totals_that_keep_moving_give_up_as_a_transient_failure():
    h = harness()

    def another_file_each_time(record):
        current = {t.day: t for t in h.records.day_totals("ACME001", ["EUR"], MON)}.get(MON)
        h.records.set_day_total("ACME001", DayTotal("EUR", MON, (current.amount if current else Decimal(0))
                                                    + Decimal("0.01")))

    h.records.before_save = another_file_each_time
    with pytest.raises(DailyTotalsMoved):
        h.pipeline.validate(h.upload("ACME001", "mine.csv", csv_file(tx("M1", "10.00"))))
    assert record_of(h, "mine.csv").state is FileState.VALIDATING and totals(h) == {"EUR-2026-11-23": "0.05"}


# ------------------------------------------------------------------------------------------ release
def _corrupt_instructions(h: Harness, file_id: str) -> None:
    key = (WORK_CONTAINER, f"{file_id}/instructions.jsonl")
    h.blobs.blobs[key].data = h.blobs.blobs[key].data.replace(b"Anna Schmidt", b"Anna Schmidd")


def _fail_in_file_creator(h: Harness, name: str, content: bytes):
    """A file accepted, adapted, then failing for good in FileCreator: compensation is pending."""
    h.pipeline.validate(h.upload("ACME001", name, content))
    h.deliver(VALIDATED)
    record = record_of(h, name)
    _corrupt_instructions(h, record.file_id)
    h.deliver(ADAPTED)
    assert h.publisher.pending.get(COMPENSATION)
    return record


def test_compensation_releases_the_amounts_and_a_corrected_resubmission_is_accepted():
    h = harness()
    content = csv_file(tx("A1", "600.00"), tx("A2", "100.00", day=TUE))
    failed = _fail_in_file_creator(h, "payroll.csv", content)
    other = h.submit("ACME001", "other.csv", csv_file(tx("B1", "500.00")))
    assert other.state is FileState.REJECTED and tx_reasons(h, other) == [("B1", "AM14")]  # 600 + 500 > 1000

    h.run()  # the compensation
    failed = h.records.get("ACME001", failed.file_id)
    assert failed.state is FileState.REJECTED and failed.daily_amounts == {}
    assert totals(h) == {"EUR-2026-11-23": "0.00", "EUR-2026-11-24": "0.00"}

    again = h.submit("ACME001", "payroll.csv", content)  # corrected and sent again: the room is back
    assert again.state is FileState.COMPLETED and again.file_id != failed.file_id
    assert totals(h) == {"EUR-2026-11-23": "600.00", "EUR-2026-11-24": "100.00"}


def test_a_later_rejection_by_file_adaptor_releases_the_amounts():
    h = harness()
    h.pipeline.validate(h.upload("ACME001", "payroll.csv", csv_file(tx("A1", "999.99"))))
    record = record_of(h, "payroll.csv")
    del h.blobs.blobs[(WORK_CONTAINER, f"{record.file_id}/validated.jsonl")]
    h.run()
    record = record_of(h, "payroll.csv")
    assert record.state is FileState.REJECTED and record.failed_step == "FileAdaptor"
    assert record.daily_amounts == {} and totals(h) == {"EUR-2026-11-23": "0.00"}


def test_a_redelivered_compensation_subtracts_nothing_twice():
    h = harness()
    h.submit("ACME001", "kept.csv", csv_file(tx("K1", "300.00")))
    failed = _fail_in_file_creator(h, "payroll.csv", csv_file(tx("A1", "600.00")))
    assert totals(h) == {"EUR-2026-11-23": "900.00"}
    command = h.publisher.take(COMPENSATION)
    h.blobs.fail_write = lambda c, n: TimeoutError("storage busy") if c == REPORTS_CONTAINER else None
    with pytest.raises(TimeoutError):  # crashed after the amounts were released
        h.deliver(COMPENSATION, sent=command)
    assert h.records.get("ACME001", failed.file_id).state is FileState.COMPENSATING
    assert totals(h) == {"EUR-2026-11-23": "300.00"}
    h.blobs.fail_write = lambda c, n: None
    for attempt in (2, 3):
        h.deliver(COMPENSATION, delivery_count=attempt, sent=command)
    assert h.records.get("ACME001", failed.file_id).state is FileState.REJECTED
    assert totals(h) == {"EUR-2026-11-23": "300.00"}  # not 0.00: subtracted once


def test_a_release_whose_totals_move_meanwhile_reads_them_again_and_loses_nothing():
    h = harness()
    failed = _fail_in_file_creator(h, "payroll.csv", csv_file(tx("A1", "600.00")))

    def another_file_accepted(record):
        if record.file_id == failed.file_id and record.state is FileState.COMPENSATING:
            h.records.before_save = lambda r: None
            h.records.set_day_total("ACME001", DayTotal("EUR", MON, Decimal("850.00")))  # 600 + 250 of another

    h.records.before_save = another_file_accepted
    h.run()
    assert h.records.get("ACME001", failed.file_id).state is FileState.REJECTED
    assert totals(h) == {"EUR-2026-11-23": "250.00"}
