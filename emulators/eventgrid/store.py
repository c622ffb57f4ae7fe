"""Durable state of the emulator: accepted events, per-subscription delivery state, and
subscriptions added through the management API.

Contract:
  * One SQLite database (WAL journal) at ``{data_dir}/eventgrid.db``, or a private
    in-memory database for ``--in-memory``; the same code path serves both.
  * ``add_events`` writes a published batch and one ``pending`` delivery row per matching
    subscription in a single transaction, and returns only after the commit: the HTTP
    handler answers 200 after that, so an acknowledged event survives a crash of the
    process (WAL with synchronous=NORMAL; an OS crash or power loss may lose the tail).
  * A delivery is ``pending`` until it becomes ``delivered`` or ``dead-lettered``; both are
    final. While an attempt is in flight its row is *leased* (``leased = 1`` and
    ``next_attempt_at`` pushed past the attempt's timeout). ``recover_leases`` at start-up
    makes rows leased by a killed process due again, which is what makes delivery
    at-least-once across restarts.
  * All methods are synchronous and called from the event loop thread only; each is a
    few indexed statements, cheaper than handing them to a thread.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .schema import Event

PENDING = "pending"
DELIVERED = "delivered"
DEAD_LETTERED = "dead-lettered"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    topic        TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    subject      TEXT NOT NULL,
    schema       TEXT NOT NULL,
    payload      TEXT NOT NULL,
    received_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_topic ON events(topic, seq);

CREATE TABLE IF NOT EXISTS deliveries (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    event_seq          INTEGER NOT NULL REFERENCES events(seq) ON DELETE CASCADE,
    topic              TEXT NOT NULL,
    subscription       TEXT NOT NULL,
    status             TEXT NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    max_attempts       INTEGER NOT NULL,
    expires_at         REAL NOT NULL,
    next_attempt_at    REAL NOT NULL,
    leased             INTEGER NOT NULL DEFAULT 0,
    last_status        INTEGER,
    last_error         TEXT,
    last_attempt_at    REAL,
    delivered_at       REAL,
    dead_letter_reason TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(status, leased, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_by_event ON deliveries(event_seq);

CREATE TABLE IF NOT EXISTS subscriptions (
    topic TEXT NOT NULL,
    name  TEXT NOT NULL,
    spec  TEXT NOT NULL,
    PRIMARY KEY (topic, name)
);
"""


@dataclass(frozen=True)
class PlannedDelivery:
    subscription: str
    max_attempts: int
    expires_at: float


@dataclass(frozen=True)
class DueDelivery:
    id: int
    topic: str
    subscription: str
    attempts: int
    max_attempts: int
    expires_at: float
    event_schema: str
    payload: dict[str, Any]


class Store:
    def __init__(self, data_dir: str | Path | None) -> None:
        if data_dir is None:
            self.location = ":memory:"
        else:
            Path(data_dir).mkdir(parents=True, exist_ok=True)
            self.location = str(Path(data_dir) / "eventgrid.db")
        self._db = sqlite3.connect(self.location, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        if data_dir is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- publishing -------------------------------------------------------------------

    def add_events(
        self, topic: str, events: list[Event], plans: list[list[PlannedDelivery]], now: float
    ) -> None:
        with self._tx():
            for event, planned in zip(events, plans, strict=True):
                cur = self._db.execute(
                    "INSERT INTO events (topic, event_id, event_type, subject, schema, payload, received_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        topic,
                        event.id,
                        event.type,
                        event.subject,
                        event.schema,
                        json.dumps(event.payload),
                        now,
                    ),
                )
                self._db.executemany(
                    "INSERT INTO deliveries (event_seq, topic, subscription, status, max_attempts, expires_at,"
                    " next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (cur.lastrowid, topic, p.subscription, PENDING, p.max_attempts, p.expires_at, now)
                        for p in planned
                    ],
                )

    # -- delivery scheduling ----------------------------------------------------------

    def recover_leases(self, now: float) -> int:
        with self._tx():
            cur = self._db.execute(
                "UPDATE deliveries SET leased = 0, next_attempt_at = ? WHERE status = ? AND leased = 1",
                (now, PENDING),
            )
            return cur.rowcount

    def due(self, now: float, limit: int) -> list[DueDelivery]:
        rows = self._db.execute(
            "SELECT d.id, d.topic, d.subscription, d.attempts, d.max_attempts, d.expires_at, e.schema, e.payload"
            " FROM deliveries d JOIN events e ON e.seq = d.event_seq"
            " WHERE d.status = ? AND d.leased = 0 AND d.next_attempt_at <= ?"
            " ORDER BY d.next_attempt_at, d.id LIMIT ?",
            (PENDING, now, limit),
        ).fetchall()
        return [
            DueDelivery(
                id=r["id"],
                topic=r["topic"],
                subscription=r["subscription"],
                attempts=r["attempts"],
                max_attempts=r["max_attempts"],
                expires_at=r["expires_at"],
                event_schema=r["schema"],
                payload=json.loads(r["payload"]),
            )
            for r in rows
        ]

    def lease(self, ids: Iterable[int], until: float) -> None:
        with self._tx():
            self._db.executemany(
                "UPDATE deliveries SET leased = 1, next_attempt_at = ? WHERE id = ?",
                [(until, i) for i in ids],
            )

    def next_due_at(self) -> float | None:
        row = self._db.execute(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE status = ? AND leased = 0", (PENDING,)
        ).fetchone()
        return row[0]

    def mark_delivered(self, delivery_id: int, attempts: int, status_code: int, now: float) -> None:
        with self._tx():
            self._db.execute(
                "UPDATE deliveries SET status = ?, leased = 0, attempts = ?, last_status = ?, last_error = NULL,"
                " last_attempt_at = ?, delivered_at = ? WHERE id = ?",
                (DELIVERED, attempts, status_code, now, now, delivery_id),
            )

    def mark_retry(
        self, delivery_id: int, attempts: int, status_code: int | None, error: str, next_at: float, now: float
    ) -> None:
        with self._tx():
            self._db.execute(
                "UPDATE deliveries SET leased = 0, attempts = ?, last_status = ?, last_error = ?, last_attempt_at = ?,"
                " next_attempt_at = ? WHERE id = ?",
                (attempts, status_code, error, now, next_at, delivery_id),
            )

    def mark_dead_lettered(
        self,
        delivery_id: int,
        attempts: int,
        status_code: int | None,
        error: str | None,
        reason: str,
        now: float,
    ) -> None:
        with self._tx():
            self._db.execute(
                "UPDATE deliveries SET status = ?, leased = 0, attempts = ?, last_status = ?,"
                " last_error = COALESCE(?, last_error),"
                " last_attempt_at = CASE WHEN ? > 0 THEN ? ELSE last_attempt_at END,"
                " dead_letter_reason = ? WHERE id = ?",
                (DEAD_LETTERED, attempts, status_code, error, attempts, now, reason, delivery_id),
            )

    def dead_letter_pending(self, topic: str, subscription: str, reason: str) -> int:
        """Settle what a deleted subscription still owed; Azure stops delivering those too."""
        with self._tx():
            cur = self._db.execute(
                "UPDATE deliveries SET status = ?, dead_letter_reason = ? WHERE topic = ? AND subscription = ?"
                " AND status = ? AND leased = 0",
                (DEAD_LETTERED, reason, topic, subscription, PENDING),
            )
            return cur.rowcount

    # -- inspection -------------------------------------------------------------------

    def list_events(
        self, topic: str, event_type: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        sql = "SELECT * FROM events WHERE topic = ?"
        args: list[Any] = [topic]
        if event_type:
            sql += " AND event_type = ? COLLATE NOCASE"
            args.append(event_type)
        if status:
            sql += " AND seq IN (SELECT event_seq FROM deliveries WHERE topic = ? AND status = ?)"
            args += [topic, status]
        events = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        if not events:
            return []
        by_event: dict[int, list[dict[str, Any]]] = {e["seq"]: [] for e in events}
        rows = self._db.execute(
            "SELECT * FROM deliveries WHERE topic = ? AND event_seq BETWEEN ? AND ? ORDER BY id",
            (topic, events[0]["seq"], events[-1]["seq"]),
        ).fetchall()
        for d in rows:
            if d["event_seq"] in by_event:
                by_event[d["event_seq"]].append(
                    {
                        "subscription": d["subscription"],
                        "status": d["status"],
                        "attempts": d["attempts"],
                        "maxDeliveryAttempts": d["max_attempts"],
                        "lastStatusCode": d["last_status"],
                        "lastError": d["last_error"],
                        "lastAttemptAt": _iso(d["last_attempt_at"]),
                        "nextAttemptAt": _iso(d["next_attempt_at"]) if d["status"] == PENDING else None,
                        "deliveredAt": _iso(d["delivered_at"]),
                        "deadLetterReason": d["dead_letter_reason"],
                        "expiresAt": _iso(d["expires_at"]),
                    }
                )
        return [
            {
                "sequence": e["seq"],
                "id": e["event_id"],
                "type": e["event_type"],
                "subject": e["subject"],
                "schema": e["schema"],
                "receivedAt": _iso(e["received_at"]),
                "event": json.loads(e["payload"]),
                "deliveries": by_event[e["seq"]],
            }
            for e in events
        ]

    def clear_topic(self, topic: str) -> int:
        with self._tx():
            self._db.execute("DELETE FROM deliveries WHERE topic = ?", (topic,))
            return self._db.execute("DELETE FROM events WHERE topic = ?", (topic,)).rowcount

    # -- runtime subscriptions --------------------------------------------------------

    def save_subscription(self, topic: str, name: str, spec: dict[str, Any]) -> None:
        with self._tx():
            self._db.execute(
                "INSERT INTO subscriptions (topic, name, spec) VALUES (?, ?, ?)"
                " ON CONFLICT (topic, name) DO UPDATE SET spec = excluded.spec",
                (topic, name, json.dumps(spec)),
            )

    def delete_subscription(self, topic: str, name: str) -> None:
        with self._tx():
            self._db.execute("DELETE FROM subscriptions WHERE topic = ? AND name = ?", (topic, name))

    def load_subscriptions(self) -> list[tuple[str, dict[str, Any]]]:
        rows = self._db.execute("SELECT topic, spec FROM subscriptions ORDER BY rowid").fetchall()
        return [(r["topic"], json.loads(r["spec"])) for r in rows]

    # -- helpers ----------------------------------------------------------------------

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT/ROLLBACK; the connection runs in autocommit mode otherwise."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
