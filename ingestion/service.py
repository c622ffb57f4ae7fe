"""Ingestion use cases: accept a delivery request exactly once; report a delivery's status."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from choreography.clock import Clock
from choreography.entities import DELIVERIES_TOPIC
from choreography.idempotency import message_id
from choreography.messaging import Cause, Outgoing, Publisher
from delivery.domain import Delivery, Status
from delivery.ports import DeliveryExists, DeliveryRepository
from delivery.service import status_view

from .domain import delivery_requested, fingerprint
from .messages import DeliveryRequest


@dataclass(frozen=True)
class Accepted:
    delivery_id: str


@dataclass(frozen=True)
class Conflict:
    delivery_id: str


class IngestionService:
    def __init__(self, deliveries: DeliveryRepository, publisher: Publisher, clock: Clock) -> None:
        self.deliveries = deliveries
        self.publisher = publisher
        self.clock = clock

    def submit(self, request: DeliveryRequest, cause: Cause) -> Accepted | Conflict:
        """Record the delivery, then publish ``DeliveryRequested`` (message id
        ``DeliveryRequested:{deliveryId}``).

        Idempotent: the same id with the same request is accepted again without a second
        delivery — it is republished only while nothing has happened yet (recovering from a crash
        between the record and the publish), and duplicate detection drops that copy. The same id
        with a different request is a Conflict. Without an id, a new one is generated.
        """
        delivery_id = request.delivery_id or str(uuid.uuid4())
        request = request.model_copy(update={"delivery_id": delivery_id})
        request_print = fingerprint(request)
        try:
            self.deliveries.add(Delivery.requested(delivery_id, request_print, self.clock.now()))
        except DeliveryExists:
            existing = self.deliveries.get(delivery_id)
            if existing is None or existing.request_fingerprint != request_print:
                return Conflict(delivery_id)
            if existing.status is not Status.REQUESTED:
                return Accepted(delivery_id)
        event = delivery_requested(request, delivery_id)
        self.publisher.send([Outgoing(DELIVERIES_TOPIC, event, message_id("DeliveryRequested", delivery_id),
                                      delivery_id)], cause)
        return Accepted(delivery_id)

    def status(self, delivery_id: str) -> dict[str, Any] | None:
        delivery = self.deliveries.get(delivery_id)
        return status_view(delivery) if delivery else None
