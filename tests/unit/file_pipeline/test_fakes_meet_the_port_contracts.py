"""The in-memory fakes pass the same contract tests as the Azure adapters (tests/integration)."""

import pytest

from choreography.entities import INPUT_CONTAINER

from .fakes import FakeBlobStore, FakeFileRecords, FakeReferenceSource, FakeTriggerBlob
from .port_contracts import BlobStoreContract, FileRecordsContract, ReferenceSourceContract, TriggerBlobContract


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
