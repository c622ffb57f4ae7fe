"""Wiring: Ingestion on the process's shared adapters."""

from __future__ import annotations

from choreography.entities import DELIVERIES_TABLE
from choreography.runtime import Runtime
from delivery.adapters import TableDeliveryRepository

from .service import IngestionService


def build(rt: Runtime) -> IngestionService:
    return IngestionService(TableDeliveryRepository(rt.table(DELIVERIES_TABLE)), rt.publisher, rt.clock,
                            rt.settings.join_timeout)
