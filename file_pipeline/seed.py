"""Seed the reference table from ``file_pipeline/reference_data/*.json``: ``python -m file_pipeline.seed``.

Idempotent: every row is an upsert (replace), sent in Table batches of at most 100 entities of
one partition, so running it again leaves the same table. The connection string is
``--connection-string``, else the ``AzureWebJobsStorage`` environment variable, else
``UseDevelopmentStorage=true`` (Azurite on its default ports).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from azure.data.tables import TableClient, UpdateMode

from choreography.connections import storage_tables
from choreography.entities import REFERENCE_TABLE
from choreography.settings import STORAGE_CONNECTION
from file_pipeline.domain.reference import ReferenceData, check_table_key, load_seed_entities

MAX_BATCH = 100  # Azure Table Storage: at most 100 operations per batch, one partition


@dataclass(frozen=True)
class SeedReport:
    entities: int
    batches: int
    partitions: int


def _scalar(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (dict, list)) else value


def batches(rows: Iterable[Mapping[str, Any]], size: int = MAX_BATCH) -> list[list[dict[str, Any]]]:
    """Rows grouped by partition, in chunks of at most ``size``; properties made Table scalars."""
    entities = [{k: _scalar(v) for k, v in row.items()} for row in rows]
    for entity in entities:
        check_table_key(entity["PartitionKey"])
        check_table_key(entity["RowKey"])
    entities.sort(key=lambda e: (e["PartitionKey"], e["RowKey"]))
    out: list[list[dict[str, Any]]] = []
    for _, group in groupby(entities, key=lambda e: e["PartitionKey"]):
        items = list(group)
        out.extend(items[i : i + size] for i in range(0, len(items), size))
    return out


def seed(table: TableClient, rows: Iterable[Mapping[str, Any]] | None = None) -> SeedReport:
    rows = list(load_seed_entities() if rows is None else rows)
    ReferenceData.from_entities(rows)  # refuse to seed data the pipeline could not load
    chunks = batches(rows)
    for chunk in chunks:
        table.submit_transaction([("upsert", entity, {"mode": UpdateMode.REPLACE}) for entity in chunk])
    return SeedReport(sum(len(c) for c in chunks), len(chunks), len({c[0]["PartitionKey"] for c in chunks}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m file_pipeline.seed", description=__doc__.splitlines()[0])
    parser.add_argument("--connection-string",
                        default=os.environ.get(STORAGE_CONNECTION, ""),
                        help=f"default: ${STORAGE_CONNECTION} in either form, or Azurite")
    parser.add_argument("--table", default=REFERENCE_TABLE)
    args = parser.parse_args(argv)
    with storage_tables(args.connection_string) as service:
        table = service.create_table_if_not_exists(args.table)
        report = seed(table)
    print(f"seeded {report.entities} reference entities into table {args.table} "
          f"({report.batches} batches, {report.partitions} partitions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
