"""Sample requests and messages shared by the unit and integration tests."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from choreography.contracts import Contract
from choreography.entities import DELIVERIES_TOPIC, Destination
from choreography.messaging import Cause, Outgoing, stamp
from ingestion.domain import delivery_requested
from ingestion.messages import DeliveryRequest


def new_id(prefix: str = "d") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def request_body(now: datetime, **overrides: Any) -> dict[str, Any]:
    """A valid ``POST /api/deliveries`` body; ``package`` overrides go in ``packageInfo``."""
    package = {"packageId": "pkg-1", "size": "small", "weight": 2.5, "tag": "books"}
    package.update(overrides.pop("package", {}))
    body: dict[str, Any] = {
        "deliveryId": new_id(),
        "ownerId": "owner-7",
        "pickupLocation": "47.6062,-122.3321",
        "dropoffLocation": "47.6205,-122.3493",
        "deadline": (now + timedelta(hours=2)).isoformat(),
        "expedited": False,
        "confirmationRequired": False,
        "packageInfo": package,
    }
    body.update(overrides)
    return body


def delivery_request(now: datetime, **overrides: Any) -> DeliveryRequest:
    return DeliveryRequest.model_validate(request_body(now, **overrides))


def requested_outgoing(now: datetime, **overrides: Any) -> Outgoing:
    request = delivery_request(now, **overrides)
    assert request.delivery_id
    return Outgoing(DELIVERIES_TOPIC, delivery_requested(request, request.delivery_id),
                    f"DeliveryRequested:{request.delivery_id}", request.delivery_id)


def envelope_json(payload: Contract, delivery_id: str, now: datetime, message_id: str | None = None,
                  destination: Destination = DELIVERIES_TOPIC, **envelope_overrides: Any) -> bytes:
    """A message body exactly as the publisher would write it (optionally altered)."""
    out = Outgoing(destination, payload, message_id or f"{payload.TYPE}:{delivery_id}", delivery_id)
    envelope = stamp(out, Cause(f"test:{uuid.uuid4().hex}", None), now)
    document = envelope.model_dump(mode="json", by_alias=True)
    document.update(envelope_overrides)
    return json.dumps(document).encode()
