"""In-memory fakes of the payment-file pipeline's ports, held to the same contract tests as the
Azure adapters (``tests/unit/file_pipeline/port_contracts.py``). The unit tests run the use
cases on them; the payment benchmark builds its local-disk stores on them. Not deployed
(``.funcignore``): no production code imports this package."""

from __future__ import annotations

import contextlib
import copy
import io
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import BinaryIO

from choreography.errors import ConcurrencyConflict
from choreography.messaging import Cause, OutgoingEvent
from file_pipeline.chunk_stream import ChunkStream
from file_pipeline.domain.daily import DayTotal
from file_pipeline.domain.files import DuplicateKey, PaymentFile
from file_pipeline.domain.reference import ReferenceData
from file_pipeline.ports import BlobInfo, BlobNotFound, BlobVersionGone, DailyTotalsMoved, DuplicateClaimed


# ---------------------------------------------------------------------------------------------- blobs
@dataclass
class _Blob:
    data: bytes
    etag: str
    metadata: dict[str, str]
    content_type: str = "application/octet-stream"


class _Writer:
    """:meth:`FakeBlobStore.open_write`'s writer: nothing is stored until :meth:`commit`."""

    def __init__(self, store: FakeBlobStore, container: str, name: str, content_type: str) -> None:
        self._store, self._container, self._name, self._content_type = store, container, name, content_type
        self._data = io.BytesIO()

    def write(self, data: bytes) -> int:
        return self._data.write(data)

    def commit(self, metadata: Mapping[str, str] | None = None) -> BlobInfo:
        self._data.seek(0)
        return self._store.write(self._container, self._name, self._data, content_type=self._content_type,
                                 metadata=metadata)


class FakeBlobStore:
    """Dict of (container, name) -> blob. ``fail_write`` and ``fail_move`` may raise for a
    (container, name) to inject a storage failure; ``touched`` records every name addressed
    (unsafe names must never appear)."""

    def __init__(self) -> None:
        self.blobs: dict[tuple[str, str], _Blob] = {}
        self._counter = 0
        self._lock = threading.RLock()  # move() copies under the same lock
        self.fail_write: Callable[[str, str], Exception | None] = lambda c, n: None
        self.fail_move: Callable[[str, str], Exception | None] = lambda c, n: None
        self.writes: list[tuple[str, str]] = []
        self.opened: list[tuple[str, str]] = []
        self.touched: list[str] = []

    def _etag(self) -> str:
        self._counter += 1
        return f'"0x{self._counter:015X}"'

    def put(self, container: str, name: str, data: bytes, metadata: Mapping[str, str] | None = None) -> str:
        """What a client upload does (test helper)."""
        with self._lock:
            etag = self._etag()
            self.blobs[(container, name)] = _Blob(data, etag, dict(metadata or {}))
            return etag

    def data(self, container: str, name: str) -> bytes:
        return self.blobs[(container, name)].data

    def info(self, container: str, name: str) -> BlobInfo | None:
        self.touched.append(name)
        blob = self.blobs.get((container, name))
        return BlobInfo(container, name, len(blob.data), blob.etag, dict(blob.metadata)) if blob else None

    def open_read(self, container: str, name: str, etag: str | None = None) -> BinaryIO:
        self.touched.append(name)
        blob = self.blobs.get((container, name))
        if blob is None:
            raise BlobNotFound(f"{container}/{name}")
        if etag and blob.etag.strip('"') != etag.strip('"'):
            raise BlobVersionGone(f"{container}/{name}")
        self.opened.append((container, name))
        return io.BytesIO(blob.data)

    def write(self, container: str, name: str, source: BinaryIO, *, content_type: str = "application/octet-stream",
              metadata: Mapping[str, str] | None = None) -> BlobInfo:
        self.touched.append(name)
        data = source.read()  # all of it first: nothing is visible until it is complete
        failure = self.fail_write(container, name)
        if failure is not None:
            raise failure
        with self._lock:
            etag = self._etag()
            self.blobs[(container, name)] = _Blob(data, etag, dict(metadata or {}), content_type)
            self.writes.append((container, name))
        return BlobInfo(container, name, len(data), etag, dict(metadata or {}))

    @contextlib.contextmanager
    def open_write(self, container: str, name: str, *,
                   content_type: str = "application/octet-stream") -> Iterator[_Writer]:
        yield _Writer(self, container, name, content_type)

    def copy(self, container: str, name: str, to_container: str, to_name: str, *, etag: str | None = None,
             metadata: Mapping[str, str] | None = None) -> bool:
        self.touched.extend([name, to_name])
        with self._lock:
            blob = self.blobs.get((container, name))
            if blob is None or (etag and blob.etag.strip('"') != etag.strip('"')):
                return False
            self.blobs[(to_container, to_name)] = _Blob(blob.data, self._etag(), dict(metadata or {}),
                                                        blob.content_type)
            return True

    def move(self, container: str, name: str, to_container: str, to_name: str, *, etag: str | None = None,
             metadata: Mapping[str, str] | None = None) -> bool:
        failure = self.fail_move(container, name)
        if failure is not None:
            raise failure
        with self._lock:
            if not self.copy(container, name, to_container, to_name, etag=etag, metadata=metadata):
                return False
            del self.blobs[(container, name)]
            return True

    def delete(self, container: str, name: str) -> bool:
        self.touched.append(name)
        with self._lock:
            return self.blobs.pop((container, name), None) is not None

    def delete_prefix(self, container: str, prefix: str) -> int:
        return sum(1 for name in self.names(container, prefix) if self.delete(container, name))

    def names(self, container: str, prefix: str = "") -> list[str]:
        return sorted(n for c, n in list(self.blobs) if c == container and n.startswith(prefix))


class FakeTriggerBlob:
    """The trigger's view of one blob of a :class:`FakeBlobStore` (an SDK-type binding's client):
    reads ``chunk`` bytes at a time, each checked against the version's ETag as the real
    adapter's ranged reads are; ``after_chunk`` (if set) runs after each chunk is read."""

    def __init__(self, store: FakeBlobStore, container: str, name: str, chunk: int = 1 << 20,
                 after_chunk: Callable[[int], None] | None = None) -> None:
        self._store, self._container, self._name = store, container, name
        self._chunk = chunk
        self.after_chunk = after_chunk

    def info(self) -> BlobInfo | None:
        return self._store.info(self._container, self._name)

    def _current(self, etag: str) -> bytes:
        blob = self._store.blobs.get((self._container, self._name))
        if blob is None:
            raise BlobNotFound(f"{self._container}/{self._name}")
        if blob.etag.strip('"') != etag.strip('"'):
            raise BlobVersionGone(f"{self._container}/{self._name}")
        return blob.data

    def open_read(self, etag: str) -> BinaryIO:
        self._store.touched.append(self._name)
        self._current(etag)

        def chunks() -> Iterator[bytes]:
            offset, index = 0, 0
            while piece := self._current(etag)[offset:offset + self._chunk]:
                offset += len(piece)
                yield piece
                if self.after_chunk is not None:
                    self.after_chunk(index)
                index += 1

        return io.BufferedReader(ChunkStream(chunks()), self._chunk)


# ---------------------------------------------------------------------------------------------- records
class FakeFileRecords:
    def __init__(self) -> None:
        self.files: dict[tuple[str, str], PaymentFile] = {}
        self.pointers: dict[tuple[str, str], tuple[str, list[str]]] = {}
        self.claims: dict[tuple[str, str], tuple[str, str]] = {}
        self.days: dict[tuple[str, str, date], DayTotal] = {}  # (client, currency, day) -> total
        self._counter = 0
        self._lock = threading.RLock()
        self.before_save: Callable[[PaymentFile], None] = lambda record: None

    def _version(self) -> str:
        self._counter += 1
        return f"v{self._counter}"

    def get(self, client_id: str, file_id: str) -> PaymentFile | None:
        with self._lock:
            record = self.files.get((client_id, file_id))
            return copy.deepcopy(record) if record else None

    def find(self, file_id: str) -> PaymentFile | None:
        with self._lock:
            for (_, fid), record in self.files.items():
                if fid == file_id:
                    return copy.deepcopy(record)
        return None

    def latest(self, client_id: str, file_name: str) -> tuple[PaymentFile | None, list[str]]:
        with self._lock:
            pointer = self.pointers.get((client_id, file_name))
            if pointer is None:
                return None, []
            return self.get(client_id, pointer[0]), list(pointer[1])

    def add(self, record: PaymentFile) -> None:
        with self._lock:
            if (record.client_id, record.file_id) in self.files:
                raise ConcurrencyConflict(record.file_id)
            record.version = self._version()
            self.files[(record.client_id, record.file_id)] = copy.deepcopy(record)
            old = self.pointers.get((record.client_id, record.file_name))
            previous = [] if old is None else ([old[0], *old[1]] if old[0] != record.file_id else old[1])
            self.pointers[(record.client_id, record.file_name)] = (record.file_id, previous[:20])

    def save(self, record: PaymentFile, *, claim: Sequence[DuplicateKey] = (), release: Sequence[str] = (),
             totals: Sequence[DayTotal] = ()) -> None:
        self.before_save(record)
        with self._lock:
            stored = self.files.get((record.client_id, record.file_id))
            if stored is None or stored.version != record.version:
                raise ConcurrencyConflict(record.file_id)
            for key in claim:
                held = self.claims.get((record.client_id, key.key))
                if held is not None:
                    raise DuplicateClaimed(key.key, held[0])
            for total in totals:
                current = self.days.get((record.client_id, total.currency, total.day))
                if (current.version if current else None) != total.version:
                    raise DailyTotalsMoved(f"{total.currency} {total.day}")
            for total in totals:
                self.set_day_total(record.client_id, total)
            for key in claim:
                self.claims[(record.client_id, key.key)] = (record.file_id, record.file_name)
            for released in release:
                if self.claims.get((record.client_id, released), ("", ""))[0] == record.file_id:
                    del self.claims[(record.client_id, released)]
            record.version = self._version()
            self.files[(record.client_id, record.file_id)] = copy.deepcopy(record)

    def claim_owners(self, client_id: str, keys: Sequence[DuplicateKey]) -> dict[str, tuple[str, str]]:
        with self._lock:
            return {k.key: self.claims[(client_id, k.key)] for k in keys if (client_id, k.key) in self.claims}

    def day_totals(self, client_id: str, currencies: Sequence[str], since: date) -> list[DayTotal]:
        with self._lock:
            return [total for (client, currency, day), total in sorted(self.days.items())
                    if client == client_id and currency in currencies and day >= since]

    def set_day_total(self, client_id: str, total: DayTotal) -> DayTotal:
        """Store a day total under a new version, whatever was there (also what a test does to
        play another file of the client accepted meanwhile)."""
        with self._lock:
            stored = replace(total, version=self._version())
            self.days[(client_id, total.currency, total.day)] = stored
            return stored

    def day_amounts(self, client_id: str) -> dict[str, str]:
        """``{"EUR-2026-11-23": "1250.00"}``: the client's stored totals, for assertions."""
        with self._lock:
            return {f"{c}-{d.isoformat()}": format(t.amount, "f")
                    for (client, c, d), t in sorted(self.days.items()) if client == client_id}


class FakeReferenceSource:
    def __init__(self, data: ReferenceData | None = None) -> None:
        self.data = data or ReferenceData.seed()
        self.loads = 0

    def load(self) -> ReferenceData:
        self.loads += 1
        return self.data


# ---------------------------------------------------------------------------------------------- events
class RecordingEvents:
    def __init__(self) -> None:
        self.published: list[OutgoingEvent] = []
        self.fail: Exception | None = None

    def publish(self, events: Sequence[OutgoingEvent], cause: Cause) -> None:
        if self.fail is not None:
            raise self.fail
        self.published.extend(events)

    def of(self, file_id: str) -> list[OutgoingEvent]:
        return [e for e in self.published if e.data.get("fileId") == file_id]
