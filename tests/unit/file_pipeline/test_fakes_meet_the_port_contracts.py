"""The in-memory fakes and the payment benchmark's local-disk stores pass the same contract tests as
the Azure adapters (tests/integration)."""

import pytest

from benchmarks.payments.local_ports import DiskFileRecords, LocalBlobStore
from choreography.entities import INPUT_CONTAINER
from choreography.errors import ConcurrencyConflict
from fakes.file_pipeline import FakeBlobStore, FakeFileRecords, FakeReferenceSource, FakeTriggerBlob
from file_pipeline.domain.files import duplicate_keys
from file_pipeline.domain.model import FileFormat

from .port_contracts import (
    BlobStoreContract,
    FileRecordsContract,
    ReferenceSourceContract,
    TriggerBlobContract,
    new_record,
    validate,
)


class TestFakeBlobStore(BlobStoreContract):
    @pytest.fixture
    def blob_store(self):
        return FakeBlobStore()


class TestFakeFileRecords(FileRecordsContract):
    @pytest.fixture
    def file_records(self):
        return FakeFileRecords()


class TestFakeReferenceSource(ReferenceSourceContract):
    @pytest.fixture
    def reference_source(self):
        return FakeReferenceSource()


class FakeTriggerBlobs:
    def __init__(self) -> None:
        self.store = FakeBlobStore()

    def put(self, name: str, data: bytes) -> str:
        return self.store.put(INPUT_CONTAINER, name, data)

    def delete(self, name: str) -> None:
        self.store.delete(INPUT_CONTAINER, name)

    def trigger(self, name: str) -> FakeTriggerBlob:
        return FakeTriggerBlob(self.store, INPUT_CONTAINER, name)


class TestFakeTriggerBlob(TriggerBlobContract):
    @pytest.fixture
    def trigger_blobs(self):
        return FakeTriggerBlobs()


# The payment benchmark's stores (each stage measured alone runs in a process of its own, on the
# local disk) are held to the same tests, so its figures come from ports that behave like Azure's.
class TestBenchmarkLocalBlobStore(BlobStoreContract):
    @pytest.fixture
    def blob_store(self, tmp_path):
        return LocalBlobStore(tmp_path / "store")


class TestBenchmarkDiskFileRecords(FileRecordsContract):
    @pytest.fixture
    def file_records(self, tmp_path):
        return DiskFileRecords(tmp_path / "records.pickle")

    def test_another_process_sees_what_was_saved(self, tmp_path):
        path = tmp_path / "records.pickle"
        first = DiskFileRecords(path)
        keys = duplicate_keys("ef" * 32, FileFormat.CSV, "")
        record = new_record()
        first.add(record)
        validate(record, keys)
        first.save(record, claim=keys)
        again = DiskFileRecords(path)  # what the next stage, a process of its own, opens
        assert again.get(record.client_id, record.file_id) == first.get(record.client_id, record.file_id)
        assert again.claim_owners(record.client_id, keys) == {k.key: (record.file_id, record.file_name) for k in keys}
        stale = DiskFileRecords(path).get(record.client_id, record.file_id)
        saved = again.get(record.client_id, record.file_id)
        again.save(saved)  # versions go on from where the last process stopped: an older read conflicts
        with pytest.raises(ConcurrencyConflict):
            DiskFileRecords(path).save(stale)
