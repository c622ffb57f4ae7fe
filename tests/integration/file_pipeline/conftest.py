"""The payment-file pipeline against real Azurite, the Service Bus emulator (the app's own
``emulators/servicebus/config.json``) and the Event Grid emulator: the session's own, started
once in ``tests/integration/conftest.py``. Messages are read through the session's one
:class:`~tests.integration.conftest.Mailbox`, so the queue both workloads dead-letter to
(``deadletter``) has one reader, which keeps every message until the test it is for takes it.

Handlers are called directly with real trigger objects (the ``BlobClient`` the blob extension's
converter builds from the host's model binding data, ``azure.functions.servicebus.ServiceBusMessage``,
``func.HttpRequest``) and run on the real adapters (``file_pipeline.bootstrap``). Nothing mocks an
Azure SDK client. Every wait polls
against a generous deadline; nothing asserts how long something took.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob
import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobClient, BlobServiceClient
from azurefunctions.extensions.base import Datum

from choreography.entities import CONTAINERS, INPUT_CONTAINER, REFERENCE_TABLE
from choreography.runtime import reset_runtime
from devstack.stack import EVENTGRID_KEY, Azurite, EventGridEmulator, ServiceBusEmulator
from file_pipeline.domain.files import file_id_for
from file_pipeline.seed import seed
from tests.integration.conftest import Mailbox, Received
from tests.support.waiting import DEADLINE

ROOT = Path(__file__).resolve().parents[3]
CLOCK = "2026-11-20T09:00:00Z"  # Friday, before every cut-off: the sample files' dates are valid


@pytest.fixture(scope="package")
def blob_service(azurite: Azurite) -> Iterator[BlobServiceClient]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        for name in CONTAINERS:
            if not service.get_container_client(name).exists():
                service.create_container(name)
        yield service


@pytest.fixture(scope="package")
def seeded(tables: TableServiceClient) -> None:
    seed(tables.create_table_if_not_exists(REFERENCE_TABLE))


@pytest.fixture
def app(azurite: Azurite, servicebus: ServiceBusEmulator, eventgrid: EventGridEmulator, seeded: None,
        blob_service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The app settings in the environment, as the Functions host provides them; a fresh runtime."""
    settings = {
        "AzureWebJobsStorage": azurite.connection_string,
        "ServiceBusConnection": servicebus.connection_string,
        "PaymentsEventGridTopicEndpoint": eventgrid.topic_endpoint("payments"),
        "PaymentsEventGridTopicKey": EVENTGRID_KEY,
        "PAYMENT_FILES_CLOCK": CLOCK,
        "PAYMENT_FILES_MAX_BYTES": str(1 << 20),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    reset_runtime()
    yield settings
    reset_runtime()


# ------------------------------------------------------------------------------------------- triggers
@dataclass
class Uploaded:
    client: str
    name: str
    content: bytes
    etag: str
    url: str

    @property
    def file_id(self) -> str:
        return file_id_for(INPUT_CONTAINER, f"{self.client}/{self.name}", self.etag)

    def trigger(self) -> BlobClient:
        """What the Functions host hands the blob trigger for this upload (see :func:`blob_trigger`)."""
        return blob_trigger(f"{self.client}/{self.name}")


@dataclass(frozen=True)
class ModelBindingData:
    """The host's model binding data for a blob, as the worker passes it to the extension."""

    content: bytes
    version: str = "1.0"
    source: str = "AzureStorageBlobs"
    content_type: str = "application/json"


def blob_trigger(name: str, container: str = INPUT_CONTAINER) -> BlobClient:
    """The ``BlobClient`` a blob trigger bound to ``blob.BlobClient`` receives: built by the
    extension's own converter from what the host sends (connection setting name, container,
    blob name), reading the connection string from the environment like the worker does."""
    content = json.dumps({"Connection": "AzureWebJobsStorage", "ContainerName": container, "BlobName": name})
    datum = Datum(ModelBindingData(content.encode()), "model_binding_data")
    client = blob.BlobClientConverter.decode(datum, trigger_metadata={}, pytype=blob.BlobClient)
    assert isinstance(client, BlobClient)
    return client


def upload(blob_service: BlobServiceClient, client: str, name: str, content: bytes) -> Uploaded:
    blob = blob_service.get_blob_client(INPUT_CONTAINER, f"{client}/{name}")
    blob.upload_blob(content, overwrite=True)
    return Uploaded(client, name, content, blob.get_blob_properties().etag, blob.url)


def unique_name(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def http_get(path: str) -> func.HttpRequest:
    client, _, file_name = path.partition("/")
    return func.HttpRequest("GET", f"http://localhost/api/payment-files/{path}", headers={}, params={},
                            route_params={"clientId": client, "fileName": file_name}, body=b"")


class Inbox:
    """The session's mailbox asked the pipeline's way: one message by file id (the correlation id
    of every hand-off and dead letter), or everything on a queue so far."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    def take(self, queue_name: str, predicate: Callable[[Received], bool], timeout: float = DEADLINE) -> Received:
        [message] = self.mailbox.take(queue_name, predicate, timeout=timeout)
        return message

    def for_file(self, queue_name: str, file_id: str, subject: str | None = None) -> Received:
        return self.take(queue_name,
                         lambda m: m.correlation_id == file_id and (subject is None or m.subject == subject))

    def all_until_sentinel(self, queue_name: str) -> list[Received]:
        """Everything on the queue up to a sentinel sent now: with FIFO, 'nothing more arrived'
        is checked without waiting for time to pass."""
        return self.mailbox.drain_until_sentinel(queue_name, self.mailbox.send_sentinel(queue_name))


@pytest.fixture
def inbox(mailbox: Mailbox) -> Inbox:
    return Inbox(mailbox)
