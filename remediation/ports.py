"""What remediation needs from storage."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from .domain import AuditEntry, Decision, Outcome


class AuditLog(Protocol):
    """Table ``remediations``: one entry per dead letter, keyed by the dead letter's message id."""

    def get(self, dead_letter_id: str) -> AuditEntry | None: ...

    def add(self, entry: AuditEntry) -> bool:
        """Record a new decision; False when one is already recorded for this dead letter."""
        ...

    def set_outcome(self, dead_letter_id: str, outcome: Outcome, note: str = "") -> None: ...

    def entries(self, decision: Decision | None = None) -> Iterator[AuditEntry]: ...
