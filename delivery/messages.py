"""Delivery's own contracts: timers it schedules on its session, and the Event Grid events."""

from __future__ import annotations

from choreography.contracts import Contract, DeliveryId


class DeliveryInTransitTimer(Contract):
    """Scheduled on the delivery's session for when the flight ends."""

    TYPE = "DeliveryInTransitTimer"

    delivery_id: DeliveryId
    drone_id: str | None = None


class JoinTimeout(Contract):
    """Scheduled on the delivery's session by Ingestion before it records the delivery: if both
    outcomes have not arrived by then (or none, because the request never went out), the delivery
    is cancelled and whatever succeeded is compensated."""

    TYPE = "JoinTimeout"

    delivery_id: DeliveryId


# CloudEvent types announced on the Event Grid topic.
DELIVERY_SHIPPED = "DeliveryShipped"
DELIVERY_FAILED = "DeliveryFailed"
