"""Blob triggers: container polling (or, with ``source=EventGrid``, BlobCreated events) with the
host's blob receipts and poison queue.

Contract, per ``blobTrigger`` function (``path`` = ``container/pattern``, ``connection``
names the app setting, default ``Storage`` → ``AzureWebJobsStorage``):

* The container is listed every ``poll_interval`` seconds (0.25 s by default; Azure's polling
  trigger may take minutes, the Event Grid-based one seconds). While listings find nothing new
  and nothing is being processed, the interval doubles up to ``QUIET_POLL_SECONDS`` (1 s), so
  an idle host does not list four times a second; anything new brings it back. ``{param}`` in
  the pattern matches any text, ``/`` included, as the host's blob path templates do; literal
  text must match exactly. A missing container is waited for, not an error.
* A blob version (name + ETag) is processed at most once per function: before running the
  function devhost creates a receipt blob, as the host does, in container
  ``azure-webjobs-hosts`` at ``blobreceipts/{hostId}/Host.Functions.{name}/"{etag}"/{container}/{blob}``
  (metadata ``Incomplete`` until done), holding a lease on it while it works. Receipts live
  in the host's storage account (``AzureWebJobsStorage``; the trigger's own account if that
  is unset), so they survive restarts. Overwriting a blob gives it a new ETag, hence a new
  run; deleting a receipt makes the version run again.
* The function gets ``func.InputStream`` (``name`` = ``container/blob``, ``uri``, ``length``,
  ``blob_properties``, ``metadata`` and the content, downloaded whole first, as the host
  does), or the content itself when the parameter is annotated ``bytes``/``str``. The Python
  worker passes no path parameters as arguments (it refuses parameters without a binding),
  so neither does devhost.
* SDK-type bindings (the parameter annotated ``BlobClient``, ``ContainerClient`` or
  ``StorageStreamDownloader`` from ``azurefunctions.extensions.bindings.blob``): nothing is
  downloaded. Like the host, devhost sends the worker side *model binding data* (source
  ``AzureStorageBlobs``, ``application/json`` content ``{"Connection", "ContainerName",
  "BlobName"}``, ``Connection`` being the binding's ``connection`` as written) and the
  extension's own converter builds the client from the app setting it names (in a worker
  thread: building a ``StorageStreamDownloader`` starts a download). The client addresses the
  blob, not a version: before each attempt devhost checks that the version of the receipt is
  still there (as the InputStream path does by downloading it with ``If-Match``); the
  function learns the ETag it works on from ``get_blob_properties()`` and should read with
  ``If-Match`` on it. If the blob is overwritten between that check and the function's read,
  the function sees the newer version, which later runs again under its own receipt: a
  handler must be idempotent per (name, ETag) it reads. A converter failure counts as a
  failed attempt, as it fails the invocation in the worker. The client is closed after the
  invocation (the worker instead caches it per blob and function).
* A failing function is retried until ``poisonBlobThreshold`` attempts (host.json
  ``extensions.blobs``, default 5; attempts are counted in the receipt, so a restart does not
  reset them); then the message ``{"Type": "BlobTrigger", "FunctionId", "BlobType",
  "ContainerName", "BlobName", "ETag"}`` goes base64-encoded onto the storage queue
  ``webjobs-blobtrigger-poison`` and the receipt is completed. Tries that fail before the
  function runs (the blob or its receipt cannot be addressed) count too, in memory, so no blob
  is retried for ever; after a restart such a blob gets its tries again.
* A container that storage cannot list whole (Azurite answers 500 when a name holds a control
  character, which it cannot write in XML; Azure encodes such names instead) is walked one
  blob at a time, and at such a name the walk steps past every name that shares its printable
  beginning (found by asking where listings start to fail: control characters sort below a
  space), so every other blob is still processed. The unlistable blob itself cannot be named,
  so it is only reported (by its printable beginning) in the log; while the container holds
  one it is walked every ``UNLISTABLE_WALK_SECONDS`` instead of every poll. With one such name
  the walk is exact; with several, a blob that sorts between two of them may be missed.
* At most ``maxDegreeOfParallelism`` blob invocations run at once across all blob functions.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any, cast

from azure.core import MatchConditions
from azure.core.async_paging import AsyncPageIterator
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.functions.blob import InputStream
from azure.storage.blob import BlobProperties
from azure.storage.blob.aio import BlobClient, BlobLeaseClient, ContainerClient

from .clients import Clients
from .invoke import InvocationFailed, Invoker
from .loader import FunctionEntry, LoadError, is_sdk_type, sdk_converter
from .servicebus import Backoff
from .settings import BlobsOptions

log = logging.getLogger("devhost.blobs")

HOSTS_CONTAINER = "azure-webjobs-hosts"
POISON_QUEUE = "webjobs-blobtrigger-poison"
MAX_BLOB_NAME = 1024
# The longest interval between listings of a container where nothing happens: about the second
# Azure's Event Grid-based trigger takes to react.
QUIET_POLL_SECONDS = 1.0
UNLISTABLE_WALK_SECONDS = 5.0  # a container storage cannot list whole is walked this often, not every poll
_LAST_CHAR = "\U0010ffff"
INCOMPLETE = "Incomplete"
ATTEMPTS = "DevhostAttempts"  # devhost's own receipt metadata: tries made so far
LEASE_SECONDS = 60
DEFAULT_STORAGE_SETTING = "AzureWebJobsStorage"
_PARAM = re.compile(r"\{([^{}]+)\}")


@dataclass(frozen=True)
class ModelBindingData:
    """The host's ``ModelBindingData`` message for a blob, field for field as the worker hands it
    to an extension converter (inside a ``Datum`` of type ``model_binding_data``)."""

    content: bytes
    version: str = "1.0"
    source: str = "AzureStorageBlobs"
    content_type: str = "application/json"


class BindingFailed(Exception):
    """The extension's converter could not build the SDK type (a failed invocation in the worker)."""


def split_path(entry: FunctionEntry) -> tuple[str, str]:
    path = str(entry.trigger.get("path") or "").strip("/")
    container, _, pattern = path.partition("/")
    if not container:
        raise LoadError(f"function {entry.name!r}: blobTrigger path {path!r} names no container")
    if "{" in container:
        raise LoadError(f"function {entry.name!r}: blobTrigger path {path!r}: the container name must be literal")
    return container, pattern


def compile_pattern(pattern: str) -> tuple[re.Pattern[str], str]:
    """(regex for blob names, literal prefix to list with) for a blob path pattern."""
    if not pattern:
        return re.compile(r".+", re.DOTALL), ""
    regex, position, names = "", 0, set()
    for match in _PARAM.finditer(pattern):
        regex += re.escape(pattern[position:match.start()])
        name = match.group(1)
        group = re.sub(r"\W", "_", name)
        if group in names:
            regex += f"(?P={group})"
        else:
            names.add(group)
            regex += f"(?P<{group}>.+?)"
        position = match.end()
    regex += re.escape(pattern[position:])
    first = _PARAM.search(pattern)
    prefix = pattern[: first.start()] if first else pattern
    return re.compile(regex, re.DOTALL), prefix


def blob_name_in(url: str, container: str) -> str | None:
    """The blob name in a blob URL of ``container``: ``/container/name`` (Azure) or
    ``/account/container/name`` (Azurite's path style); None for another container."""
    parts = urllib.parse.unquote(urllib.parse.urlsplit(url).path).lstrip("/").split("/")
    for skip in (0, 1):
        if len(parts) > skip + 1 and parts[skip] == container:
            return "/".join(parts[skip + 1:])
    return None


def quoted(etag: str) -> str:
    # Listings carry bare ETags, HEAD answers quoted ones; the host's receipts use the quoted form.
    return etag if etag.startswith('"') else f'"{etag}"'


class BlobListener:
    def __init__(self, entry: FunctionEntry, options: BlobsOptions, clients: Clients, invoker: Invoker,
                 connection_string: str, host_connection_string: str, host_id: str,
                 parallelism: asyncio.Semaphore) -> None:
        self.entry = entry
        self._options = options
        self._clients = clients
        self._invoker = invoker
        self._connection_string = connection_string
        self._host_connection_string = host_connection_string
        self._host_id = host_id
        self._parallelism = parallelism
        self.container, pattern = split_path(entry)
        self._regex, self._prefix = compile_pattern(pattern)
        self._annotation = entry.annotations.get(entry.trigger.name)
        self._sdk_converter = sdk_converter(entry.trigger.type) if is_sdk_type(self._annotation) else None
        self._finished: set[tuple[str, str]] = set()  # versions with a completed receipt
        # tries that failed before the function could run (kept here: the receipt, where tries
        # are counted otherwise, may be what cannot be addressed)
        self._failed_early: dict[tuple[str, str], int] = {}
        self._active: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._found = False  # the last listing started work on a blob version
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.running = asyncio.Event()
        self.last_error: str | None = None
        self._hosts_ready = False
        self._unlistable_until = 0.0  # loop time before which a container holding such a name is not walked again
        self._unlistable_reported: list[str] = []

    @property
    def description(self) -> str:
        return f"blobTrigger ({self.entry.trigger.get('path')})"

    @property
    def event_grid(self) -> bool:
        """``source=EventGrid``: blobs are announced by BlobCreated events, never polled for."""
        return str(self.entry.trigger.get("source") or "").lower() == "eventgrid"

    def start(self) -> None:
        if self.event_grid:
            self.running.set()  # it waits for Event Grid (devhost/eventgrid.py: BlobEventsWebhook)
            return
        self._task = asyncio.create_task(self._poll())

    async def blob_created(self, url: str) -> bool:
        """The blob of a BlobCreated event, processed as a polled one is; False when ``url`` names
        no blob this trigger watches (another container, a name outside its path)."""
        name = blob_name_in(url, self.container)
        if name is None or self._stopping.is_set() or not self._regex.fullmatch(name):
            return False
        blob = self._clients.blob_service(self._connection_string).get_blob_client(self.container, name)
        try:
            self._consider(await blob.get_blob_properties())
        except ResourceNotFoundError:
            pass  # deleted since the event: nothing to process, as in the host
        return True

    async def stop(self, timeout: float) -> None:
        self._stopping.set()
        tasks = [t for t in [self._task, *self._active.values()] if t is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def _poll(self) -> None:
        service = self._clients.blob_service(self._connection_string)
        container = service.get_container_client(self.container)
        backoff = Backoff()
        busy_interval = self._options.poll_interval
        delay = busy_interval
        while not self._stopping.is_set():
            self._found = False
            try:
                await self._scan(container)
            except ResourceNotFoundError:
                pass  # the container does not exist yet: the host waits for it too
            except Exception as exc:
                delay = backoff.next()
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("Blob trigger %s: listing %s failed: %s; retrying in %.0fs",
                            self.entry.name, self.container, self.last_error, delay)
                await self._pause(delay)
                continue
            backoff.reset()
            self.last_error = None
            self.running.set()
            if self._found or self._active:
                delay = busy_interval
            else:
                delay = min(max(busy_interval, QUIET_POLL_SECONDS), delay * 2)
            await self._pause(delay)
        if self._active:
            await asyncio.wait(set(self._active.values()))

    async def _scan(self, container: ContainerClient) -> None:
        if self._unlistable_until > asyncio.get_running_loop().time():
            return
        try:
            # No retries inside the SDK (its backoff for a 500 is minutes): the poll loop is the retry.
            async for item in container.list_blobs(name_starts_with=self._prefix or None, retry_total=0):
                self._consider(item)
        except HttpResponseError as exc:
            if exc.status_code != 500:
                raise
            await self._walk_past_unlistable(container)

    async def _walk_past_unlistable(self, container: ContainerClient) -> None:
        """Every listable blob, one at a time; past each name storage cannot list."""
        marker: str | None = None
        unlistable = []
        while not self._stopping.is_set():
            try:
                items, marker_after = await self._first_after(container, marker)
            except HttpResponseError as exc:
                if exc.status_code != 500:
                    raise
                head = await self._printable_head(container, marker)
                unlistable.append(head)
                if marker is not None and head + " " <= marker:
                    break  # cannot step past it (another unlistable name confused the search)
                marker = head + " "  # above every name that goes on with a control character
                continue
            for item in items:
                self._consider(item)
            if not items or marker_after is None:
                break
            marker = marker_after
        self._unlistable_until = asyncio.get_running_loop().time() + UNLISTABLE_WALK_SECONDS
        if unlistable != self._unlistable_reported:
            self._unlistable_reported = unlistable
            log.warning("Blob trigger %s: storage cannot list %s (a name with a control character); the other blobs "
                        "are processed, that one is not: rename or delete it", self.entry.name,
                        ", ".join(f"{self.container}/{head!r}+<control character>..." for head in unlistable))

    async def _first_after(self, container: ContainerClient, marker: str | None) -> tuple[list[Any], str | None]:
        """The first blob after ``marker`` (the listing's own order) and the marker after it."""
        listing = container.list_blobs(name_starts_with=self._prefix or None, results_per_page=1, retry_total=0)
        pages = cast(AsyncPageIterator[Any], listing.by_page(continuation_token=marker))
        page = await pages.__anext__()
        items = [item async for item in page]
        return items, pages.continuation_token

    async def _fails_after(self, container: ContainerClient, marker: str) -> bool:
        try:
            await self._first_after(container, marker)
            return False
        except HttpResponseError as exc:
            if exc.status_code != 500:
                raise
            return True

    async def _printable_head(self, container: ContainerClient, marker: str | None) -> str:
        """The beginning, up to its first control character, of the unlistable name N that
        comes first after ``marker`` (the last name listed before it). A listing that starts
        at X with ``marker <= X`` fails exactly while ``X < N`` (one more name that cannot be
        listed right after N aside), so N is read one character at a time: first how much of
        ``marker`` it shares, then each next character, the largest for which a listing from
        the head so far plus it still fails. Markers never hold control characters (storage
        echoes them in its XML)."""
        base = marker or self._prefix
        shared = 0  # N > base: it shares base[:shared], then has a larger character or base ends
        while shared < len(base) and not await self._fails_after(container, base[: shared + 1] + _LAST_CHAR):
            shared += 1
        head = base[:shared]
        lowest = ord(base[shared]) + 1 if shared < len(base) else 0x20
        while len(head) < MAX_BLOB_NAME:
            if lowest == 0x20 and not await self._fails_after(container, head + " "):
                return head  # the next character is a control character
            low, high = lowest, 0x10FFFF  # the largest code point whose marker still fails
            if low < 0x7F:  # most names are ASCII: look there first
                if await self._fails_after(container, head + "\x7f"):
                    low = 0x7F
                else:
                    high = 0x7E
            while low < high:
                middle = (low + high + 1) // 2
                probe = 0xE000 if 0xD800 <= middle <= 0xDFFF else middle  # no surrogates in a name
                if await self._fails_after(container, head + chr(probe)):
                    low = probe
                else:
                    high = middle - 1 if probe == middle else 0xD7FF
            head += chr(low)
            lowest = 0x20
        return head

    def _consider(self, item: BlobProperties) -> None:
        if self._stopping.is_set() or not self._regex.fullmatch(item.name):
            return
        key = (item.name, quoted(item.etag))
        if key in self._finished or key in self._active:
            return
        task = asyncio.create_task(self._process(item, key[1]))
        self._found = True
        self._active[key] = task
        task.add_done_callback(functools.partial(self._forget, key))

    def _forget(self, key: tuple[str, str], _task: asyncio.Task[None]) -> None:
        self._active.pop(key, None)

    def _receipt(self, blob_name: str, etag: str) -> BlobClient:
        hosts = self._clients.blob_service(self._host_connection_string).get_container_client(HOSTS_CONTAINER)
        return hosts.get_blob_client(
            f"blobreceipts/{self._host_id}/{self.entry.full_name}/{etag}/{self.container}/{blob_name}")

    async def _create_receipt(self, receipt: BlobClient) -> bool:
        """Create an incomplete receipt; False when someone else already has one."""
        for _ in range(2):
            try:
                await receipt.upload_blob(b"", overwrite=False, metadata={INCOMPLETE: INCOMPLETE, ATTEMPTS: "0"})
                return True
            except ResourceExistsError:
                return False
            except ResourceNotFoundError:
                hosts = self._clients.blob_service(self._host_connection_string).get_container_client(HOSTS_CONTAINER)
                try:
                    await hosts.create_container()
                except ResourceExistsError:
                    pass
        return False

    async def _process(self, item: BlobProperties, etag: str) -> None:
        key = (item.name, etag)
        try:
            receipt = self._receipt(item.name, etag)
            try:
                props = await receipt.get_blob_properties()
            except ResourceNotFoundError:
                props = None
            if props is not None and INCOMPLETE not in props.metadata:
                self._finished.add(key)
                return
            if props is None and not await self._create_receipt(receipt):
                return  # raced with another host; the next scan looks again
            lease = BlobLeaseClient(receipt)
            try:
                await lease.acquire(lease_duration=LEASE_SECONDS)
            except (ResourceExistsError, HttpResponseError) as exc:
                if getattr(exc, "status_code", None) in (409, 412):
                    return  # another host is working on it; its lease expires if it died
                raise
            renewing = asyncio.create_task(self._keep_lease(lease))
            try:
                await self._attempts(receipt, lease, item, etag)
            finally:
                renewing.cancel()
                try:
                    await lease.release()
                except Exception:  # the lease may have lapsed; nothing to release then
                    pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # E.g. a name storage stores otherwise than it addresses it ('a\\..\\b' is kept as
            # 'a/../b', whose URL no longer matches its signature): the host counts such tries
            # too, so the blob ends on the poison queue instead of being retried for ever.
            tries = self._failed_early.get(key, 0) + 1
            self._failed_early[key] = tries
            log.warning("Blob trigger %s: processing %s/%s failed (try %d): %s", self.entry.name,
                        self.container, item.name, tries, exc)
            if tries >= self._options.poison_blob_threshold:
                try:
                    await self._poison(item, etag)
                except Exception as poison_failed:
                    log.error("Blob trigger %s: cannot put %s/%s on the poison queue: %s", self.entry.name,
                              self.container, item.name, poison_failed)
                    return
                self._failed_early.pop(key, None)
                self._finished.add(key)

    async def _keep_lease(self, lease: BlobLeaseClient) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            try:
                await lease.renew()
            except Exception as exc:
                log.warning("Blob trigger %s: renewing a receipt lease failed: %s", self.entry.name, exc)

    async def _attempts(self, receipt: BlobClient, lease: BlobLeaseClient, item: BlobProperties, etag: str) -> None:
        key = (item.name, etag)
        props = await receipt.get_blob_properties()
        if INCOMPLETE not in props.metadata:
            self._finished.add(key)
            return
        attempts = int(props.metadata.get(ATTEMPTS, "0") or 0)
        blob = self._clients.blob_service(self._connection_string).get_blob_client(self.container, item.name)
        threshold = self._options.poison_blob_threshold
        while attempts < threshold and not self._stopping.is_set():
            attempts += 1
            await receipt.set_blob_metadata({INCOMPLETE: INCOMPLETE, ATTEMPTS: str(attempts)}, lease=lease)
            try:
                value = await self._read(blob, etag)
            except (ResourceModifiedError, ResourceNotFoundError):
                # This version is gone (overwritten or deleted); a newer one has its own receipt.
                await self._complete(receipt, lease, key)
                return
            except BindingFailed as exc:
                log.error("Blob trigger %s: binding %s/%s failed: %s", self.entry.name, self.container,
                          item.name, exc.__cause__ or exc)
                continue
            try:
                async with self._parallelism:
                    try:
                        reason = f"New blob detected(ContainerScan): {self.container}/{item.name}"
                        await self._invoker.invoke(self.entry, value, reason)
                    except InvocationFailed:
                        continue
            finally:
                if self._sdk_converter is not None:
                    await asyncio.to_thread(_close, value)
            await self._complete(receipt, lease, key)
            return
        if attempts >= threshold:
            await self._poison(item, etag)
            await self._complete(receipt, lease, key)

    async def _read(self, blob: BlobClient, etag: str) -> Any:
        if self._sdk_converter is not None:
            # Only that this version is still the blob's: the function reads the content itself.
            await blob.get_blob_properties(etag=etag, match_condition=MatchConditions.IfNotModified)
            return await asyncio.to_thread(self._sdk_value, blob.blob_name)
        downloader = await blob.download_blob(etag=etag, match_condition=MatchConditions.IfNotModified)
        content = await downloader.readall()
        if self._annotation is bytes:
            return content
        if self._annotation is str:
            return content.decode("utf-8")
        props = downloader.properties
        properties = {
            "BlobType": _blob_type(props.blob_type),
            "ContentType": props.content_settings.content_type,
            "ContentEncoding": props.content_settings.content_encoding,
            "ETag": quoted(props.etag),
            "LastModified": props.last_modified.isoformat() if props.last_modified else None,
            "Created": props.creation_time.isoformat() if props.creation_time else None,
            "Length": props.size,
        }
        return InputStream(
            data=content, name=f"{self.container}/{blob.blob_name}", uri=blob.url, length=len(content),
            blob_properties=properties, metadata=dict(props.metadata or {}),
        )

    def _sdk_value(self, blob_name: str) -> Any:
        """The SDK type, built by the extension's converter from what the host would send."""
        from azurefunctions.extensions.base import Datum

        connection = str(self.entry.trigger.get("connection") or DEFAULT_STORAGE_SETTING)
        content = json.dumps({"Connection": connection, "ContainerName": self.container, "BlobName": blob_name})
        datum = Datum(ModelBindingData(content.encode("utf-8")), "model_binding_data")
        assert self._sdk_converter is not None
        try:
            value = self._sdk_converter.decode(datum, trigger_metadata={}, pytype=self._annotation)
        except Exception as exc:
            raise BindingFailed(str(exc)) from exc
        if value is None:
            raise BindingFailed(f"the converter built no {self._annotation!r}")
        return value

    async def _complete(self, receipt: BlobClient, lease: BlobLeaseClient, key: tuple[str, str]) -> None:
        await receipt.set_blob_metadata({}, lease=lease)
        self._finished.add(key)

    async def _poison(self, item: BlobProperties, etag: str) -> None:
        message = {
            "Type": "BlobTrigger",
            "FunctionId": self.entry.full_name,
            "BlobType": _blob_type(item.blob_type),
            "ContainerName": self.container,
            "BlobName": item.name,
            "ETag": etag,
        }
        queue = self._clients.queue(self._host_connection_string, POISON_QUEUE)
        try:
            await queue.create_queue()
        except ResourceExistsError:
            pass
        await queue.send_message(json.dumps(message))
        log.error("Blob trigger %s: %s/%s failed %d times; message put on queue '%s'", self.entry.name,
                  self.container, item.name, self._options.poison_blob_threshold, POISON_QUEUE)


def _close(value: Any) -> None:
    """Close an SDK client given to a function (a downloader has nothing to close)."""
    close = getattr(value, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # the function may have closed it already
            log.debug("closing %r failed", value, exc_info=True)


def _blob_type(value: Any) -> str:
    text = str(getattr(value, "value", value) or "BlockBlob")
    return text if text.endswith("Blob") else f"{text}Blob"
