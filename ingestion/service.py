"""Ingestion use cases: accept a delivery request exactly once; report a delivery's status."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from choreography.clock import Clock
from choreography.entities import DELIVERIES_TOPIC, DELIVERY_EVENTS_QUEUE
from choreography.idempotency import message_id
from choreography.messaging import Cause, Outgoing, Publisher
from contracts.deliveries import DeliveryRecords, JoinTimeout, Opening

from .domain import delivery_requested, fingerprint
from .messages import DeliveryRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accepted:
    delivery_id: str


@dataclass(frozen=True)
class Conflict:
    delivery_id: str


class Unavailable(Exception):
    """Storage or Service Bus could not be reached: the request was not accepted (nothing is
    left half-done that would not end by itself); the client may send it again."""


class IngestionService:
    def __init__(self, deliveries: DeliveryRecords, publisher: Publisher, clock: Clock,
                 join_timeout: timedelta) -> None:
        self.deliveries = deliveries
        self.publisher = publisher
        self.clock = clock
        self.join_timeout = join_timeout

    def submit(self, request: DeliveryRequest, cause: Cause) -> Accepted | Conflict:
        """Schedule the delivery's join timeout, record the delivery, then publish
        ``DeliveryRequested`` (message id ``DeliveryRequested:{deliveryId}``), in that order.

        Every record ends: the join timeout is on the bus before the record exists, so a request
        whose publish never happened (a Service Bus outage, a host killed between the two) is
        cancelled with ``JoinTimeout`` instead of staying ``Requested`` forever; a timeout for a
        delivery that was never recorded changes nothing. Raises :class:`Unavailable` when
        storage or the bus fails.

        Idempotent: the same id with the same request is accepted again without a second
        delivery — it is republished only while nothing has happened yet (recovering from a crash
        between the record and the publish), and duplicate detection drops that copy. The same id
        with a different request is a Conflict. Without an id, a new one is generated.
        """
        delivery_id = request.delivery_id or str(uuid.uuid4())
        request = request.model_copy(update={"delivery_id": delivery_id})
        request_print = fingerprint(request)
        now = self.clock.now()
        try:
            self.publisher.send([join_timeout(delivery_id, now + self.join_timeout)], cause)
            opening = self.deliveries.open(delivery_id, request_print, now)
            if opening is Opening.CONFLICT:
                return Conflict(delivery_id)
            if opening is Opening.UNDER_WAY:
                return Accepted(delivery_id)
            event = delivery_requested(request, delivery_id)
            self.publisher.send([Outgoing(DELIVERIES_TOPIC, event, message_id("DeliveryRequested", delivery_id),
                                          delivery_id)], cause)
        except Exception as exc:  # storage or broker; the log has the cause, the client a 503
            log.warning("delivery %s not accepted: %s: %s", delivery_id, type(exc).__name__, exc)
            raise Unavailable(delivery_id) from exc
        return Accepted(delivery_id)

    def status(self, delivery_id: str) -> dict[str, Any] | None:
        return self.deliveries.status(delivery_id)


def join_timeout(delivery_id: str, at: datetime) -> Outgoing:
    """The delivery's watchdog on its own session, scheduled before the delivery is recorded, so
    a delivery ends even if its request never went out."""
    return Outgoing(DELIVERY_EVENTS_QUEUE, JoinTimeout(delivery_id=delivery_id), message_id("JoinTimeout", delivery_id),
                    delivery_id, session_id=delivery_id, scheduled_at=at)
