"""Wiring: Ingestion on the process's shared adapters and Delivery's records."""

from __future__ import annotations

from choreography.runtime import Runtime
from contracts.deliveries import DeliveryRecords

from .service import IngestionService


def build(rt: Runtime, records: DeliveryRecords) -> IngestionService:
    return IngestionService(records, rt.publisher, rt.clock, rt.settings.join_timeout)
