"""Blob Storage adapters of the pipeline's ports: :class:`AzureBlobStore` (every container) and
:class:`TriggerBlobClient` (the upload a blob trigger hands over). Built once per process by
:mod:`file_pipeline.bootstrap`, never at import time.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobBlock, BlobServiceClient, ContentSettings

from choreography import connections
from choreography.settings import STORAGE_CONNECTION, Connection
from file_pipeline.chunk_stream import ChunkStream
from file_pipeline.ports import (
    BlobInfo,
    BlobNotFound,
    BlobVersionGone,
)

log = logging.getLogger(__name__)


CHUNK_SIZE = 4 * 1024 * 1024  # read and write in 4 MiB pieces: memory is flat whatever the file size
COPY_TIMEOUT = 120.0


def quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


# ====================================================================== blobs
def _version_chunks(chunks: Iterator[bytes], where: str, etag: str | None) -> Iterator[bytes]:
    """The chunks of one blob version; the version vanishing mid-read becomes the port's error."""
    try:
        yield from chunks
    except ResourceNotFoundError:
        raise BlobNotFound(where) from None
    except ResourceModifiedError:
        raise BlobVersionGone(f"{where} is no longer version {etag}") from None


_END = object()


class _ReadAhead:
    """An iterator of chunks fetched one ahead by a thread of its own, so that the next range
    downloads (the storage service working on the other core) while the caller parses this one,
    instead of the two taking turns. One chunk at most is fetched ahead, so memory stays flat; an
    error of the download is raised to the caller at the chunk where it happened. :meth:`close`
    (the stream closing, read to the end or not) stops the thread."""

    def __init__(self, chunks: Iterator[bytes], name: str) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._ahead = threading.Semaphore(1)  # chunks fetched and not taken yet
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._fetch, args=(chunks,), name=f"read-ahead {name}"[:60],
                                        daemon=True)
        self._thread.start()

    def _fetch(self, chunks: Iterator[bytes]) -> None:
        try:
            while True:
                while not self._ahead.acquire(timeout=0.5):
                    if self._stop.is_set():
                        return
                if self._stop.is_set():
                    return
                chunk = next(chunks, _END)
                self._queue.put(chunk)
                if chunk is _END:
                    return
        except BaseException as exc:  # noqa: BLE001 - raised in the reading thread, where it belongs
            self._queue.put(exc)

    def __iter__(self) -> _ReadAhead:
        return self

    def __next__(self) -> bytes:
        if self._done:
            raise StopIteration
        item = self._queue.get()
        self._ahead.release()
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._done = True
            raise item
        return item  # type: ignore[no-any-return]

    def close(self) -> None:
        self._done = True
        self._stop.set()


def blob_service(connection: str | Connection) -> BlobServiceClient:
    """A client (of a connection string, or of either form of connection) that downloads and
    uploads in :data:`CHUNK_SIZE` pieces."""
    if isinstance(connection, str):
        connection = Connection(setting=STORAGE_CONNECTION, connection_string=connection)
    return connections.blob_service(connection, max_single_get_size=CHUNK_SIZE, max_chunk_get_size=CHUNK_SIZE,
                                    max_block_size=CHUNK_SIZE, max_single_put_size=CHUNK_SIZE)


class BlockUpload:
    """:class:`~file_pipeline.ports.BlobWriter` of a block blob: once :data:`CHUNK_SIZE` or more
    has been written, it is staged as a block by a thread of its own while the writer goes on,
    and :meth:`commit` commits the block list. Uncommitted blocks are invisible, so readers see the
    old blob (or none) until the commit makes the new one appear whole. Without a commit the
    staged blocks are left to the service, which drops them (at the blob's next commit, or after a
    week). One block is sent while the next is gathered, so memory stays flat."""

    def __init__(self, blob: Any, content_type: str) -> None:
        self._blob = blob
        self._content_type = content_type
        self._token = uuid.uuid4().hex[:16]  # block ids of this write only; all the same length
        self._parts: list[bytes] = []
        self._gathered = 0
        self._blocks: list[BlobBlock] = []
        self._size = 0
        self._sending: Future[Any] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="block-upload")

    def write(self, data: bytes) -> int:
        self._parts.append(data if type(data) is bytes else bytes(data))  # the caller may reuse its buffer
        self._gathered += len(data)
        if self._gathered >= CHUNK_SIZE:
            self._stage()
        return len(data)

    def _stage(self) -> None:
        block = b"".join(self._parts)
        self._parts.clear()
        self._gathered = 0
        if self._sending is not None:
            self._sending.result()  # a failed block fails the write here
        block_id = base64.b64encode(f"{self._token}-{len(self._blocks):08d}".encode()).decode()
        self._blocks.append(BlobBlock(block_id))
        self._size += len(block)
        self._sending = self._pool.submit(self._blob.stage_block, block_id, block)

    def commit(self, metadata: Mapping[str, str] | None = None) -> BlobInfo:
        if self._parts:
            self._stage()
        if self._sending is not None:
            self._sending.result()
        result = self._blob.commit_block_list(self._blocks, content_settings=ContentSettings(
            content_type=self._content_type), metadata=dict(metadata or {}))
        return BlobInfo(self._blob.container_name, self._blob.blob_name, self._size, result["etag"],
                        dict(metadata or {}))

    def close(self) -> None:
        """Stop sending (after a commit there is nothing left to send)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


class AzureBlobStore:
    def __init__(self, service: BlobServiceClient) -> None:
        self._service = service

    def ensure_containers(self, names: Sequence[str]) -> None:
        for name in names:
            try:
                self._service.create_container(name)
            except ResourceExistsError:
                pass

    def _blob(self, container: str, name: str) -> Any:
        return self._service.get_blob_client(container, name)

    def info(self, container: str, name: str) -> BlobInfo | None:
        try:
            props = self._blob(container, name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        return BlobInfo(container, name, props.size, props.etag, dict(props.metadata or {}))

    def open_read(self, container: str, name: str, etag: str | None = None) -> BinaryIO:
        conditions: dict[str, Any] = {}
        if etag:
            conditions = {"etag": quoted(etag), "match_condition": MatchConditions.IfNotModified}
        try:
            downloader = self._blob(container, name).download_blob(max_concurrency=1, **conditions)
        except ResourceNotFoundError:
            raise BlobNotFound(f"{container}/{name}") from None
        except ResourceModifiedError:
            raise BlobVersionGone(f"{container}/{name} is no longer version {etag}") from None
        where = f"{container}/{name}"
        chunks = _ReadAhead(_version_chunks(downloader.chunks(), where, etag), where)
        return io.BufferedReader(ChunkStream(chunks), CHUNK_SIZE)

    def write(self, container: str, name: str, source: BinaryIO, *, content_type: str = "application/octet-stream",
              metadata: Mapping[str, str] | None = None) -> BlobInfo:
        with self.open_write(container, name, content_type=content_type) as out:
            while chunk := source.read(CHUNK_SIZE):
                out.write(chunk)
            return out.commit(metadata)

    @contextlib.contextmanager
    def open_write(self, container: str, name: str, *,
                   content_type: str = "application/octet-stream") -> Iterator[BlockUpload]:
        upload = BlockUpload(self._blob(container, name), content_type)
        try:
            yield upload
        finally:
            upload.close()

    def copy(self, container: str, name: str, to_container: str, to_name: str, *, etag: str | None = None,
             metadata: Mapping[str, str] | None = None) -> bool:
        return self._copy(container, name, to_container, to_name, etag, metadata) is not None

    def _copy(self, container: str, name: str, to_container: str, to_name: str, etag: str | None,
              metadata: Mapping[str, str] | None) -> Any:
        """The source's properties once copied, or None when there was nothing (of ``etag``) to copy."""
        source = self._blob(container, name)
        try:
            props = source.get_blob_properties()
        except ResourceNotFoundError:
            return None
        if etag and quoted(props.etag) != quoted(etag):
            return None  # overwritten since: that newer version is not ours to copy
        target = self._blob(to_container, to_name)
        try:
            target.start_copy_from_url(source.url, metadata=dict(metadata or {}), source_etag=props.etag,
                                       source_match_condition=MatchConditions.IfNotModified)
        except (ResourceNotFoundError, ResourceModifiedError):
            return None
        except HttpResponseError as exc:
            if exc.status_code == 412:
                return None
            raise
        self._wait_for_copy(target)
        return props

    def move(self, container: str, name: str, to_container: str, to_name: str, *, etag: str | None = None,
             metadata: Mapping[str, str] | None = None) -> bool:
        props = self._copy(container, name, to_container, to_name, etag, metadata)
        if props is None:
            return False
        try:
            self._blob(container, name).delete_blob(etag=props.etag, match_condition=MatchConditions.IfNotModified)
        except (ResourceNotFoundError, ResourceModifiedError):
            pass  # gone already, or overwritten meanwhile (the new version stays)
        return True

    @staticmethod
    def _wait_for_copy(target: Any) -> None:
        deadline = time.monotonic() + COPY_TIMEOUT
        delay = 0.05
        while True:
            copy = target.get_blob_properties().copy
            status = getattr(copy, "status", None) or "success"
            if status == "success":
                return
            if status in ("failed", "aborted"):
                raise RuntimeError(f"copy to {target.container_name}/{target.blob_name} {status}: "
                                   f"{getattr(copy, 'status_description', '')}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"copy to {target.container_name}/{target.blob_name} still {status}")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def delete(self, container: str, name: str) -> bool:
        try:
            self._blob(container, name).delete_blob(delete_snapshots="include")
            return True
        except ResourceNotFoundError:
            return False

    def delete_prefix(self, container: str, prefix: str) -> int:
        return sum(1 for name in self.names(container, prefix) if self.delete(container, name))

    def names(self, container: str, prefix: str = "") -> list[str]:
        client = self._service.get_container_client(container)
        try:
            return sorted(b.name for b in client.list_blobs(name_starts_with=prefix or None))
        except ResourceNotFoundError:
            return []


class TriggerBlobClient:
    """:class:`~file_pipeline.ports.TriggerBlob` over the ``BlobClient`` a blob trigger hands over
    (SDK-type binding, ``azurefunctions.extensions.bindings.blob``). Nothing is read until asked.

    The client is built by the extension with the SDK's default transfer sizes (a first GET of
    up to 32 MiB), so the content is read here in explicit ranges of :data:`CHUNK_SIZE`, each
    conditioned on the version's ETag: memory stays flat, and an overwrite mid-read is seen at
    the next range (HTTP 412) instead of mixing two versions.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._size: int | None = None
        self._etag: str | None = None

    @property
    def where(self) -> str:
        return f"{self._client.container_name}/{self._client.blob_name}"

    def info(self) -> BlobInfo | None:
        try:
            props = self._client.get_blob_properties()
        except ResourceNotFoundError:
            return None
        self._size, self._etag = props.size, props.etag
        return BlobInfo(self._client.container_name, self._client.blob_name, props.size, props.etag,
                        dict(props.metadata or {}))

    def open_read(self, etag: str) -> BinaryIO:
        if self._size is None or quoted(self._etag or "") != quoted(etag):
            info = self.info()  # the size of exactly this version (checked against the ETag below)
            if info is None:
                raise BlobNotFound(self.where)
            if quoted(info.etag) != quoted(etag):
                raise BlobVersionGone(f"{self.where} is no longer version {etag}")
        assert self._size is not None
        chunks = _ReadAhead(_version_chunks(self._ranges(etag, self._size), self.where, etag), self.where)
        return io.BufferedReader(ChunkStream(chunks), CHUNK_SIZE)

    def _ranges(self, etag: str, size: int) -> Iterator[bytes]:
        offset = 0
        while offset < size:
            length = min(CHUNK_SIZE, size - offset)
            piece = self._client.download_blob(offset=offset, length=length, etag=quoted(etag),
                                               match_condition=MatchConditions.IfNotModified,
                                               max_concurrency=1).readall()
            if not piece:
                return
            offset += len(piece)
            yield piece
