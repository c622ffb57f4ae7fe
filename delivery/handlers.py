"""Delivery's trigger: the session queue ``delivery-events`` (one session per delivery, so one
delivery's outcomes are handled one at a time, in order)."""

from __future__ import annotations

import azure.functions as func

from choreography.entities import DELIVERIES_TOPIC, DELIVERY_EVENTS_QUEUE, DELIVERY_NOTICES_TOPIC
from choreography.flow import flow, to
from choreography.handling import consume
from choreography.runtime import runtime
from choreography.settings import SERVICE_BUS_CONNECTION
from choreography.triggers import incoming
from contracts.deliveries import CancelPackage, ReleaseDrone

from .bootstrap import build
from .domain import FAILED_EVENT, SHIPPED_EVENT
from .messages import DeliveryInTransitTimer

bp = func.Blueprint()


@bp.function_name("delivery_on_event")
@bp.service_bus_queue_trigger(arg_name="message", connection=SERVICE_BUS_CONNECTION,
                              queue_name=DELIVERY_EVENTS_QUEUE.name, is_sessions_enabled=True)
@flow(to(DELIVERY_EVENTS_QUEUE, DeliveryInTransitTimer), to(DELIVERIES_TOPIC, CancelPackage, ReleaseDrone),
      to(DELIVERY_NOTICES_TOPIC, SHIPPED_EVENT, FAILED_EVENT))
def delivery_on_event(message: func.ServiceBusMessage) -> None:
    """Package/Drone outcomes, timers and compensation acknowledgements → the delivery's saga."""
    rt = runtime()
    consume(incoming(message, DELIVERY_EVENTS_QUEUE), rt.service(build), rt.publisher)
