"""Delivery's own message: the flight timer it schedules on the delivery's session. What it
says to and hears from other services is in :mod:`contracts.deliveries`."""

from __future__ import annotations

from choreography.contracts import Contract, DeliveryId


class DeliveryInTransitTimer(Contract):
    """Scheduled on the delivery's session for when the flight ends."""

    TYPE = "DeliveryInTransitTimer"

    delivery_id: DeliveryId
    drone_id: str | None = None
