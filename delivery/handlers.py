"""Delivery's trigger: the session queue ``delivery-events`` (one session per delivery, so one
delivery's outcomes are handled one at a time, in order)."""

from __future__ import annotations

import azure.functions as func

from choreography.entities import DELIVERY_EVENTS_QUEUE
from choreography.handling import consume
from choreography.runtime import runtime
from choreography.settings import SERVICE_BUS_CONNECTION
from choreography.triggers import incoming

from .bootstrap import build

bp = func.Blueprint()


@bp.function_name("delivery_on_event")
@bp.service_bus_queue_trigger(arg_name="message", connection=SERVICE_BUS_CONNECTION,
                              queue_name=DELIVERY_EVENTS_QUEUE.name, is_sessions_enabled=True)
def delivery_on_event(message: func.ServiceBusMessage) -> None:
    """Package/Drone outcomes, timers and compensation acknowledgements → the delivery's saga."""
    rt = runtime()
    consume(incoming(message, DELIVERY_EVENTS_QUEUE), rt.service(build), rt.publisher)
