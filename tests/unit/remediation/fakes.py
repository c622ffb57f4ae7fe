"""An in-memory audit log, held to the same contract as Table ``remediations`` (audit_contract.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

from remediation.domain import AuditEntry, Decision, Outcome


class InMemoryAuditLog:
    def __init__(self) -> None:
        self._entries: dict[str, AuditEntry] = {}
        self._lock = threading.Lock()

    def get(self, dead_letter_id: str) -> AuditEntry | None:
        return self._entries.get(dead_letter_id)

    def add(self, entry: AuditEntry) -> bool:
        with self._lock:
            if entry.record.message_id in self._entries:
                return False
            self._entries[entry.record.message_id] = entry
            return True

    def set_outcome(self, dead_letter_id: str, outcome: Outcome, note: str = "") -> None:
        with self._lock:
            self._entries[dead_letter_id] = replace(self._entries[dead_letter_id], outcome=outcome, note=note)

    def entries(self, decision: Decision | None = None) -> Iterator[AuditEntry]:
        return iter([e for e in self._entries.values() if decision is None or e.verdict.decision is decision])
