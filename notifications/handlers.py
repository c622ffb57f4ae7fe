"""The Event Grid-triggered listener. Subscribe it to the ``deliveries`` Event Grid topic at
``/runtime/webhooks/eventgrid?functionName=notifications_on_delivery_event``."""

from __future__ import annotations

import logging

import azure.functions as func

from choreography.flow import flow
from choreography.runtime import runtime

from .bootstrap import build

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("notifications_on_delivery_event")
@bp.event_grid_trigger(arg_name="event")
@flow()
def notifications_on_delivery_event(event: func.EventGridEvent) -> None:
    """DeliveryShipped / DeliveryFailed → one row in Table ``notifications``. Accepts the event in
    either schema: the worker hands CloudEvents over as ``func.CloudEvent``."""
    event_type = str(getattr(event, "event_type", None) or getattr(event, "type", None) or "")
    occurred_at = getattr(event, "event_time", None) or getattr(event, "time", None)
    recorded = runtime().service(build).on_event(event.id, event_type, event.get_json(), occurred_at)
    if recorded is None:
        log.info("event %s of type %s needs no notification", event.id, event_type)
