"""The pipeline's ports on the local disk, for the stages measured alone: each stage is a
process of its own and reads what the previous one left."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from .common import payment_clock


class LocalBlobStore:
    """:class:`file_pipeline.ports.BlobStore` on a directory: ``root/container/name``, metadata
    beside it in ``root/.meta``. Writes go to a temporary file renamed into place (all or
    nothing, like a block-blob commit); reads stream from the file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, container: str, name: str) -> Path:
        return self.root / container / name

    def _meta_path(self, container: str, name: str) -> Path:
        return self.root / ".meta" / container / (name + ".json")

    def _meta(self, container: str, name: str) -> dict[str, Any]:
        try:
            return json.loads(self._meta_path(container, name).read_text())
        except FileNotFoundError:
            return {}

    @staticmethod
    def _etag(path: Path) -> str:
        st = path.stat()
        return f'"0x{st.st_mtime_ns:X}{st.st_ino:X}"'

    def put_file(self, container: str, name: str, source: Path) -> str:
        """What a client upload does: the file is hard-linked in (no copy); its ETag."""
        target = self._path(container, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        return self._etag(target)

    def info(self, container: str, name: str) -> Any:
        from file_pipeline.ports import BlobInfo

        path = self._path(container, name)
        if not path.is_file():
            return None
        return BlobInfo(container, name, path.stat().st_size, self._etag(path),
                        dict(self._meta(container, name).get("metadata", {})))

    def open_read(self, container: str, name: str, etag: str | None = None) -> BinaryIO:
        from file_pipeline.ports import BlobNotFound, BlobVersionGone

        path = self._path(container, name)
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            raise BlobNotFound(f"{container}/{name}") from None
        if etag and self._etag(path).strip('"') != etag.strip('"'):
            fh.close()
            raise BlobVersionGone(f"{container}/{name}")
        return fh

    def write(self, container: str, name: str, source: BinaryIO, *, content_type: str = "application/octet-stream",
              metadata: Mapping[str, str] | None = None) -> Any:
        with self.open_write(container, name, content_type=content_type) as out:
            shutil.copyfileobj(source, out, 1 << 20)
            return out.commit(metadata)

    @contextlib.contextmanager
    def open_write(self, container: str, name: str, *, content_type: str = "application/octet-stream") -> Any:
        from file_pipeline.ports import BlobInfo

        path = self._path(container, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        store = self

        class Writer:
            def __init__(self, out: BinaryIO) -> None:
                self.write = out.write
                self._out = out

            def commit(self, metadata: Mapping[str, str] | None = None) -> Any:
                self._out.close()
                os.replace(tmp, path)
                meta = store._meta_path(container, name)
                meta.parent.mkdir(parents=True, exist_ok=True)
                meta.write_text(json.dumps({"metadata": dict(metadata or {}), "contentType": content_type}))
                return BlobInfo(container, name, path.stat().st_size, store._etag(path), dict(metadata or {}))

        with tmp.open("wb") as out:
            try:
                yield Writer(out)
            finally:
                tmp.unlink(missing_ok=True)

    def move(self, container: str, name: str, to_container: str, to_name: str, *, etag: str | None = None,
             metadata: Mapping[str, str] | None = None) -> bool:
        path = self._path(container, name)
        if not path.is_file() or (etag and self._etag(path).strip('"') != etag.strip('"')):
            return False
        target = self._path(to_container, to_name)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        meta = self._meta_path(to_container, to_name)
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"metadata": dict(metadata or {})}))
        return True

    def delete(self, container: str, name: str) -> bool:
        try:
            self._path(container, name).unlink()
        except FileNotFoundError:
            return False
        with contextlib.suppress(FileNotFoundError):
            self._meta_path(container, name).unlink()
        return True

    def delete_prefix(self, container: str, prefix: str) -> int:
        return sum(1 for name in self.names(container, prefix) if self.delete(container, name))

    def names(self, container: str, prefix: str = "") -> list[str]:
        base = self.root / container
        if not base.is_dir():
            return []
        found = (p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())
        return sorted(n for n in found if n.startswith(prefix) and not n.endswith(".partial"))


class DiskFileRecords:
    """:class:`file_pipeline.ports.FileRecords` in a pickle file, so each stage (a process of its
    own) sees the record the previous one saved; the semantics of the test suite's fake."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: dict[tuple[str, str], Any] = {}
        self.pointers: dict[tuple[str, str], tuple[str, list[str]]] = {}
        self.claims: dict[tuple[str, str], tuple[str, str]] = {}
        self.days: dict[tuple[str, str, Any], Any] = {}  # (client, currency, day) -> DayTotal
        self.counter = 0
        if path.exists():
            self.files, self.pointers, self.claims, self.days, self.counter = pickle.loads(path.read_bytes())

    def _flush(self) -> None:
        self.path.write_bytes(pickle.dumps((self.files, self.pointers, self.claims, self.days, self.counter)))

    def _version(self) -> str:
        self.counter += 1
        return f"v{self.counter}"

    def get(self, client_id: str, file_id: str) -> Any:
        record = self.files.get((client_id, file_id))
        return pickle.loads(pickle.dumps(record)) if record is not None else None

    def find(self, file_id: str) -> Any:
        return next((self.get(c, f) for c, f in self.files if f == file_id), None)

    def latest(self, client_id: str, file_name: str) -> tuple[Any, list[str]]:
        pointer = self.pointers.get((client_id, file_name))
        return (None, []) if pointer is None else (self.get(client_id, pointer[0]), list(pointer[1]))

    def add(self, record: Any) -> None:
        from choreography.errors import ConcurrencyConflict

        if (record.client_id, record.file_id) in self.files:
            raise ConcurrencyConflict(record.file_id)
        record.version = self._version()
        self.files[(record.client_id, record.file_id)] = pickle.loads(pickle.dumps(record))
        self.pointers[(record.client_id, record.file_name)] = (record.file_id, [])
        self._flush()

    def save(self, record: Any, *, claim: Sequence[Any] = (), release: Sequence[str] = (),
             totals: Sequence[Any] = ()) -> None:
        from dataclasses import replace

        from choreography.errors import ConcurrencyConflict
        from file_pipeline.ports import DailyTotalsMoved, DuplicateClaimed

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
            self.days[(record.client_id, total.currency, total.day)] = replace(total, version=self._version())
        for key in claim:
            self.claims[(record.client_id, key.key)] = (record.file_id, record.file_name)
        for key in release:
            if self.claims.get((record.client_id, key), ("",))[0] == record.file_id:
                del self.claims[(record.client_id, key)]
        record.version = self._version()
        self.files[(record.client_id, record.file_id)] = pickle.loads(pickle.dumps(record))
        self._flush()

    def claim_owners(self, client_id: str, keys: Sequence[Any]) -> dict[str, tuple[str, str]]:
        return {k.key: self.claims[(client_id, k.key)] for k in keys if (client_id, k.key) in self.claims}

    def day_totals(self, client_id: str, currencies: Sequence[str], since: Any) -> list[Any]:
        return [total for (client, currency, day), total in sorted(self.days.items())
                if client == client_id and currency in currencies and day >= since]


class SeedReference:
    """The reference data ``make seed`` puts in the table, straight from the shipped JSON."""

    def load(self) -> Any:
        from file_pipeline.domain.reference import ReferenceData

        return ReferenceData.seed()


class QueueFiles:
    """:class:`choreography.messaging.Publisher` writing each hand-off, stamped as the Service Bus
    publisher stamps it, to ``folder/{queue}.jsonl``; :meth:`take` gives the next stage the
    :class:`~choreography.messaging.Incoming` its trigger would get."""

    def __init__(self, folder: Path, clock: Any) -> None:
        self.folder = folder
        self.clock = clock
        self.dead_letters: list[Any] = []

    def send(self, messages: Sequence[Any], cause: Any) -> list[Any]:
        from choreography.messaging import stamp

        envelopes = []
        for message in messages:
            envelope = stamp(message, cause, self.clock.now())
            envelopes.append(envelope)
            line = {"body": envelope.to_json(), "messageId": message.message_id, "subject": envelope.type,
                    "correlationId": envelope.correlation_id, "properties": envelope.properties()}
            with (self.folder / f"{message.destination.name}.jsonl").open("a") as fh:
                fh.write(json.dumps(line, default=str) + "\n")
        return envelopes

    def dead_letter(self, letter: Any) -> None:
        self.dead_letters.append(letter)

    def take(self, queue: str) -> Any:
        from choreography.messaging import Incoming

        path = self.folder / f"{queue}.jsonl"
        if not path.exists():
            raise RuntimeError(f"the previous stage sent nothing to {queue}")
        line = json.loads(path.read_text().splitlines()[-1])
        return Incoming(body=line["body"].encode(), message_id=line["messageId"], source=queue,
                        subject=line["subject"], correlation_id=line["correlationId"],
                        content_type="application/json", application_properties=line["properties"])


class NoEvents:
    def __init__(self) -> None:
        self.published: list[Any] = []

    def publish(self, events: Sequence[Any], cause: Any) -> None:
        self.published.extend(events)


def local_pipeline(work: Path) -> tuple[Any, LocalBlobStore, DiskFileRecords, QueueFiles]:
    """The pipeline on local-disk ports, wired as :func:`file_pipeline.bootstrap.build` wires it
    on Azure: system clock for records, ``PAYMENT_CLOCK`` for the rules."""
    from choreography.clock import FixedClock, SystemClock
    from choreography.settings import DEFAULT_MAX_BYTES
    from file_pipeline.service import Options, PaymentFilePipeline

    (work / "queues").mkdir(parents=True, exist_ok=True)
    blobs = LocalBlobStore(work / "store")
    records = DiskFileRecords(work / "records.pickle")
    clock = SystemClock()
    publisher = QueueFiles(work / "queues", clock)
    moment = datetime.fromisoformat(payment_clock().replace("Z", "+00:00"))
    pipeline = PaymentFilePipeline(blobs=blobs, records=records, reference=SeedReference(), publisher=publisher,
                                   events=NoEvents(), clock=clock, rules_clock=FixedClock(moment),
                                   options=Options(DEFAULT_MAX_BYTES, str(work / "spool")))
    (work / "spool").mkdir(exist_ok=True)
    return pipeline, blobs, records, publisher
