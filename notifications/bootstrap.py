"""Wiring: the notification listener on the process's shared adapters."""

from __future__ import annotations

from choreography.entities import NOTIFICATIONS_TABLE
from choreography.runtime import Runtime

from .adapters import TableNotificationStore
from .service import NotificationService


def build(rt: Runtime) -> NotificationService:
    return NotificationService(TableNotificationStore(rt.table(NOTIFICATIONS_TABLE)), rt.publisher)
