"""What a delivery notification says."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from choreography.contracts import DELIVERY_ID_PATTERN
from choreography.errors import MalformedMessage
from choreography.keys import table_key_problem

NOTIFIED_TYPES = frozenset({"DeliveryShipped", "DeliveryFailed"})


@dataclass(frozen=True)
class Notification:
    delivery_id: str
    event_id: str
    event_type: str
    message: str
    occurred_at: datetime | None


def notification_for(event_id: str, event_type: str, data: Any, occurred_at: datetime | None) -> Notification | None:
    """The notification an event calls for, or None for events this listener does not notify.

    Raises :class:`MalformedMessage` for an event that calls for one but whose ids can never be
    stored (the delivery id is the row's partition, the event id its row key): retrying it
    would fail the same way for as long as Event Grid keeps trying."""
    if event_type not in NOTIFIED_TYPES or not isinstance(data, dict) or not data.get("deliveryId"):
        return None
    delivery_id = data["deliveryId"]
    if not isinstance(delivery_id, str) or not re.fullmatch(DELIVERY_ID_PATTERN, delivery_id):
        raise MalformedMessage(f"{event_type} event carries a deliveryId that is not a delivery id")
    problem = table_key_problem(event_id)
    if problem is not None:
        raise MalformedMessage(f"{event_type} event id cannot be stored: {problem}")
    if event_type == "DeliveryShipped":
        drone = f" by {data['droneId']}" if data.get("droneId") else ""
        message = f"Delivery {delivery_id} has shipped{drone}."
    else:
        message = f"Delivery {delivery_id} was cancelled: {data.get('reason', 'unknown reason')}."
    return Notification(delivery_id, event_id, event_type, message, occurred_at)
