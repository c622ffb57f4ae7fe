"""Notification use case: record the notification an event calls for (idempotent)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .domain import Notification, notification_for
from .ports import NotificationStore


class NotificationService:
    def __init__(self, store: NotificationStore) -> None:
        self.store = store

    def on_event(self, event_id: str, event_type: str, data: Any, occurred_at: datetime | None) -> Notification | None:
        notification = notification_for(event_id, event_type, data, occurred_at)
        if notification is not None:
            self.store.record(notification)
        return notification
