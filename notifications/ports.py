from __future__ import annotations

from typing import Protocol

from .domain import Notification


class NotificationStore(Protocol):
    def record(self, notification: Notification) -> None:
        """Store it once: recording the same event id again changes nothing."""
        ...

    def for_delivery(self, delivery_id: str) -> list[Notification]:
        ...
