"""Ingestion rules: what makes two requests "the same", and what the client is told."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from contracts.deliveries import DeliveryRequested, PackageInfo

from .messages import DeliveryRequest

MAX_BODY_BYTES = 64 * 1024


def fingerprint(request: DeliveryRequest) -> str:
    """Hash of the request's meaning (normalised JSON), to tell a retry from a conflicting reuse."""
    canonical = json.dumps(request.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def deadline_problem(request: DeliveryRequest, now: datetime) -> str | None:
    if request.deadline <= now:
        return "must be in the future"
    return None


def delivery_requested(request: DeliveryRequest, delivery_id: str) -> DeliveryRequested:
    info = request.package_info
    return DeliveryRequested(
        delivery_id=delivery_id,
        owner_id=request.owner_id,
        pickup_location=request.pickup_location,
        dropoff_location=request.dropoff_location,
        deadline=request.deadline,
        expedited=request.expedited,
        confirmation_required=request.confirmation_required,
        package_info=PackageInfo(package_id=info.package_id, size=info.size, weight=info.weight, tag=info.tag),
    )
