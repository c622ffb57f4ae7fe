"""Write what a function saw to the record table (created on first use)."""

import json
import os
import time
import uuid

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableServiceClient

_table = None


def _client():
    global _table
    if _table is None:
        service = TableServiceClient.from_connection_string(os.environ["AzureWebJobsStorage"])
        try:
            service.create_table(os.environ["RECORD_TABLE"])
        except ResourceExistsError:
            pass
        _table = service.get_table_client(os.environ["RECORD_TABLE"])
    return _table


def record(tag: str, function: str, **fields) -> None:
    entity = {
        "PartitionKey": tag,
        "RowKey": f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}",
        "function": function,
        "fields": json.dumps(fields, default=str),
    }
    _client().create_entity(entity)
