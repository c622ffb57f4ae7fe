"""Azure Storage's Event Grid system topic, for Azurite: ``Microsoft.Storage.BlobCreated``.

Azurite raises no events, so :class:`BlobCreatedEvents` watches its containers (a listing every
``interval`` seconds, by name and ETag) and publishes, for each blob that appears or is
rewritten, the event Azure's storage system topic publishes (Event Grid schema, subject
``/blobServices/default/containers/{container}/blobs/{name}``, ``data.url`` the blob's URL) to
the Event Grid emulator's topic ``storage``. The emulator delivers it like Azure does, to the
subscriptions devstack/eventgrid-subscriptions.json declares for that topic, e.g. FileValidator's
Event Grid-based blob trigger (devhost's ``/runtime/webhooks/blobs``), which infra/ subscribes
in Azure. Blobs there before the watcher started are not announced (nor are they in Azure).
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import UTC, datetime

from azure.core.credentials import AzureKeyCredential
from azure.eventgrid import EventGridEvent, EventGridPublisherClient
from azure.storage.blob import BlobServiceClient

log = logging.getLogger("devstack.storage_events")

TOPIC = "storage"
BLOB_CREATED = "Microsoft.Storage.BlobCreated"


def blob_created(account_url: str, container: str, name: str, etag: str, size: int, content_type: str | None,
                 account: str) -> EventGridEvent:
    """The event Azure's storage system topic publishes for a Put Blob."""
    return EventGridEvent(
        subject=f"/blobServices/default/containers/{container}/blobs/{name}",
        event_type=BLOB_CREATED,
        data_version="",
        id=str(uuid.uuid4()),
        event_time=datetime.now(UTC),
        data={"api": "PutBlob", "requestId": str(uuid.uuid4()), "eTag": etag,
              "contentType": content_type or "application/octet-stream", "contentLength": size,
              "blobType": "BlockBlob", "url": f"{account_url.rstrip('/')}/{container}/{name}",
              "sequencer": f"{int(datetime.now(UTC).timestamp() * 1e6):032x}",
              "storageDiagnostics": {"batchId": str(uuid.uuid4()), "account": account}},
    )


class BlobCreatedEvents:
    def __init__(self, storage_connection: str, topic_endpoint: str, key: str, interval: float = 0.25) -> None:
        self._blobs = BlobServiceClient.from_connection_string(storage_connection)
        self._publisher = EventGridPublisherClient(topic_endpoint, AzureKeyCredential(key))
        self._interval = interval
        self._seen: dict[tuple[str, str], str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="blob-created-events", daemon=True)

    def start(self) -> BlobCreatedEvents:
        self._scan(announce=False)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self._publisher.close()
        self._blobs.close()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._scan(announce=True)
            except Exception as exc:  # Azurite paused or gone (the soak does that): try again next round
                log.warning("watching Azurite for new blobs failed: %s", exc)

    def _scan(self, announce: bool) -> None:
        events, seen = [], {}
        for container in self._blobs.list_containers():
            client = self._blobs.get_container_client(container.name)
            for blob in client.list_blobs():
                key = (container.name, blob.name)
                if self._seen.get(key) == blob.etag:
                    continue
                if announce:
                    events.append(blob_created(self._blobs.url, container.name, blob.name, blob.etag, blob.size,
                                               blob.content_settings.content_type, self._blobs.account_name or ""))
                seen[key] = blob.etag
        if events:
            self._publisher.send(events)
        self._seen.update(seen)  # only once published: a failed send is tried again next round
