"""Blob triggers against Azurite: once per blob version, receipts where the host keeps them,
the poison queue after five failures, and receipts that outlive a devhost restart; the same
for a function bound to a BlobClient (SDK-type binding), which gets a client, not the content."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient

from devstack.stack import Azurite, DevHost, EventGridEmulator, ServiceBusEmulator

from .conftest import Records, app_env
from .support import SAMPLE_APP, wait_until

HOSTS = "azure-webjobs-hosts"


@pytest.fixture(scope="module")
def uploads(azurite: Azurite, devhost: DevHost) -> ContainerClient:
    container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client("uploads")
    try:
        container.create_container()
    except ResourceExistsError:
        pass
    return container


def host_id_of(host: DevHost) -> str:
    return requests.get(host.url("/admin/host/status"), timeout=30).json()["id"]


def test_each_blob_version_runs_once_and_an_overwrite_runs_again(
        uploads: ContainerClient, azurite: Azurite, devhost: DevHost, records: Records, tag: str) -> None:
    blob = uploads.get_blob_client(f"{tag}/first.txt")
    blob.upload_blob(b"version one")
    etag_one = blob.get_blob_properties().etag
    [seen] = records.wait(tag, 1, "blob_uploads")
    assert seen["name"] == f"uploads/{tag}/first.txt"
    assert seen["length"] == len(b"version one")
    assert seen["content"] == "version one"
    assert seen["uri"].endswith(f"/uploads/{tag}/first.txt")
    assert seen["etag"] == etag_one

    # A later blob is picked up by a later scan; by then the first was looked at again and skipped.
    uploads.get_blob_client(f"{tag}/second.txt").upload_blob(b"second")
    records.wait(tag, 2, "blob_uploads")
    blob.upload_blob(b"version two", overwrite=True)
    seen = records.wait(tag, 3, "blob_uploads")
    firsts = [s for s in seen if s["name"].endswith("first.txt")]
    assert [s["sha"] for s in firsts] == [hashlib.sha256(b"version one").hexdigest(),
                                          hashlib.sha256(b"version two").hexdigest()]

    # The receipt sits where the host writes it, ETag quoted, and is complete.
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    receipt = service.get_blob_client(
        HOSTS, f"blobreceipts/{host_id_of(devhost)}/Host.Functions.blob_uploads/{etag_one}/uploads/{tag}/first.txt")
    assert "Incomplete" not in receipt.get_blob_properties().metadata


def poison_messages(azurite: Azurite, blob_name: str) -> list[dict]:
    queue = QueueClient.from_connection_string(azurite.connection_string, "webjobs-blobtrigger-poison")
    try:
        peeked = queue.peek_messages(max_messages=32)
    except Exception:  # the queue is created with the first poison message
        return []
    messages = [json.loads(base64.b64decode(m.content)) for m in peeked]
    return [m for m in messages if m["BlobName"] == blob_name]


def test_five_failures_put_the_blob_on_the_poison_queue(
        uploads: ContainerClient, azurite: Azurite, records: Records, tag: str) -> None:
    name = f"{tag}/bad.txt"
    blob = uploads.get_blob_client(name)
    blob.upload_blob(b"fail, please")
    etag = blob.get_blob_properties().etag
    [message] = wait_until(lambda: poison_messages(azurite, name), "a poison message")
    assert message == {"Type": "BlobTrigger", "FunctionId": "Host.Functions.blob_uploads", "BlobType": "BlockBlob",
                       "ContainerName": "uploads", "BlobName": name, "ETag": etag}
    assert len(records.all(tag, "blob_uploads")) == 5  # poisonBlobThreshold tries, no more


def test_a_name_storage_keeps_otherwise_than_it_addresses_it_ends_on_the_poison_queue(
        uploads: ContainerClient, azurite: Azurite, devhost: DevHost, records: Records, tag: str) -> None:
    """Azurite stores 'a\\..\\b' as 'a/../b', a name whose URL no longer matches its signature:
    every try fails before the function runs. Five such tries and it is poisoned, and a blob
    uploaded after it is still processed."""
    uploads.get_blob_client(f"{tag}\\..\\odd.txt").upload_blob(b"odd")
    stored = next(b.name for b in uploads.list_blobs(name_starts_with=tag) if b.name.endswith("odd.txt"))
    [message] = wait_until(lambda: poison_messages(azurite, stored), "a poison message for the odd name")
    assert message["ContainerName"] == "uploads" and message["FunctionId"] == "Host.Functions.blob_uploads"
    uploads.get_blob_client(f"{tag}/after.txt").upload_blob(b"after")
    assert [r["name"] for r in records.wait(tag, 1, "blob_uploads")] == [f"uploads/{tag}/after.txt"]
    assert len(poison_messages(azurite, stored)) == 1  # poisoned once, not retried every scan


def test_a_name_storage_cannot_list_holds_up_no_other_blob(
        uploads: ContainerClient, devhost: DevHost, records: Records, tag: str) -> None:
    """Azurite answers List Blobs with 500 once the container holds a name with a control
    character; every other blob, in other folders and in its own folder before and after it,
    is still found and processed."""
    bad = uploads.get_blob_client(f"{tag}/m-ctl\x01.txt")
    bad.upload_blob(b"unlistable")
    try:
        names = [f"{tag}/a-before.txt", f"{tag}/m-ctl.txt", f"{tag}/m-ctl~after.txt", f"{tag}/z-after.txt"]
        for name in [*names, f"{tag}-other/x.txt"]:
            uploads.get_blob_client(name).upload_blob(b"listable")
        processed = {r["name"] for r in records.wait(tag, len(names), "blob_uploads")}
        assert processed == {f"uploads/{name}" for name in names}
        assert [r["name"] for r in records.wait(f"{tag}-other", 1, "blob_uploads")] == [f"uploads/{tag}-other/x.txt"]
    finally:
        bad.delete_blob()  # the other tests list this container too


@pytest.fixture
def restartable(azurite: Azurite, servicebus: ServiceBusEmulator, eventgrid: EventGridEmulator) -> Iterator[dict]:
    """Settings for devhosts that share a host id and a record table, apart from the session's."""
    env = app_env(azurite, servicebus, eventgrid, AzureFunctionsWebHost__hostid=f"restart-{uuid.uuid4().hex[:8]}")
    started: list[DevHost] = []
    env_holder = {"env": env, "started": started}
    yield env_holder
    for host in started:
        host.stop()


def test_receipts_survive_a_restart(uploads: ContainerClient, azurite: Azurite, restartable: dict,
                                    tag: str) -> None:
    env = restartable["env"]
    records = Records(azurite.connection_string, env["RECORD_TABLE"])
    first = DevHost(env, app_dir=SAMPLE_APP).start()
    restartable["started"].append(first)
    uploads.get_blob_client(f"{tag}/kept.txt").upload_blob(b"processed once")
    records.wait(tag, 1, "blob_uploads")
    assert first.signal() == 0

    second = DevHost(env, app_dir=SAMPLE_APP).start()
    restartable["started"].append(second)
    uploads.get_blob_client(f"{tag}/later.txt").upload_blob(b"after the restart")
    seen = records.wait(tag, 2, "blob_uploads")
    second.wait_for("Executed 'Functions.blob_uploads'")
    assert [s["name"] for s in seen] == [f"uploads/{tag}/kept.txt", f"uploads/{tag}/later.txt"]
    assert second.count(f"uploads/{tag}/kept.txt") == 0  # the new process never ran it


# ------------------------------------------------------------------ SDK-type binding (BlobClient)
@pytest.fixture(scope="module")
def sdk_uploads(azurite: Azurite, devhost: DevHost) -> ContainerClient:
    container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client("sdkuploads")
    try:
        container.create_container()
    except ResourceExistsError:
        pass
    return container


def peak_rss_mb(host: DevHost) -> float:
    assert host.pid is not None
    status = Path(f"/proc/{host.pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def test_a_blob_client_parameter_gets_a_client_and_the_host_downloads_nothing(
        sdk_uploads: ContainerClient, azurite: Azurite, devhost: DevHost, records: Records, tag: str) -> None:
    content = bytes(range(256)) * (48 * 4096)  # 48 MiB
    peak_before = peak_rss_mb(devhost)
    blob = sdk_uploads.get_blob_client(f"{tag}/big.bin")
    blob.upload_blob(content)
    etag = blob.get_blob_properties().etag
    [seen] = records.wait(tag, 1, "blob_clients")
    # The extension's converter built the storage SDK's own client from the binding data.
    assert seen["type"] == "azure.storage.blob._blob_client.BlobClient"
    assert (seen["container"], seen["name"]) == ("sdkuploads", f"{tag}/big.bin")
    assert seen["etag"] == etag
    assert (seen["length"], seen["sha"]) == (len(content), hashlib.sha256(content).hexdigest())
    # Neither devhost nor the function held the 48 MiB: the function read 1 MiB ranges.
    assert peak_rss_mb(devhost) - peak_before < 24

    receipt = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(
        HOSTS, f"blobreceipts/{host_id_of(devhost)}/Host.Functions.blob_clients/{etag}/sdkuploads/{tag}/big.bin")
    assert "Incomplete" not in receipt.get_blob_properties().metadata


def test_a_blob_client_function_runs_again_for_an_overwrite(
        sdk_uploads: ContainerClient, records: Records, tag: str) -> None:
    blob = sdk_uploads.get_blob_client(f"{tag}/file.txt")
    blob.upload_blob(b"version one")
    first = blob.get_blob_properties().etag
    records.wait(tag, 1, "blob_clients")
    blob.upload_blob(b"version two", overwrite=True)
    second = blob.get_blob_properties().etag
    seen = records.wait(tag, 2, "blob_clients")
    assert [(s["etag"], s["head"]) for s in seen] == [(first, "version one"), (second, "version two")]


def test_a_failing_blob_client_function_is_poisoned_after_five_tries(
        sdk_uploads: ContainerClient, azurite: Azurite, records: Records, tag: str) -> None:
    name = f"{tag}/bad.txt"
    blob = sdk_uploads.get_blob_client(name)
    blob.upload_blob(b"fail, please")
    etag = blob.get_blob_properties().etag
    [message] = wait_until(lambda: poison_messages(azurite, name), "a poison message")
    assert message == {"Type": "BlobTrigger", "FunctionId": "Host.Functions.blob_clients", "BlobType": "BlockBlob",
                       "ContainerName": "sdkuploads", "BlobName": name, "ETag": etag}
    assert len(records.all(tag, "blob_clients")) == 5


@pytest.mark.parametrize(("url", "name"), [
    ("https://acct.blob.core.windows.net/uploads/a/b%20c.csv", "a/b c.csv"),  # Azure
    ("http://127.0.0.1:10000/devstoreaccount1/uploads/x.csv", "x.csv"),       # Azurite, path style
    ("http://127.0.0.1:10000/devstoreaccount1/other/x.csv", None),
    ("https://acct.blob.core.windows.net/uploads", None),
])
def test_a_blob_created_event_names_its_blob_by_url(url: str, name: str | None) -> None:
    from devhost.blobs import blob_name_in

    assert blob_name_in(url, "uploads") == name
