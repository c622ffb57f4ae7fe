"""Ingestion's HTTP triggers (function-level auth in Azure; the local host needs no key)."""

from __future__ import annotations

import uuid

import azure.functions as func

from choreography import telemetry
from choreography.entities import DELIVERIES_TOPIC, DELIVERY_EVENTS_QUEUE
from choreography.flow import flow, to
from choreography.messaging import Cause
from choreography.runtime import runtime
from contracts.deliveries import DeliveryRequested, JoinTimeout
from wiring import ingestion_service

from . import api
from .service import Accepted, Unavailable

bp = func.Blueprint()


def _http(response: api.Response) -> func.HttpResponse:
    return func.HttpResponse(response.body_bytes(), status_code=response.status, headers=dict(response.headers),
                             mimetype=response.content_type, charset="utf-8")


@bp.function_name("ingestion_submit_delivery")
@bp.route(route="deliveries", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@flow(to(DELIVERIES_TOPIC, DeliveryRequested), to(DELIVERY_EVENTS_QUEUE, JoinTimeout))
def ingestion_submit_delivery(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/deliveries → 202 and DeliveryRequested on topic ``deliveries``."""
    rt = runtime()
    parsed = api.parse_submission(req.get_body(), req.headers.get("content-type"), rt.clock.now())
    if isinstance(parsed, api.Response):
        return _http(parsed)
    cause = Cause(f"http:{uuid.uuid4()}", req.headers.get("traceparent"))
    try:
        outcome = rt.service(ingestion_service).submit(parsed, cause)
    except Unavailable:
        return _http(api.unavailable())
    telemetry.annotate({telemetry.CORRELATION: outcome.delivery_id,
                        telemetry.OUTCOME: "accepted" if isinstance(outcome, Accepted) else "conflict"})
    if isinstance(outcome, Accepted):
        return _http(api.accepted(req.url, outcome.delivery_id))
    return _http(api.conflict(outcome.delivery_id))


@bp.function_name("ingestion_get_delivery")
@bp.route(route="deliveries/{deliveryId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@flow()
def ingestion_get_delivery(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/deliveries/{id} → the delivery's status and history, or 404."""
    delivery_id = req.route_params.get("deliveryId", "")
    if not api.valid_delivery_id(delivery_id):
        return _http(api.not_found(delivery_id))
    return _http(api.status(runtime().service(ingestion_service).status(delivery_id), delivery_id))


@bp.function_name("ingestion_health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@flow()
def ingestion_health(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/health → 200. The host serves HTTP functions only once it has started, every
    trigger listening (the Functions host and devhost hold requests until then), so an answer
    here means the whole app is listening."""
    return _http(api.Response(200, {"status": "ok"}))

