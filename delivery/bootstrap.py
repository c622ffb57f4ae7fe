"""Wiring: the Delivery service on the process's shared adapters."""

from __future__ import annotations

from choreography.entities import DELIVERIES_TABLE
from choreography.runtime import Runtime

from .adapters import TableDeliveryRepository
from .domain import Timing
from .service import DeliveryService


def build(rt: Runtime) -> DeliveryService:
    return DeliveryService(
        deliveries=TableDeliveryRepository(rt.table(DELIVERIES_TABLE)),
        publisher=rt.publisher,
        events=rt.events,
        clock=rt.clock,
        timing=Timing(flight_time=rt.settings.flight_time),
    )
