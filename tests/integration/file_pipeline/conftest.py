"""The payment-file pipeline against real Azurite, the Service Bus emulator (the app's own
``emulators/servicebus/config.json``) and the Event Grid emulator, each started once for this
package as a subprocess, so no other test drains the queues these tests read.

Handlers are called directly with real trigger objects (the ``BlobClient`` the blob extension's
converter builds from the host's model binding data, ``azure.functions.servicebus.ServiceBusMessage``,
``func.HttpRequest``) and run on the real adapters (``file_pipeline.bootstrap``). Nothing mocks an
Azure SDK client. Every wait polls
against a generous deadline; nothing asserts how long something took.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob
import pytest
from azure.data.tables import TableServiceClient
from azure.functions.servicebus import ServiceBusMessage as TriggerMessage
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceivedMessage
from azure.storage.blob import BlobClient, BlobServiceClient
from azurefunctions.extensions.base import Datum

from choreography.entities import CONTAINERS, INPUT_CONTAINER, REFERENCE_TABLE
from choreography.runtime import reset_runtime
from devstack.stack import EVENTGRID_KEY, Azurite, EventGridEmulator, ServiceBusEmulator
from file_pipeline.domain.files import file_id_for
from file_pipeline.seed import seed
from tests.support.waiting import DEADLINE

ROOT = Path(__file__).resolve().parents[3]
CLOCK = "2026-11-20T09:00:00Z"  # Friday, before every cut-off: the sample files' dates are valid


@pytest.fixture(scope="package")
def fp_azurite() -> Iterator[Azurite]:
    with Azurite() as running:
        yield running


@pytest.fixture(scope="package")
def fp_servicebus() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator(ROOT / "emulators" / "servicebus" / "config.json") as running:
        yield running


@pytest.fixture(scope="package")
def fp_eventgrid() -> Iterator[EventGridEmulator]:
    with EventGridEmulator() as emulator:
        yield emulator


@pytest.fixture(scope="package")
def blob_service(fp_azurite: Azurite) -> Iterator[BlobServiceClient]:
    with BlobServiceClient.from_connection_string(fp_azurite.connection_string) as service:
        for name in CONTAINERS:
            if not service.get_container_client(name).exists():
                service.create_container(name)
        yield service


@pytest.fixture(scope="package")
def table_service(fp_azurite: Azurite) -> Iterator[TableServiceClient]:
    with TableServiceClient.from_connection_string(fp_azurite.connection_string) as service:
        yield service


@pytest.fixture(scope="package")
def seeded(table_service: TableServiceClient) -> None:
    seed(table_service.create_table_if_not_exists(REFERENCE_TABLE))


@pytest.fixture
def app(fp_azurite: Azurite, fp_servicebus: ServiceBusEmulator, fp_eventgrid: EventGridEmulator, seeded: None,
        blob_service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The app settings in the environment, as the Functions host provides them; a fresh runtime."""
    settings = {
        "AzureWebJobsStorage": fp_azurite.connection_string,
        "ServiceBusConnection": fp_servicebus.connection_string,
        "PaymentsEventGridTopicEndpoint": fp_eventgrid.topic_endpoint("payments"),
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


@dataclass
class Got:
    """A received message, kept after completing it so a test can hand it to a handler."""

    body: bytes
    message_id: str
    subject: str | None
    correlation_id: str | None
    content_type: str | None
    application_properties: dict[str, Any]
    enqueued_time_utc: Any

    @classmethod
    def of(cls, message: ServiceBusReceivedMessage) -> Got:
        def text(value: Any) -> Any:
            return value.decode() if isinstance(value, bytes) else value

        return cls(b"".join(message.body), str(message.message_id), message.subject, message.correlation_id,
                   message.content_type,
                   {text(k): text(v) for k, v in (message.application_properties or {}).items()},
                   message.enqueued_time_utc)

    def trigger(self, delivery_count: int = 1) -> TriggerMessage:
        """The trigger object the Functions host would hand the function for this message."""
        return TriggerMessage(
            body=self.body, application_properties=dict(self.application_properties), content_type=self.content_type,
            correlation_id=self.correlation_id, delivery_count=delivery_count, label=self.subject,
            subject=self.subject, message_id=self.message_id, enqueued_time_utc=self.enqueued_time_utc,
            lock_token=str(uuid.uuid4()), user_properties=dict(self.application_properties))


class Inbox:
    """Receives (and completes) from the pipeline's queues, keeping every message until a test
    takes it, so a test waiting for its file never loses another test's messages."""

    def __init__(self, client: ServiceBusClient) -> None:
        self.client = client
        self.kept: dict[str, list[Got]] = {}
        self.receivers: dict[str, Any] = {}

    def _pull(self, queue_name: str) -> None:
        receiver = self.receivers.get(queue_name)
        if receiver is None:
            receiver = self.receivers[queue_name] = self.client.get_queue_receiver(queue_name)
        for message in receiver.receive_messages(max_message_count=50, max_wait_time=0.5):
            receiver.complete_message(message)
            self.kept.setdefault(queue_name, []).append(Got.of(message))

    def take(self, queue_name: str, predicate: Callable[[Got], bool], timeout: float = DEADLINE) -> Got:
        deadline = time.monotonic() + timeout
        while True:
            for message in self.kept.get(queue_name, []):
                if predicate(message):
                    self.kept[queue_name].remove(message)
                    return message
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for a message on {queue_name}; kept: "
                                     f"{[(m.subject, m.correlation_id) for m in self.kept.get(queue_name, [])]}")
            self._pull(queue_name)

    def for_file(self, queue_name: str, file_id: str, subject: str | None = None) -> Got:
        return self.take(queue_name,
                         lambda m: m.correlation_id == file_id and (subject is None or m.subject == subject))

    def all_until_sentinel(self, queue_name: str) -> list[Got]:
        """Everything on the queue up to a sentinel sent now: with FIFO, 'nothing more arrived'
        is checked without waiting for time to pass."""
        sentinel = f"sentinel-{uuid.uuid4().hex}"
        with self.client.get_queue_sender(queue_name) as sender:
            sender.send_messages(ServiceBusMessage(b"{}", message_id=sentinel, subject="Sentinel"))
        self.take(queue_name, lambda m: m.message_id == sentinel)
        return list(self.kept.get(queue_name, []))

    def close(self) -> None:
        for receiver in self.receivers.values():
            receiver.close()


@pytest.fixture(scope="package")
def inbox(fp_servicebus: ServiceBusEmulator) -> Iterator[Inbox]:
    with ServiceBusClient.from_connection_string(fp_servicebus.connection_string) as client:
        box = Inbox(client)
        yield box
        box.close()
