"""Notification use case: record the notification an event calls for (idempotent by event id);
an event that can never be recorded goes to the application dead-letter queue, once, instead of
failing every delivery attempt Event Grid makes."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from typing import Any

from choreography.errors import PermanentFailure
from choreography.messaging import DeadLetter, Incoming, Publisher

from .domain import Notification, notification_for
from .ports import NotificationStore

log = logging.getLogger(__name__)

# The Event Grid subscription this listener is reached through (devstack/eventgrid-subscriptions.json).
EVENT_SOURCE = "eventgrid:deliveries/notifications"


class NotificationService:
    def __init__(self, store: NotificationStore, publisher: Publisher) -> None:
        self.store = store
        self.publisher = publisher

    def on_event(self, event_id: str, event_type: str, data: Any, occurred_at: datetime | None) -> Notification | None:
        try:
            notification = notification_for(event_id, event_type, data, occurred_at)
        except PermanentFailure as failure:
            log.error("event of type %s dead-lettered: %s %s", event_type, failure.reason.value, failure.description)
            self.publisher.dead_letter(DeadLetter(_as_incoming(event_id, event_type, data), failure.reason.value,
                                                  failure.description))
            return None
        if notification is not None:
            self.store.record(notification)
        return notification


def _as_incoming(event_id: str, event_type: str, data: Any) -> Incoming:
    """The event as the dead-letter route takes a message: its id hashed (a hostile id may be no
    valid message id at all), the event whole in the body."""
    digest = hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    body = json.dumps({"id": event_id, "eventType": event_type, "data": data}).encode()
    return Incoming(body=body, message_id=f"{event_type[:64]}:{digest}", source=EVENT_SOURCE,
                    subject=event_type[:128], content_type="application/json",
                    application_properties={"eventType": event_type[:256]})
