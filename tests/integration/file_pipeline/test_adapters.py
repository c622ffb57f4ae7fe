"""The Azure Storage adapters on real Azurite, held to the same contract tests as the fakes;
and the reference-table seed (idempotent, batched)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import date, timedelta
from decimal import Decimal

import pytest

from choreography.entities import CONTAINERS, INPUT_CONTAINER
from file_pipeline.blob_adapters import AzureBlobStore, TriggerBlobClient, blob_service
from file_pipeline.domain.daily import DayTotal
from file_pipeline.domain.files import FileState
from file_pipeline.domain.reference import load_seed_entities
from file_pipeline.seed import MAX_BATCH, seed
from file_pipeline.table_adapters import TableFileRecords, TableReferenceSource
from tests.unit.file_pipeline.port_contracts import (
    BlobStoreContract,
    FileRecordsContract,
    ReferenceSourceContract,
    TriggerBlobContract,
    accept_with_daily,
    new_record,
    validate,
)

from .conftest import ROOT, blob_trigger


class TestAzureBlobStore(BlobStoreContract):
    @pytest.fixture
    def blob_store(self, azurite):
        store = AzureBlobStore(blob_service(azurite.connection_string))
        store.ensure_containers(CONTAINERS)
        return store


class AzuriteTriggerBlobs:
    """Uploads with the SDK; the trigger's client built by the blob extension's converter."""

    def __init__(self, service) -> None:
        self._container = service.get_container_client(INPUT_CONTAINER)

    def put(self, name: str, data: bytes) -> str:
        return self._container.get_blob_client(name).upload_blob(data, overwrite=True)["etag"]

    def delete(self, name: str) -> None:
        self._container.delete_blob(name)

    def trigger(self, name: str) -> TriggerBlobClient:
        return TriggerBlobClient(blob_trigger(name))


class TestTriggerBlobClient(TriggerBlobContract):
    @pytest.fixture
    def trigger_blobs(self, app, blob_service):
        return AzuriteTriggerBlobs(blob_service)


class TestTableFileRecords(FileRecordsContract):
    @pytest.fixture
    def file_records(self, tables):
        return TableFileRecords(tables.create_table(f"pf{uuid.uuid4().hex[:16]}"))


class TestTableReferenceSource(ReferenceSourceContract):
    @pytest.fixture
    def reference_source(self, tables):
        table = tables.create_table(f"ref{uuid.uuid4().hex[:16]}")
        seed(table)
        return TableReferenceSource(table)


def test_seeding_is_idempotent_and_batched_per_partition(tables):
    table = tables.create_table(f"ref{uuid.uuid4().hex[:16]}")
    rows = load_seed_entities()
    first = seed(table)
    assert first.entities == len(rows)
    assert first.batches >= first.partitions and first.entities <= first.batches * MAX_BATCH
    second = seed(table)
    assert second == first
    stored = list(table.list_entities())
    assert len(stored) == len(rows)
    acme = table.get_entity("CLIENT", "ACME001")
    assert acme["RejectionPolicy"] == "reject-file"


def test_seed_command_line(azurite):
    name = f"ref{uuid.uuid4().hex[:16]}"
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "file_pipeline.seed", "--connection-string",
                               azurite.connection_string, "--table", name], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert f"reference entities into table {name}" in done.stdout


def test_day_totals_are_rows_of_the_client_partition_holding_a_decimal_string(tables):
    table = tables.create_table(f"pf{uuid.uuid4().hex[:16]}")
    records = TableFileRecords(table)
    accept_with_daily(records, {"EUR-2026-11-23": "1250.10", "USD-2026-11-24": "0.01"})
    eur = table.get_entity("ACME001", "day-EUR-2026-11-23")
    assert (eur["currency"], eur["day"], eur["amount"]) == ("EUR", "2026-11-23", "1250.10")
    assert table.get_entity("ACME001", "day-USD-2026-11-24")["amount"] == "0.01"


def test_a_save_too_large_for_one_table_transaction_is_refused_before_anything_is_written(tables):
    table = tables.create_table(f"pf{uuid.uuid4().hex[:16]}")
    records = TableFileRecords(table)
    record = new_record()
    records.add(record)
    validate(record, [])
    many = [DayTotal("EUR", date(2027, 1, 1) + timedelta(days=i), Decimal("1.00")) for i in range(100)]
    with pytest.raises(ValueError, match="at most 100"):
        records.save(record, totals=many)
    assert records.get(record.client_id, record.file_id).state is FileState.VALIDATING
    assert records.day_totals("ACME001", ["EUR"], date(2027, 1, 1)) == []
