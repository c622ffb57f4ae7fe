"""One test class per port of the payment-file pipeline, subclassed for the in-memory fake
(tests/unit/file_pipeline) and for the Azure Storage adapter on Azurite
(tests/integration/file_pipeline), so both are held to the same tests.

Each subclass provides the fixture named by the class: ``blob_store`` (with containers
``payment-files-in``, ``payment-files-rejected``, ``payment-files-work`` usable), ``file_records``
(a fresh, empty store), ``reference_source`` (holding the shipped seed) or ``trigger_blobs``
(a :class:`TriggerBlobs`: uploads into ``payment-files-in`` and the trigger's view of a blob).
"""

from __future__ import annotations

import io
import uuid
from datetime import date
from decimal import Decimal
from typing import Protocol

import pytest

from choreography.entities import INPUT_CONTAINER, REJECTED_CONTAINER, WORK_CONTAINER
from choreography.errors import ConcurrencyConflict
from contracts.payment_files import UNSAFE_NAMES_PARTITION
from file_pipeline.domain.daily import DailyUsage, amounts_by_key
from file_pipeline.domain.files import (
    DuplicateKey,
    FileState,
    PaymentFile,
    Step,
    duplicate_keys,
    file_id_for,
    parse_upload_name,
)
from file_pipeline.domain.model import FileFormat, Finding
from file_pipeline.domain.reason_codes import IsoReason
from file_pipeline.ports import BlobNotFound, BlobVersionGone, DailyTotalsMoved, DuplicateClaimed, TriggerBlob

from .conftest import NOW


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class TriggerBlobs(Protocol):
    def put(self, name: str, data: bytes) -> str:
        """Upload (or overwrite) ``payment-files-in/name``; its ETag."""
        ...

    def delete(self, name: str) -> None:
        ...

    def trigger(self, name: str) -> TriggerBlob:
        """What a blob trigger hands over for ``payment-files-in/name``."""
        ...


class TriggerBlobContract:
    def test_info_is_the_blob_as_it_is_now_or_none(self, trigger_blobs):
        name = f"{unique()}/in.csv"
        blob = trigger_blobs.trigger(name)
        assert blob.info() is None
        etag = trigger_blobs.put(name, b"one")
        info = blob.info()
        assert info is not None and info.size == 3 and info.etag.strip('"') == etag.strip('"')
        newer = trigger_blobs.put(name, b"two!")
        info = blob.info()
        assert info is not None and info.size == 4 and info.etag.strip('"') == newer.strip('"')

    def test_open_read_streams_exactly_that_version(self, trigger_blobs):
        name = f"{unique()}/in.csv"
        data = bytes(range(256)) * 40_000  # 10 MB: several ranges
        etag = trigger_blobs.put(name, data)
        blob = trigger_blobs.trigger(name)
        with blob.open_read(etag) as stream:
            assert stream.read(10) == data[:10]
            assert stream.read() == data[10:]
        empty = f"{unique()}/empty.csv"
        with trigger_blobs.trigger(empty).open_read(trigger_blobs.put(empty, b"")) as stream:
            assert stream.read() == b""

    def test_an_older_version_or_a_missing_blob_fails_clearly(self, trigger_blobs):
        name = f"{unique()}/in.csv"
        first = trigger_blobs.put(name, b"one")
        trigger_blobs.put(name, b"two")
        with pytest.raises(BlobVersionGone):
            trigger_blobs.trigger(name).open_read(first)
        with pytest.raises(BlobNotFound):
            trigger_blobs.trigger(f"{unique()}/absent.csv").open_read(first)

    # An adapter may fetch ahead of its reader (the Azure one fetches one 4 MiB range ahead):
    # a change can only be seen in ranges not fetched yet, so these blobs are 5 ranges long.
    AHEAD_PROOF = bytes(range(256)) * 80_000

    def test_an_overwrite_while_reading_is_version_gone_not_a_mix(self, trigger_blobs):
        name = f"{unique()}/in.csv"
        data = self.AHEAD_PROOF
        etag = trigger_blobs.put(name, data)
        with trigger_blobs.trigger(name).open_read(etag) as stream:
            assert stream.read(10) == data[:10]
            trigger_blobs.put(name, b"x" * len(data))
            with pytest.raises(BlobVersionGone):
                stream.read()

    def test_a_delete_while_reading_fails_as_gone(self, trigger_blobs):
        # Not found or version gone: a conditional GET on a deleted blob may answer 404 or 412
        # (Azurite answers 412); the use case treats both alike.
        name = f"{unique()}/in.csv"
        data = self.AHEAD_PROOF
        etag = trigger_blobs.put(name, data)
        with trigger_blobs.trigger(name).open_read(etag) as stream:
            assert stream.read(10) == data[:10]
            trigger_blobs.delete(name)
            with pytest.raises((BlobNotFound, BlobVersionGone)):
                stream.read()


class BlobStoreContract:
    def _put(self, blob_store, container: str, name: str, data: bytes) -> str:
        return blob_store.write(container, name, io.BytesIO(data)).etag

    def test_write_then_read_round_trips_and_reports_size_and_etag(self, blob_store):
        name = f"{unique()}/data.bin"
        data = bytes(range(256)) * 40_000  # 10 MB: several blocks
        info = blob_store.write(WORK_CONTAINER, name, io.BytesIO(data), metadata={"fileId": "PF1"})
        assert info.size == len(data) and info.etag
        with blob_store.open_read(WORK_CONTAINER, name) as stream:
            assert stream.read(10) == data[:10]
            assert stream.read() == data[10:]
        described = blob_store.info(WORK_CONTAINER, name)
        assert described is not None and described.size == len(data) and described.metadata["fileId"] == "PF1"
        assert described.etag.strip('"') == info.etag.strip('"')

    def test_an_empty_source_makes_an_empty_blob(self, blob_store):
        name = f"{unique()}/empty"
        assert blob_store.write(WORK_CONTAINER, name, io.BytesIO(b"")).size == 0
        with blob_store.open_read(WORK_CONTAINER, name) as stream:
            assert stream.read() == b""

    def test_write_replaces_and_changes_the_etag(self, blob_store):
        name = f"{unique()}/x"
        first = self._put(blob_store, WORK_CONTAINER, name, b"one")
        second = self._put(blob_store, WORK_CONTAINER, name, b"two")
        assert first.strip('"') != second.strip('"')
        with blob_store.open_read(WORK_CONTAINER, name) as stream:
            assert stream.read() == b"two"

    def test_reading_a_version_that_was_overwritten_or_a_missing_blob_fails_clearly(self, blob_store):
        name = f"{unique()}/x"
        first = self._put(blob_store, WORK_CONTAINER, name, b"one")
        self._put(blob_store, WORK_CONTAINER, name, b"two")
        with pytest.raises(BlobVersionGone):
            blob_store.open_read(WORK_CONTAINER, name, first)
        with pytest.raises(BlobNotFound):
            blob_store.open_read(WORK_CONTAINER, f"{unique()}/missing")
        assert blob_store.info(WORK_CONTAINER, f"{unique()}/missing") is None

    def test_a_failing_source_leaves_the_previous_blob_whole(self, blob_store):
        name = f"{unique()}/x"
        self._put(blob_store, WORK_CONTAINER, name, b"complete and valid")

        class Broken(io.RawIOBase):
            sent = 0

            def readable(self):
                return True

            def readinto(self, buffer):
                if self.sent:
                    raise OSError("disk gone")
                self.sent = 1
                buffer[:5] = b"parti"
                return 5

        with pytest.raises(OSError, match="disk gone"):
            blob_store.write(WORK_CONTAINER, name, io.BufferedReader(Broken(), 5))
        with blob_store.open_read(WORK_CONTAINER, name) as stream:
            assert stream.read() == b"complete and valid"

    def test_open_write_makes_the_blob_only_at_commit(self, blob_store):
        name = f"{unique()}/streamed.xml"
        self._put(blob_store, WORK_CONTAINER, name, b"the previous version")
        data = bytes(range(251)) * 40_000  # 10 MB in uneven writes: blocks of every size
        with blob_store.open_write(WORK_CONTAINER, name, content_type="application/xml") as out:
            for start in range(0, len(data), 1_000_003):
                out.write(data[start:start + 1_000_003])
            with blob_store.open_read(WORK_CONTAINER, name) as stream:
                assert stream.read() == b"the previous version"  # written, not committed: unseen
            info = out.commit({"fileId": "PF1"})
        assert info.size == len(data) and info.etag
        with blob_store.open_read(WORK_CONTAINER, name, info.etag) as stream:
            assert stream.read() == data
        described = blob_store.info(WORK_CONTAINER, name)
        assert described is not None and described.metadata["fileId"] == "PF1"

    def test_open_write_left_without_commit_changes_nothing(self, blob_store):
        kept, never = f"{unique()}/kept", f"{unique()}/never"
        etag = self._put(blob_store, WORK_CONTAINER, kept, b"complete and valid")
        def write_then_fail(name: str) -> None:
            with blob_store.open_write(WORK_CONTAINER, name) as out:
                out.write(b"x" * 9_000_000)  # more than a block: some of it already sent
                raise RuntimeError("the producer failed")

        for name in (kept, never):
            with pytest.raises(RuntimeError, match="producer failed"):
                write_then_fail(name)
        with blob_store.open_read(WORK_CONTAINER, kept, etag) as stream:
            assert stream.read() == b"complete and valid"
        assert blob_store.info(WORK_CONTAINER, never) is None

    def test_move_moves_only_the_given_version_and_is_safe_to_repeat(self, blob_store):
        name = f"{unique()}/payroll.csv"
        etag = self._put(blob_store, INPUT_CONTAINER, name, b"a,b\n")
        assert blob_store.move(INPUT_CONTAINER, name, REJECTED_CONTAINER, name, etag=etag,
                               metadata={"fileId": "PF1", "reasonCode": "AC01"}) is True
        assert blob_store.info(INPUT_CONTAINER, name) is None
        moved = blob_store.info(REJECTED_CONTAINER, name)
        assert moved is not None and moved.metadata == {"fileId": "PF1", "reasonCode": "AC01"}
        with blob_store.open_read(REJECTED_CONTAINER, name) as stream:
            assert stream.read() == b"a,b\n"
        assert blob_store.move(INPUT_CONTAINER, name, REJECTED_CONTAINER, name, etag=etag) is False

    def test_copy_copies_only_the_given_version_and_keeps_the_source(self, blob_store):
        name = f"{unique()}/payroll.csv"
        old = self._put(blob_store, INPUT_CONTAINER, name, b"a,b\n")
        for _ in range(2):  # safe to repeat
            assert blob_store.copy(INPUT_CONTAINER, name, REJECTED_CONTAINER, name, etag=old,
                                   metadata={"fileId": "PF1"}) is True
        assert blob_store.info(INPUT_CONTAINER, name) is not None
        assert blob_store.info(REJECTED_CONTAINER, name).metadata == {"fileId": "PF1"}
        self._put(blob_store, INPUT_CONTAINER, name, b"corrected")
        assert blob_store.copy(INPUT_CONTAINER, name, REJECTED_CONTAINER, f"{name}.2", etag=old) is False
        assert blob_store.copy(INPUT_CONTAINER, f"{name}.gone", REJECTED_CONTAINER, f"{name}.3") is False

    def test_move_leaves_a_newer_version_alone(self, blob_store):
        name = f"{unique()}/payroll.csv"
        old = self._put(blob_store, INPUT_CONTAINER, name, b"old")
        self._put(blob_store, INPUT_CONTAINER, name, b"corrected")
        assert blob_store.move(INPUT_CONTAINER, name, REJECTED_CONTAINER, name, etag=old) is False
        with blob_store.open_read(INPUT_CONTAINER, name) as stream:
            assert stream.read() == b"corrected"
        assert blob_store.info(REJECTED_CONTAINER, name) is None

    def test_delete_and_delete_prefix_are_idempotent(self, blob_store):
        prefix = f"{unique()}/"
        for part in ("a", "b", "c"):
            self._put(blob_store, WORK_CONTAINER, prefix + part, part.encode())
        other = f"{unique()}/keep"
        self._put(blob_store, WORK_CONTAINER, other, b"keep")
        assert blob_store.names(WORK_CONTAINER, prefix) == [prefix + "a", prefix + "b", prefix + "c"]
        assert blob_store.delete(WORK_CONTAINER, prefix + "a") is True
        assert blob_store.delete(WORK_CONTAINER, prefix + "a") is False
        assert blob_store.delete_prefix(WORK_CONTAINER, prefix) == 2
        assert blob_store.delete_prefix(WORK_CONTAINER, prefix) == 0
        assert blob_store.names(WORK_CONTAINER, prefix) == []
        assert blob_store.names(WORK_CONTAINER, other) == [other]


def new_record(client: str = "ACME001", name: str | None = None) -> PaymentFile:
    name = name or f"{unique('payroll')}.csv"
    upload = parse_upload_name(f"{client}/{name}")
    etag = unique("etag")
    return PaymentFile.received(file_id_for(INPUT_CONTAINER, f"{client}/{name}", etag), upload, f"{client}/{name}",
                                etag, 123, NOW, f"{INPUT_CONTAINER}/{client}/{name}")


def validate(record: PaymentFile, keys: list[DuplicateKey], daily: dict[str, str] | None = None) -> None:
    record.validated(NOW, validated_at=NOW, file_format="CSV-v1", sha256="ab" * 32, size=3_000_000_000,
                     msg_id=record.file_id, original_nb_of_txs=2, original_ctrl_sum=Decimal("3.50"),
                     group_status="PART", transactions=2, accepted=1, rejected=1,
                     accepted_sum=Decimal("1.25"),
                     rejected_sum=Decimal("2.25"), transaction_reasons={"AC01": 1},
                     claims=[k.key for k in keys], handoff={"type": "PaymentFileValidated", "data": {"x": "ü"}},
                     daily_amounts=daily)


MON, TUE = date(2026, 11, 23), date(2026, 11, 24)


def accept_with_daily(file_records, daily: dict[str, str], client: str = "ACME001") -> PaymentFile:
    """A new file of ``client`` accepted with ``daily`` reserved on the totals as read now."""
    record = new_record(client)
    file_records.add(record)
    validate(record, [], daily)
    reserved = amounts_by_key(daily)
    currencies = sorted({currency for currency, _ in reserved})
    usage = DailyUsage(file_records.day_totals(client, currencies, min(day for _, day in reserved)))
    file_records.save(record, totals=usage.reserve(reserved))
    return record


def stored_amounts(file_records, client: str = "ACME001", currencies=("CHF", "EUR", "USD")) -> dict:
    return {(t.currency, t.day): t.amount for t in file_records.day_totals(client, list(currencies), date(2000, 1, 1))}


class FileRecordsContract:
    def test_a_missing_record_is_none(self, file_records):
        assert file_records.get("ACME001", "PF" + "0" * 24) is None
        assert file_records.find("PF" + "0" * 24) is None
        assert file_records.latest("ACME001", "nothing.csv") == (None, [])

    def test_add_then_get_round_trips_everything(self, file_records):
        record = new_record()
        file_records.add(record)
        assert record.version is not None
        keys = duplicate_keys("cd" * 32, FileFormat.PAIN001_09, "MSG-1")
        validate(record, keys, {"EUR-2026-11-23": "1250.00", "USD-2026-11-24": "0.01"})
        file_records.save(record, claim=keys)
        loaded = file_records.get(record.client_id, record.file_id)
        assert loaded is not None and loaded.version == record.version
        for name in ("file_id", "client_id", "file_name", "state", "received_at", "validated_at", "input_name",
                     "source_etag", "size", "sha256", "format", "msg_id", "original_nb_of_txs", "original_ctrl_sum",
                     "group_status", "transactions", "accepted", "rejected", "accepted_sum", "rejected_sum",
                     "transaction_reasons", "locations", "duplicate_keys", "daily_amounts", "handoff", "notified"):
            assert getattr(loaded, name) == getattr(record, name), name
        assert file_records.find(record.file_id).file_id == record.file_id

    def test_add_refuses_a_known_file(self, file_records):
        record = new_record()
        file_records.add(record)
        again = new_record(name=record.file_name)
        again.file_id = record.file_id
        with pytest.raises(ConcurrencyConflict):
            file_records.add(again)

    def test_save_from_a_stale_read_conflicts(self, file_records):
        record = new_record()
        file_records.add(record)
        one, two = file_records.get(record.client_id, record.file_id), file_records.get(record.client_id,
                                                                                        record.file_id)
        validate(one, [])
        file_records.save(one)
        validate(two, [])
        with pytest.raises(ConcurrencyConflict):
            file_records.save(two)

    def test_latest_follows_resubmissions_of_a_name(self, file_records):
        first = new_record()
        file_records.add(first)
        second = new_record(name=first.file_name)
        file_records.add(second)
        latest, previous = file_records.latest(first.client_id, first.file_name)
        assert latest is not None and latest.file_id == second.file_id
        assert previous == [first.file_id]

    def test_claims_are_exclusive_atomic_with_the_record_and_released_by_their_owner(self, file_records):
        keys = duplicate_keys("ef" * 32, FileFormat.NACHA, "0260095931-2611201200A")
        owner = new_record()
        file_records.add(owner)
        validate(owner, keys)
        file_records.save(owner, claim=keys)
        assert file_records.claim_owners(owner.client_id, keys) == {
            k.key: (owner.file_id, owner.file_name) for k in keys}
        rival = new_record()
        file_records.add(rival)
        validate(rival, keys)
        with pytest.raises(DuplicateClaimed) as lost:
            file_records.save(rival, claim=keys)
        assert lost.value.owner_file_id == owner.file_id
        # the losing batch changed nothing: the rival is still Validating
        assert file_records.get(rival.client_id, rival.file_id).state is FileState.VALIDATING
        # a release by someone else does nothing; by the owner, frees the keys in the same write
        stale = file_records.get(rival.client_id, rival.file_id)
        file_records.save(stale, release=[k.key for k in keys])
        assert len(file_records.claim_owners(owner.client_id, keys)) == 2
        released = owner.compensating(NOW, Step.CREATOR, [Finding(IsoReason.NARR, "undone")])
        file_records.save(owner, release=released)
        assert file_records.claim_owners(owner.client_id, keys) == {}
        assert file_records.get(owner.client_id, owner.file_id).state is FileState.COMPENSATING

    def test_claims_belong_to_one_client(self, file_records):
        keys = duplicate_keys("12" * 32, FileFormat.CSV, "")
        one = new_record("ACME001")
        file_records.add(one)
        validate(one, keys)
        file_records.save(one, claim=keys)
        other = new_record("GLOBEX02")
        file_records.add(other)
        validate(other, keys)
        file_records.save(other, claim=keys)  # the same content from another client is no duplicate

    def test_day_totals_are_stored_exactly_and_read_by_currency_and_day(self, file_records):
        assert file_records.day_totals("ACME001", ["EUR"], MON) == []
        accept_with_daily(file_records, {"EUR-2026-11-23": "1250.00", "EUR-2026-11-24": "0.10",
                                         "USD-2026-11-23": "19999999.99"})
        accept_with_daily(file_records, {"EUR-2026-11-23": "0.01"})
        eur = file_records.day_totals("ACME001", ["EUR"], MON)
        assert sorted((t.currency, t.day, str(t.amount)) for t in eur) == [
            ("EUR", MON, "1250.01"), ("EUR", TUE, "0.10")]  # Decimal strings, never floats
        assert all(t.version for t in eur)
        assert [(t.day, t.amount) for t in file_records.day_totals("ACME001", ["EUR"], TUE)] == [
            (TUE, Decimal("0.10"))]  # earlier days are not read
        assert [t.amount for t in file_records.day_totals("ACME001", ["USD"], MON)] == [Decimal("19999999.99")]
        assert len(file_records.day_totals("ACME001", ["CHF", "EUR", "USD"], MON)) == 3
        assert file_records.day_totals("GLOBEX02", ["EUR", "USD"], MON) == []  # one client's totals only

    def test_a_day_total_moved_since_it_was_read_fails_the_whole_write(self, file_records):
        accept_with_daily(file_records, {"EUR-2026-11-23": "100.00"})
        one, two = new_record(), new_record()
        for record in (one, two):
            file_records.add(record)
            validate(record, [], {"EUR-2026-11-23": "50.00"})
        read_by_one = DailyUsage(file_records.day_totals("ACME001", ["EUR"], MON))
        read_by_two = DailyUsage(file_records.day_totals("ACME001", ["EUR"], MON))
        file_records.save(one, totals=read_by_one.reserve({("EUR", MON): Decimal("50.00")}))
        keys = duplicate_keys("fe" * 32, FileFormat.CSV, "")
        with pytest.raises(DailyTotalsMoved):
            file_records.save(two, claim=keys, totals=read_by_two.reserve({("EUR", MON): Decimal("50.00")}))
        # nothing of the failed write happened: record, claims and total as they were
        assert file_records.get(two.client_id, two.file_id).state is FileState.VALIDATING
        assert file_records.claim_owners("ACME001", keys) == {}
        assert stored_amounts(file_records) == {("EUR", MON): Decimal("150.00")}
        # read again, the same write goes through
        fresh = DailyUsage(file_records.day_totals("ACME001", ["EUR"], MON))
        file_records.save(two, claim=keys, totals=fresh.reserve({("EUR", MON): Decimal("50.00")}))
        assert stored_amounts(file_records) == {("EUR", MON): Decimal("200.00")}

    def test_a_day_total_created_meanwhile_fails_the_write_that_would_create_it(self, file_records):
        late = new_record()
        file_records.add(late)
        validate(late, [], {"EUR-2026-11-24": "7.00"})
        nothing_yet = DailyUsage(file_records.day_totals("ACME001", ["EUR"], TUE))
        accept_with_daily(file_records, {"EUR-2026-11-24": "3.00"})
        with pytest.raises(DailyTotalsMoved):
            file_records.save(late, totals=nothing_yet.reserve({("EUR", TUE): Decimal("7.00")}))
        assert stored_amounts(file_records) == {("EUR", TUE): Decimal("3.00")}

    def test_a_release_is_written_with_the_record_that_clears_it_and_only_once(self, file_records):
        owner = accept_with_daily(file_records, {"EUR-2026-11-23": "40.00", "USD-2026-11-23": "5.00"})
        accept_with_daily(file_records, {"EUR-2026-11-23": "2.00"})
        stale = file_records.get(owner.client_id, owner.file_id)
        released = owner.compensating(NOW, Step.CREATOR, [Finding(IsoReason.NARR, "undone")])
        amounts = amounts_by_key(owner.release_daily_amounts())
        stored = DailyUsage(file_records.day_totals("ACME001", ["EUR", "USD"], MON))
        file_records.save(owner, release=released, totals=stored.release(amounts))
        assert stored_amounts(file_records) == {("EUR", MON): Decimal("2.00"), ("USD", MON): Decimal("0.00")}
        assert file_records.get(owner.client_id, owner.file_id).daily_amounts == {}
        # a second compensation working from the record as it was before cannot subtract again
        again = stale.compensating(NOW, Step.CREATOR, [Finding(IsoReason.NARR, "undone")])
        amounts = amounts_by_key(stale.release_daily_amounts())
        stored = DailyUsage(file_records.day_totals("ACME001", ["EUR", "USD"], MON))
        with pytest.raises(ConcurrencyConflict):
            file_records.save(stale, release=again, totals=stored.release(amounts))
        assert stored_amounts(file_records) == {("EUR", MON): Decimal("2.00"), ("USD", MON): Decimal("0.00")}

    def test_unsafe_names_are_recorded_in_their_own_partition(self, file_records):
        upload = parse_upload_name("../../etc/passwd")
        assert upload.client_id == UNSAFE_NAMES_PARTITION and not upload.safe
        record = PaymentFile.received(file_id_for(INPUT_CONTAINER, "../../etc/passwd", "e"), upload, "", "e", 5,
                                      NOW, "")
        file_records.add(record)
        assert file_records.get(UNSAFE_NAMES_PARTITION, record.file_id).file_name == "../../etc/passwd"


class ReferenceSourceContract:
    def test_loads_the_seeded_reference_data(self, reference_source):
        ref = reference_source.load()
        assert {"ACME001", "GLOBEX02", "INITECH03"} <= set(ref.clients)
        assert ref.currencies["JPY"].minor_units == 0 and ref.currencies["BHD"].minor_units == 3
        assert ref.bank("COBADEFF") is not None and "021000021" in ref.aba
        assert ref.clients["GLOBEX02"].rejection_policy == "pass-valid"
        assert ref.formats["CSV-EU"].csv is not None and ref.formats["CSV-EU"].csv.delimiter == ";"
        assert any(ref.holidays.values())
