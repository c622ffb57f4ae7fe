"""The pipeline's ports: what the use cases need from storage. One adapter per backend
(:mod:`file_pipeline.blob_adapters` and :mod:`file_pipeline.table_adapters` for Azure Storage,
in-memory fakes in ``fakes/file_pipeline.py``, the payment benchmark's local-disk stores), each
held to the same contract tests (``tests/unit/file_pipeline/port_contracts.py``).

Messaging and events use the shared ports :class:`choreography.messaging.Publisher` and
:class:`choreography.messaging.EventPublisher`; time is :class:`choreography.clock.Clock`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date
from typing import BinaryIO, Protocol

from choreography.errors import ConcurrencyConflict
from file_pipeline.domain.daily import DayTotal
from file_pipeline.domain.files import DuplicateKey, PaymentFile
from file_pipeline.domain.reference import ReferenceData


class BlobNotFound(Exception):
    """The blob does not exist."""


class BlobVersionGone(Exception):
    """The blob exists but is not the version asked for (it was overwritten)."""


class DailyTotalsMoved(ConcurrencyConflict):
    """A day total changed since it was read (or was created meanwhile): another file of the
    client was accepted or released in between."""


class DuplicateClaimed(Exception):
    """A duplicate-file key is already held by another file."""

    def __init__(self, key: str, owner_file_id: str) -> None:
        super().__init__(f"duplicate key {key} is held by {owner_file_id}")
        self.key = key
        self.owner_file_id = owner_file_id


@dataclass(frozen=True)
class BlobInfo:
    container: str
    name: str
    size: int
    etag: str
    metadata: Mapping[str, str] = field(default_factory=dict)


class BlobWriter(Protocol):
    """What :meth:`BlobStore.open_write` hands out: written to, then committed (or not)."""

    def write(self, data: bytes) -> int:
        ...

    def commit(self, metadata: Mapping[str, str] | None = None) -> BlobInfo:
        """Make what was written the blob, whole, with ``metadata``."""
        ...


class BlobStore(Protocol):
    def info(self, container: str, name: str) -> BlobInfo | None:
        """Size, ETag and metadata of a blob, or None."""
        ...

    def open_read(self, container: str, name: str, etag: str | None = None) -> BinaryIO:
        """A stream over the blob, read in chunks (never whole into memory). With ``etag``,
        only that version: :class:`BlobVersionGone` if it changed, :class:`BlobNotFound` if absent."""
        ...

    def write(self, container: str, name: str, source: BinaryIO, *, content_type: str = "application/octet-stream",
              metadata: Mapping[str, str] | None = None) -> BlobInfo:
        """Store ``source`` (read to its end) at ``name``, replacing what is there. All or nothing:
        a reader sees the previous blob (or none) until the new one is complete."""
        ...

    def open_write(self, container: str, name: str, *,
                   content_type: str = "application/octet-stream") -> AbstractContextManager[BlobWriter]:
        """A writer for ``name``: the content may be sent while it is written (sending overlaps
        producing) but becomes the blob only at :meth:`BlobWriter.commit`, all or nothing, as
        :meth:`write`. Leaving the context without a commit leaves the blob as it was."""
        ...

    def copy(self, container: str, name: str, to_container: str, to_name: str, *, etag: str | None = None,
             metadata: Mapping[str, str] | None = None) -> bool:
        """Copy the blob (only version ``etag`` if given) to the destination, server-side; the
        source stays. True if the destination now holds it; False if there was nothing to copy
        (deleted or overwritten). Safe to repeat."""
        ...

    def move(self, container: str, name: str, to_container: str, to_name: str, *, etag: str | None = None,
             metadata: Mapping[str, str] | None = None) -> bool:
        """Copy the blob (only version ``etag`` if given) to the destination, then delete the
        source (only that version). True if it moved now; False if there was nothing to move
        (already moved, deleted or overwritten). Safe to repeat."""
        ...

    def delete(self, container: str, name: str) -> bool:
        """Delete if present; True if something was deleted."""
        ...

    def delete_prefix(self, container: str, prefix: str) -> int:
        """Delete every blob whose name starts with ``prefix``; returns how many."""
        ...

    def names(self, container: str, prefix: str = "") -> list[str]:
        """Blob names under ``prefix``, sorted."""
        ...


class TriggerBlob(Protocol):
    """The blob a trigger fired for, through the client the trigger handed over (an SDK-type
    binding: the host downloads nothing). It addresses the blob, not a version: the use case
    reads the version once and then reads only that one."""

    def info(self) -> BlobInfo | None:
        """Size, ETag and metadata of the blob as it is now, or None if it is gone."""
        ...

    def open_read(self, etag: str) -> BinaryIO:
        """A stream over version ``etag``, read in chunks (never whole into memory).
        :class:`BlobVersionGone` / :class:`BlobNotFound` when opening *or while reading* if the
        blob was overwritten / deleted meanwhile."""
        ...


class FileRecords(Protocol):
    """Table ``paymentfiles``: one partition per client holding the file records, a pointer per
    file name to its latest file, the duplicate-file claims and the running totals of the
    client's daily limits (so every change to one client's files is a single atomic batch)."""

    def get(self, client_id: str, file_id: str) -> PaymentFile | None:
        ...

    def find(self, file_id: str) -> PaymentFile | None:
        """The record of ``file_id`` in whichever partition (slow path: the client is unknown)."""
        ...

    def latest(self, client_id: str, file_name: str) -> tuple[PaymentFile | None, list[str]]:
        """The newest file submitted under ``file_name`` and the ids of earlier ones."""
        ...

    def add(self, record: PaymentFile) -> None:
        """Store a new record and point its file name at it. ConcurrencyConflict if it exists.
        Sets ``record.version``."""
        ...

    def save(self, record: PaymentFile, *, claim: Sequence[DuplicateKey] = (), release: Sequence[str] = (),
             totals: Sequence[DayTotal] = ()) -> None:
        """In one atomic write: replace the record if unchanged since read (else
        ConcurrencyConflict), create the ``claim`` keys for it (DuplicateClaimed if another file
        holds one), delete the ``release`` keys it holds, and store each of ``totals`` (at most
        :data:`~file_pipeline.domain.daily.MAX_DAYS_PER_FILE`) if that day total is still at
        the ``version`` read, or still absent when ``version`` is None (else DailyTotalsMoved).
        Nothing is written unless all of it is. Sets ``record.version``."""
        ...

    def day_totals(self, client_id: str, currencies: Sequence[str], since: date) -> list[DayTotal]:
        """The client's stored day totals for ``currencies`` on ``since`` and later days, each
        with its version."""
        ...

    def claim_owners(self, client_id: str, keys: Sequence[DuplicateKey]) -> dict[str, tuple[str, str]]:
        """For each held key: (owner file id, owner file name)."""
        ...


class ReferenceSource(Protocol):
    def load(self) -> ReferenceData:
        """Read the whole reference table (once per process: see ``service.CachedReference``)."""
        ...
