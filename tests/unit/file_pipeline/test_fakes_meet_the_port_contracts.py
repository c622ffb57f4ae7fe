"""The in-memory fakes pass the same contract tests as the Azure adapters (tests/integration)."""

import pytest

from .fakes import FakeBlobStore, FakeFileRecords, FakeReferenceSource
from .port_contracts import BlobStoreContract, FileRecordsContract, ReferenceSourceContract


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
