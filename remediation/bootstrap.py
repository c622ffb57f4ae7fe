"""Wiring: remediation on the process's shared adapters."""

from __future__ import annotations

from choreography.entities import PAYMENT_NOTICES_TOPIC, REMEDIATIONS_TABLE
from choreography.publishing import EventGridPublisher
from choreography.runtime import Runtime
from choreography.settings import PAYMENTS_EVENT_GRID_ENDPOINT

from .adapters import TableAuditLog
from .domain import Policy
from .service import Remediation

EVENT_SOURCE = "/remediation"


def build(rt: Runtime) -> Remediation:
    payments = rt.settings.payments
    payment_events = EventGridPublisher(
        rt.settings.require(payments.event_grid_endpoint, PAYMENTS_EVENT_GRID_ENDPOINT), payments.event_grid_key,
        rt.clock, source=EVENT_SOURCE, topic=PAYMENT_NOTICES_TOPIC, identity=payments.event_grid_identity)
    settings = rt.settings.remediation
    return Remediation(TableAuditLog(rt.table(REMEDIATIONS_TABLE)), rt.publisher, rt.publisher, rt.events,
                       payment_events, rt.clock, Policy(settings.max_attempts, settings.retry_base, settings.retry_max))
