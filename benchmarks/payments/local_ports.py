"""The pipeline's ports for the stages measured alone, each stage a process of its own that reads
what the previous one left: blobs in a directory, file records in a pickle file, the Service Bus
hand-offs in JSON-lines files. The blob store and the file records are held to the same port
contract tests as the Azure adapters (``tests/unit/file_pipeline/test_fakes_meet_the_port_contracts.py``);
the file records are the unit tests' fake (:mod:`fakes.file_pipeline`), kept on disk between
processes. Imported by the measuring processes only, so the orchestrating one never loads the app."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from choreography.clock import FixedClock, SystemClock
from choreography.messaging import Incoming, stamp
from choreography.settings import DEFAULT_MAX_BYTES
from fakes.file_pipeline import FakeFileRecords, FakeReferenceSource, RecordingEvents
from file_pipeline.domain.daily import DayTotal
from file_pipeline.domain.files import DuplicateKey, PaymentFile
from file_pipeline.ports import BlobInfo, BlobNotFound, BlobVersionGone
from file_pipeline.service import Options, PaymentFilePipeline

from .common import payment_clock


class LocalBlobStore:
    """:class:`file_pipeline.ports.BlobStore` on a directory: ``root/container/name``; its ETag,
    metadata and content type beside it in ``root/.meta``. Writes go to a temporary file renamed
    into place (all or nothing, like a block-blob commit); reads stream from the file. Every
    version gets a new ETag (a file's mtime and inode may repeat within a clock tick)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, container: str, name: str) -> Path:
        return self.root / container / name

    def _meta_path(self, container: str, name: str) -> Path:
        return self.root / ".meta" / container / (name + ".json")

    def _meta(self, container: str, name: str) -> dict[str, Any]:
        try:
            meta: dict[str, Any] = json.loads(self._meta_path(container, name).read_text())
        except FileNotFoundError:
            return {}
        return meta

    def _new_version(self, container: str, name: str, metadata: Mapping[str, str] | None,
                     content_type: str) -> BlobInfo:
        """Record a new version of a blob whose content was just put in place."""
        etag = f'"0x{uuid.uuid4().hex[:16].upper()}"'
        meta = self._meta_path(container, name)
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"etag": etag, "metadata": dict(metadata or {}), "contentType": content_type}))
        return BlobInfo(container, name, self._path(container, name).stat().st_size, etag, dict(metadata or {}))

    def _is_version(self, container: str, name: str, etag: str | None) -> bool:
        return not etag or str(self._meta(container, name).get("etag", "")).strip('"') == etag.strip('"')

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
        return self._new_version(container, name, None, "application/octet-stream").etag

    def info(self, container: str, name: str) -> BlobInfo | None:
        path = self._path(container, name)
        if not path.is_file():
            return None
        meta = self._meta(container, name)
        return BlobInfo(container, name, path.stat().st_size, str(meta.get("etag", "")),
                        dict(meta.get("metadata", {})))

    def open_read(self, container: str, name: str, etag: str | None = None) -> BinaryIO:
        try:
            fh = self._path(container, name).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(f"{container}/{name}") from None
        if not self._is_version(container, name, etag):
            fh.close()
            raise BlobVersionGone(f"{container}/{name}")
        return fh

    def write(self, container: str, name: str, source: BinaryIO, *, content_type: str = "application/octet-stream",
              metadata: Mapping[str, str] | None = None) -> BlobInfo:
        with self.open_write(container, name, content_type=content_type) as out:
            shutil.copyfileobj(source, out, 1 << 20)
            return out.commit(metadata)

    @contextlib.contextmanager
    def open_write(self, container: str, name: str, *,
                   content_type: str = "application/octet-stream") -> Iterator[_LocalWriter]:
        path = self._path(container, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.partial")
        with tmp.open("wb") as out:
            try:
                yield _LocalWriter(self, out, tmp, container, name, content_type)
            finally:
                tmp.unlink(missing_ok=True)

    def copy(self, container: str, name: str, to_container: str, to_name: str, *, etag: str | None = None,
             metadata: Mapping[str, str] | None = None) -> bool:
        path = self._path(container, name)
        if not path.is_file() or not self._is_version(container, name, etag):
            return False
        with path.open("rb") as source:
            self.write(to_container, to_name, source, metadata=metadata,
                       content_type=str(self._meta(container, name).get("contentType", "application/octet-stream")))
        return True

    def move(self, container: str, name: str, to_container: str, to_name: str, *, etag: str | None = None,
             metadata: Mapping[str, str] | None = None) -> bool:
        path = self._path(container, name)
        if not path.is_file() or not self._is_version(container, name, etag):
            return False
        content_type = str(self._meta(container, name).get("contentType", "application/octet-stream"))
        target = self._path(to_container, to_name)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        with contextlib.suppress(FileNotFoundError):
            self._meta_path(container, name).unlink()
        self._new_version(to_container, to_name, metadata, content_type)
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


class _LocalWriter:
    """:meth:`LocalBlobStore.open_write`'s writer: the temporary file becomes the blob at commit."""

    def __init__(self, store: LocalBlobStore, out: BinaryIO, tmp: Path, container: str, name: str,
                 content_type: str) -> None:
        self.write = out.write
        self._store, self._out, self._tmp = store, out, tmp
        self._container, self._name, self._content_type = container, name, content_type

    def commit(self, metadata: Mapping[str, str] | None = None) -> BlobInfo:
        self._out.close()
        os.replace(self._tmp, self._store._path(self._container, self._name))
        return self._store._new_version(self._container, self._name, metadata, self._content_type)


class DiskFileRecords(FakeFileRecords):
    """The unit tests' file records, kept in a pickle file: loaded when made, written after every
    change, so each stage (a process of its own) sees the records the previous one saved."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        if path.exists():
            self.files, self.pointers, self.claims, self.days, self._counter = pickle.loads(path.read_bytes())

    def _flush(self) -> None:
        self.path.write_bytes(pickle.dumps((self.files, self.pointers, self.claims, self.days, self._counter)))

    def add(self, record: PaymentFile) -> None:
        super().add(record)
        self._flush()

    def save(self, record: PaymentFile, *, claim: Sequence[DuplicateKey] = (), release: Sequence[str] = (),
             totals: Sequence[DayTotal] = ()) -> None:
        super().save(record, claim=claim, release=release, totals=totals)
        self._flush()


class QueueFiles:
    """:class:`choreography.messaging.Publisher` writing each hand-off, stamped as the Service Bus
    publisher stamps it, to ``folder/{queue}.jsonl``; :meth:`take` gives the next stage the
    :class:`~choreography.messaging.Incoming` its trigger would get."""

    def __init__(self, folder: Path, clock: Any) -> None:
        self.folder = folder
        self.clock = clock
        self.dead_letters: list[Any] = []

    def send(self, messages: Sequence[Any], cause: Any) -> list[Any]:
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
        path = self.folder / f"{queue}.jsonl"
        if not path.exists():
            raise RuntimeError(f"the previous stage sent nothing to {queue}")
        line = json.loads(path.read_text().splitlines()[-1])
        return Incoming(body=line["body"].encode(), message_id=line["messageId"], source=queue,
                        subject=line["subject"], correlation_id=line["correlationId"],
                        content_type="application/json", application_properties=line["properties"])


def local_pipeline(work: Path) -> tuple[PaymentFilePipeline, LocalBlobStore, DiskFileRecords, QueueFiles]:
    """The pipeline on local-disk ports, wired as :func:`file_pipeline.bootstrap.build` wires it
    on Azure: system clock for records, ``PAYMENT_CLOCK`` for the rules."""
    (work / "queues").mkdir(parents=True, exist_ok=True)
    blobs = LocalBlobStore(work / "store")
    records = DiskFileRecords(work / "records.pickle")
    clock = SystemClock()
    publisher = QueueFiles(work / "queues", clock)
    moment = datetime.fromisoformat(payment_clock().replace("Z", "+00:00"))
    pipeline = PaymentFilePipeline(blobs=blobs, records=records, reference=FakeReferenceSource(), publisher=publisher,
                                   events=RecordingEvents(), clock=clock, rules_clock=FixedClock(moment),
                                   options=Options(DEFAULT_MAX_BYTES, str(work / "spool")))
    (work / "spool").mkdir(exist_ok=True)
    return pipeline, blobs, records, publisher
