"""Durable state of the broker: messages, their lock state, session state, duplicate records.

The broker keeps its working state in memory and writes every change through to this store
before it acknowledges anything to a client.  :class:`SqliteStore` uses SQLite in WAL mode with
``synchronous=NORMAL``: a committed transaction survives the emulator process being killed
(``kill -9``), which is the failure the emulator promises to survive; surviving a power cut of
the whole machine would need ``synchronous=FULL`` and is not promised.  :class:`MemoryStore`
keeps nothing (``--in-memory``), for fast tests.

All methods are called from the broker's single I/O loop thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass
class StoredMessage:
    entity: str
    seq: int
    state: int
    session_id: str | None
    message_id: str | None
    enqueued_ms: int
    expires_ms: int | None
    scheduled_ms: int | None
    delivery_count: int
    locked_until_ms: int | None
    lock_token: bytes | None
    ttl_ms: int | None
    annotations: bytes
    props: bytes
    app: bytes
    body: bytes
    original_seq: int | None = None


class Store(Protocol):
    def transaction(self) -> contextmanager: ...  # type: ignore[valid-type]
    def insert(self, m: StoredMessage) -> None: ...
    def update_lock(self, entity: str, seq: int, delivery_count: int, locked_until_ms: int | None,
                    lock_token: bytes | None) -> None: ...
    def update_state(self, entity: str, seq: int, state: int) -> None: ...
    def delete(self, entity: str, seq: int) -> None: ...
    def save_sequence(self, entity: str, last: int) -> None: ...
    def set_session_state(self, entity: str, session_id: str, state: bytes | None, updated_ms: int) -> None: ...
    def record_duplicate(self, entity: str, message_id: str, seen_ms: int) -> None: ...
    def forget_duplicates(self, entity: str, before_ms: int) -> None: ...
    def load_messages(self) -> Iterator[StoredMessage]: ...
    def load_sequences(self) -> dict[str, int]: ...
    def load_session_states(self) -> Iterator[tuple[str, str, bytes, int]]: ...
    def load_duplicates(self) -> Iterator[tuple[str, str, int]]: ...
    def save_definition(self, path: str, document: str) -> None: ...
    def load_definitions(self) -> Iterator[tuple[str, str]]: ...
    def purge_entities(self, paths: list[str]) -> None: ...
    def close(self) -> None: ...


class MemoryStore:
    """Keeps nothing: every write is a no-op and a restart starts empty."""

    @contextmanager
    def transaction(self) -> Iterator[None]:
        yield

    def insert(self, m: StoredMessage) -> None:
        pass

    def update_lock(self, entity: str, seq: int, delivery_count: int, locked_until_ms: int | None,
                    lock_token: bytes | None) -> None:
        pass

    def update_state(self, entity: str, seq: int, state: int) -> None:
        pass

    def delete(self, entity: str, seq: int) -> None:
        pass

    def save_sequence(self, entity: str, last: int) -> None:
        pass

    def set_session_state(self, entity: str, session_id: str, state: bytes | None, updated_ms: int) -> None:
        pass

    def record_duplicate(self, entity: str, message_id: str, seen_ms: int) -> None:
        pass

    def forget_duplicates(self, entity: str, before_ms: int) -> None:
        pass

    def load_messages(self) -> Iterator[StoredMessage]:
        return iter(())

    def load_sequences(self) -> dict[str, int]:
        return {}

    def load_session_states(self) -> Iterator[tuple[str, str, bytes, int]]:
        return iter(())

    def load_duplicates(self) -> Iterator[tuple[str, str, int]]:
        return iter(())

    def save_definition(self, path: str, document: str) -> None:
        pass

    def load_definitions(self) -> Iterator[tuple[str, str]]:
        return iter(())

    def purge_entities(self, paths: list[str]) -> None:
        pass

    def close(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    entity TEXT NOT NULL, seq INTEGER NOT NULL, state INTEGER NOT NULL, session_id TEXT, message_id TEXT,
    enqueued_ms INTEGER NOT NULL, expires_ms INTEGER, scheduled_ms INTEGER, delivery_count INTEGER NOT NULL,
    locked_until_ms INTEGER, lock_token BLOB, ttl_ms INTEGER, annotations BLOB NOT NULL, props BLOB NOT NULL,
    app BLOB NOT NULL, body BLOB NOT NULL, original_seq INTEGER,
    PRIMARY KEY (entity, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sequences (entity TEXT PRIMARY KEY, last INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS session_states (entity TEXT NOT NULL, session_id TEXT NOT NULL, state BLOB NOT NULL,
    updated_ms INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (entity, session_id));
CREATE TABLE IF NOT EXISTS duplicates (entity TEXT NOT NULL, message_id TEXT NOT NULL, seen_ms INTEGER NOT NULL,
    PRIMARY KEY (entity, message_id));
CREATE TABLE IF NOT EXISTS definitions (path TEXT PRIMARY KEY, document TEXT NOT NULL, written INTEGER NOT NULL);
"""


class SqliteStore:
    """Write-through persistence in ``DIR/servicebus.db``."""

    def __init__(self, directory: str | Path) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path / "servicebus.db", isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(session_states)")}
        if "updated_ms" not in columns:  # a data directory from before session states had a time
            self._db.execute("ALTER TABLE session_states ADD COLUMN updated_ms INTEGER NOT NULL DEFAULT 0")
        self._depth = 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        # Nested use joins the outer transaction, so one client operation is one commit.
        if self._depth == 0:
            self._db.execute("BEGIN")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self._db.execute("ROLLBACK")
            raise
        self._depth -= 1
        if self._depth == 0:
            self._db.execute("COMMIT")

    def insert(self, m: StoredMessage) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO messages VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (m.entity, m.seq, m.state, m.session_id, m.message_id, m.enqueued_ms, m.expires_ms, m.scheduled_ms,
             m.delivery_count, m.locked_until_ms, m.lock_token, m.ttl_ms, m.annotations, m.props, m.app, m.body,
             m.original_seq),
        )

    def update_lock(self, entity: str, seq: int, delivery_count: int, locked_until_ms: int | None,
                    lock_token: bytes | None) -> None:
        self._db.execute(
            "UPDATE messages SET delivery_count=?, locked_until_ms=?, lock_token=? WHERE entity=? AND seq=?",
            (delivery_count, locked_until_ms, lock_token, entity, seq),
        )

    def update_state(self, entity: str, seq: int, state: int) -> None:
        self._db.execute("UPDATE messages SET state=? WHERE entity=? AND seq=?", (state, entity, seq))

    def delete(self, entity: str, seq: int) -> None:
        self._db.execute("DELETE FROM messages WHERE entity=? AND seq=?", (entity, seq))

    def save_sequence(self, entity: str, last: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO sequences VALUES (?,?)", (entity, last))

    def set_session_state(self, entity: str, session_id: str, state: bytes | None, updated_ms: int) -> None:
        if state is None:
            self._db.execute("DELETE FROM session_states WHERE entity=? AND session_id=?", (entity, session_id))
        else:
            self._db.execute("INSERT OR REPLACE INTO session_states (entity, session_id, state, updated_ms) "
                             "VALUES (?,?,?,?)", (entity, session_id, state, updated_ms))

    def record_duplicate(self, entity: str, message_id: str, seen_ms: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO duplicates VALUES (?,?,?)", (entity, message_id, seen_ms))

    def forget_duplicates(self, entity: str, before_ms: int) -> None:
        self._db.execute("DELETE FROM duplicates WHERE entity=? AND seen_ms<?", (entity, before_ms))

    def load_messages(self) -> Iterator[StoredMessage]:
        for row in self._db.execute("SELECT * FROM messages ORDER BY entity, seq"):
            yield StoredMessage(*row)

    def load_sequences(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT entity, last FROM sequences"))

    def load_session_states(self) -> Iterator[tuple[str, str, bytes, int]]:
        yield from self._db.execute("SELECT entity, session_id, state, updated_ms FROM session_states")

    def load_duplicates(self) -> Iterator[tuple[str, str, int]]:
        yield from self._db.execute("SELECT entity, message_id, seen_ms FROM duplicates")

    def save_definition(self, path: str, document: str) -> None:
        # ``written`` keeps the order of changes, so a restart replays them as they happened.
        self._db.execute("INSERT OR REPLACE INTO definitions VALUES (?, ?, "
                         "(SELECT COALESCE(MAX(written), 0) + 1 FROM definitions))", (path, document))

    def load_definitions(self) -> Iterator[tuple[str, str]]:
        yield from self._db.execute("SELECT path, document FROM definitions ORDER BY written")

    def purge_entities(self, paths: list[str]) -> None:
        for path in paths:
            for table in ("messages", "sequences", "session_states", "duplicates"):
                self._db.execute(f"DELETE FROM {table} WHERE entity=?", (path,))  # noqa: S608 (fixed names)

    def close(self) -> None:
        self._db.close()
