"""Session fixtures: Azurite, the Service Bus emulator, the Event Grid emulator and one devhost
running the sample app, all real subprocesses. The sample app's connection settings come from
local.settings.json.example and are overridden here through environment variables, exactly
as a developer would point func start at other services."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.data.tables import TableClient

from devstack.stack import Azurite, DevHost, EventGridEmulator, ServiceBusEmulator

from .support import EVENTGRID_OPTIONS, HERE, SAMPLE_APP, wait_until

EG_KEY = "local-eventgrid-key"


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as running:
        yield running


@pytest.fixture(scope="session")
def servicebus() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator(HERE / "servicebus.json") as running:
        yield running


@pytest.fixture(scope="session")
def eventgrid() -> Iterator[EventGridEmulator]:
    emulator = EventGridEmulator(HERE / "eventgrid.json", options=EVENTGRID_OPTIONS).start()
    yield emulator
    emulator.stop()


def app_env(azurite: Azurite, servicebus: ServiceBusEmulator, eventgrid: EventGridEmulator,
            **overrides: str) -> dict[str, str]:
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "ServiceBusConnection": servicebus.connection_string,
        "OUTBOX_TOPIC_ENDPOINT": eventgrid.topic_endpoint("outbox"),
        "RECORD_TABLE": f"rec{uuid.uuid4().hex[:12]}",
        "SAMPLE_OVERRIDDEN": "from-environment",
        "DEVHOST_BLOB_POLL_SECONDS": "0.5",
    }
    env.update(overrides)
    return env


@pytest.fixture(scope="session")
def host_env(azurite: Azurite, servicebus: ServiceBusEmulator, eventgrid: EventGridEmulator) -> dict[str, str]:
    return app_env(azurite, servicebus, eventgrid)


@pytest.fixture(scope="session")
def devhost(host_env: dict[str, str]) -> Iterator[DevHost]:
    host = DevHost(host_env, app_dir=SAMPLE_APP).start()
    yield host
    code = host.stop()
    assert code == 0, f"devhost exited with {code}:\n{host.output}"


class Records:
    """What the sample functions recorded, read back through the Tables SDK."""

    def __init__(self, connection_string: str, table: str) -> None:
        self._client = TableClient.from_connection_string(connection_string, table)

    def all(self, tag: str, function: str | None = None) -> list[dict[str, Any]]:
        try:
            rows = list(self._client.query_entities("PartitionKey eq @tag", parameters={"tag": tag}))
        except Exception:  # the table appears with the first record
            return []
        rows.sort(key=lambda r: r["RowKey"])
        return [{"function": r["function"], **json.loads(r["fields"])} for r in rows
                if function is None or r["function"] == function]

    def wait(self, tag: str, count: int, function: str | None = None, timeout: float = 60.0) -> list[dict[str, Any]]:
        return wait_until(lambda: (rows := self.all(tag, function)) and len(rows) >= count and rows,
                          f"{count} record(s) for {tag}/{function or '*'}", timeout)


@pytest.fixture(scope="session")
def records(azurite: Azurite, host_env: dict[str, str]) -> Records:
    return Records(azurite.connection_string, host_env["RECORD_TABLE"])


@pytest.fixture
def tag() -> str:
    return f"t{uuid.uuid4().hex[:12]}"
