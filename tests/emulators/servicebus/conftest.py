from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient

from devstack.stack import ServiceBusEmulator

CONFIG = Path(__file__).with_name("config.json")


@pytest.fixture(scope="session")
def emulator() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator(CONFIG) as running:
        yield running


@pytest.fixture(scope="session")
def conn_str(emulator: ServiceBusEmulator) -> str:
    return emulator.connection_string


@pytest.fixture
def client(conn_str: str) -> Iterator[ServiceBusClient]:
    with ServiceBusClient.from_connection_string(conn_str) as sb:
        yield sb
