"""Deterministic message ids and processed-message records.

A message id derived from what the message *means* (``DeliveryRequested:{deliveryId}``) lets
Service Bus duplicate detection drop a re-send inside its window; past the window every consumer
is idempotent anyway (upserts, ETags, and the processed-message ids kept in the same write as
the state change, :class:`ProcessedMessages`).
"""

from __future__ import annotations

import hashlib

MAX_MESSAGE_ID = 128  # Service Bus limit


def message_id(*parts: str) -> str:
    """``parts`` joined with ``:``; hashed down when longer than Service Bus allows."""
    text = ":".join(parts)
    if len(text) <= MAX_MESSAGE_ID:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    return f"{text[: MAX_MESSAGE_ID - len(digest) - 1]}~{digest}"


def short_hash(text: str, length: int = 12) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


class ProcessedMessages:
    """The most recent message ids a state change consumed, bounded so the record stays small.

    Stored in the same entity as the state, so "apply the change" and "remember the message"
    are one atomic write.
    """

    def __init__(self, ids: list[str] | None = None, limit: int = 64) -> None:
        self.ids = list(ids or [])
        self.limit = limit

    def __contains__(self, message_id: str) -> bool:
        return message_id in self.ids

    def add(self, message_id: str) -> None:
        if message_id not in self.ids:
            self.ids.append(message_id)
            del self.ids[: max(0, len(self.ids) - self.limit)]
