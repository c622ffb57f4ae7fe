"""What a delivery notification says."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

NOTIFIED_TYPES = frozenset({"DeliveryShipped", "DeliveryFailed"})


@dataclass(frozen=True)
class Notification:
    delivery_id: str
    event_id: str
    event_type: str
    message: str
    occurred_at: datetime | None


def notification_for(event_id: str, event_type: str, data: Any, occurred_at: datetime | None) -> Notification | None:
    """The notification an event calls for, or None for events this listener does not notify."""
    if event_type not in NOTIFIED_TYPES or not isinstance(data, dict) or not data.get("deliveryId"):
        return None
    delivery_id = str(data["deliveryId"])
    if event_type == "DeliveryShipped":
        drone = f" by {data['droneId']}" if data.get("droneId") else ""
        message = f"Delivery {delivery_id} has shipped{drone}."
    else:
        message = f"Delivery {delivery_id} was cancelled: {data.get('reason', 'unknown reason')}."
    return Notification(delivery_id, event_id, event_type, message, occurred_at)
