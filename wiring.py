"""Where one service is handed another's in-process interface: the only module of the app that
imports two services. Ingestion opens and reads the delivery records through
:class:`contracts.deliveries.DeliveryRecords`, which the Delivery service provides."""

from __future__ import annotations

import delivery.bootstrap
import ingestion.bootstrap
from choreography.runtime import Runtime
from ingestion.service import IngestionService


def ingestion_service(rt: Runtime) -> IngestionService:
    return ingestion.bootstrap.build(rt, rt.service(delivery.bootstrap.build))
