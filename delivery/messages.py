"""Delivery's own contracts: timers it schedules on its session, and the Event Grid events."""

from __future__ import annotations

from choreography.contracts import Contract, DeliveryId


class DeliveryInTransitTimer(Contract):
    """Scheduled on the delivery's session for when the flight ends."""

    TYPE = "DeliveryInTransitTimer"

    delivery_id: DeliveryId
    drone_id: str | None = None


class JoinTimeout(Contract):
    """Scheduled on the delivery's session when the first outcome arrives: if the second has not
    arrived by then, the delivery is cancelled and whatever succeeded is compensated."""

    TYPE = "JoinTimeout"

    delivery_id: DeliveryId


# CloudEvent types announced on the Event Grid topic.
DELIVERY_SHIPPED = "DeliveryShipped"
DELIVERY_FAILED = "DeliveryFailed"
