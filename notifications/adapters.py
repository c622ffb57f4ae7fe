"""Notifications in Azure Table Storage, table ``notifications``: PartitionKey = delivery id,
RowKey = CloudEvent id (so an event delivered twice is one row)."""

from __future__ import annotations

from datetime import datetime

from azure.data.tables import TableClient, UpdateMode

from .domain import Notification


class TableNotificationStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def record(self, notification: Notification) -> None:
        self._table.upsert_entity({
            "PartitionKey": notification.delivery_id,
            "RowKey": notification.event_id,
            "eventType": notification.event_type,
            "message": notification.message,
            "occurredAt": notification.occurred_at.isoformat() if notification.occurred_at else "",
        }, mode=UpdateMode.REPLACE)

    def for_delivery(self, delivery_id: str) -> list[Notification]:
        entities = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": delivery_id})
        return sorted((Notification(e["PartitionKey"], e["RowKey"], e["eventType"], e["message"],
                                    datetime.fromisoformat(e["occurredAt"]) if e.get("occurredAt") else None)
                       for e in entities), key=lambda n: n.event_id)
