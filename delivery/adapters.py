"""Delivery records in Azure Table Storage: one entity per delivery, ETag-guarded."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from choreography.errors import ConcurrencyConflict
from choreography.idempotency import ProcessedMessages
from choreography.messaging import Cause

from .domain import (
    Announce,
    CancelPackage,
    Delivery,
    Effect,
    HistoryEntry,
    Outcome,
    ReleaseDrone,
    StartFlight,
    Status,
)
from .ports import DeliveryExists

ROW_KEY = "delivery"


def _outcome_json(outcome: Outcome | None) -> str:
    if outcome is None:
        return ""
    return json.dumps({"ok": outcome.ok, "reference": outcome.reference, "reason": outcome.reason,
                       "at": outcome.at.isoformat()})


def _outcome(text: str | None) -> Outcome | None:
    if not text:
        return None
    raw = json.loads(text)
    return Outcome(raw["ok"], raw["reference"], raw["reason"], datetime.fromisoformat(raw["at"]))


def _effect_json(effect: Effect) -> dict[str, Any]:
    if isinstance(effect, StartFlight):
        return {"effect": "StartFlight", "droneId": effect.drone_id, "landsAt": effect.lands_at.isoformat()}
    if isinstance(effect, CancelPackage):
        return {"effect": "CancelPackage", "packageId": effect.package_id, "reason": effect.reason}
    if isinstance(effect, ReleaseDrone):
        return {"effect": "ReleaseDrone", "droneId": effect.drone_id, "reason": effect.reason}
    return {"effect": "Announce", "eventType": effect.event_type, "reason": effect.reason}


def _effect(raw: dict[str, Any]) -> Effect:
    kind = raw["effect"]
    if kind == "StartFlight":
        return StartFlight(raw["droneId"], datetime.fromisoformat(raw["landsAt"]))
    if kind == "CancelPackage":
        return CancelPackage(raw["packageId"], raw["reason"])
    if kind == "ReleaseDrone":
        return ReleaseDrone(raw["droneId"], raw["reason"])
    if kind == "Announce":
        return Announce(raw["eventType"], raw["reason"])
    raise ValueError(f"unknown effect {kind!r} in a delivery's outbox")


def _outbox_json(delivery: Delivery) -> str:
    if not delivery.outbox or delivery.outbox_cause is None:
        return ""
    cause = delivery.outbox_cause
    return json.dumps({"cause": {"messageId": cause.message_id, "traceparent": cause.traceparent,
                                 "correlationId": cause.correlation_id},
                       "effects": [_effect_json(e) for e in delivery.outbox]})


def _outbox(text: str | None) -> tuple[list[Effect], Cause | None]:
    if not text:
        return [], None
    raw = json.loads(text)
    cause = raw["cause"]
    return ([_effect(e) for e in raw["effects"]],
            Cause(cause["messageId"], cause.get("traceparent"), cause.get("correlationId")))


def to_entity(delivery: Delivery) -> dict[str, Any]:
    return {
        "PartitionKey": delivery.delivery_id,
        "RowKey": ROW_KEY,
        "status": delivery.status.value,
        "reason": delivery.reason or "",
        "package": _outcome_json(delivery.package),
        "drone": _outcome_json(delivery.drone),
        "history": json.dumps([{"status": h.status, "at": h.at.isoformat(), "by": h.by, "reason": h.reason,
                                "detail": h.detail} for h in delivery.history]),
        "processed": json.dumps(delivery.processed.ids),
        "requestFingerprint": delivery.request_fingerprint or "",
        "createdAt": delivery.created_at.isoformat() if delivery.created_at else "",
        "outbox": _outbox_json(delivery),
    }


def from_entity(entity: Any) -> Delivery:
    history = [HistoryEntry(h["status"], datetime.fromisoformat(h["at"]), h["by"], h.get("reason"), h.get("detail"))
               for h in json.loads(entity.get("history") or "[]")]
    outbox, outbox_cause = _outbox(entity.get("outbox"))
    return Delivery(
        delivery_id=entity["PartitionKey"],
        status=Status(entity["status"]),
        reason=entity.get("reason") or None,
        package=_outcome(entity.get("package")),
        drone=_outcome(entity.get("drone")),
        history=history,
        processed=ProcessedMessages(json.loads(entity.get("processed") or "[]")),
        request_fingerprint=entity.get("requestFingerprint") or None,
        created_at=datetime.fromisoformat(entity["createdAt"]) if entity.get("createdAt") else None,
        outbox=outbox,
        outbox_cause=outbox_cause,
        version=entity.metadata["etag"],
    )


class TableDeliveryRepository:
    """Table ``deliveries``: PartitionKey = delivery id, RowKey = ``delivery``."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get(self, delivery_id: str) -> Delivery | None:
        try:
            return from_entity(self._table.get_entity(delivery_id, ROW_KEY))
        except ResourceNotFoundError:
            return None

    def add(self, delivery: Delivery) -> None:
        try:
            meta = self._table.create_entity(to_entity(delivery))
        except ResourceExistsError:
            raise DeliveryExists(delivery.delivery_id) from None
        delivery.version = meta["etag"]

    def save(self, delivery: Delivery) -> None:
        if delivery.version is None:
            try:
                self.add(delivery)
            except DeliveryExists:
                raise ConcurrencyConflict(f"delivery {delivery.delivery_id} was created concurrently") from None
            return
        try:
            meta = self._table.update_entity(to_entity(delivery), mode=UpdateMode.REPLACE, etag=delivery.version,
                                             match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            raise ConcurrencyConflict(f"delivery {delivery.delivery_id} changed since it was read") from None
        delivery.version = meta["etag"]
