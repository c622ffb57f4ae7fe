"""Table ``remediations``: PartitionKey ``deadletter``, RowKey a hash of the dead letter's id."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from choreography.idempotency import short_hash

from .domain import AuditEntry, DeadLetterRecord, Decision, Outcome, Verdict

PARTITION = "deadletter"
MAX_BODY_CHARS = 60_000  # a Table string property holds 64 KiB


def row_key(dead_letter_id: str) -> str:
    return short_hash(dead_letter_id, 40)


class TableAuditLog:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get(self, dead_letter_id: str) -> AuditEntry | None:
        try:
            return from_entity(self._table.get_entity(PARTITION, row_key(dead_letter_id)))
        except ResourceNotFoundError:
            return None

    def add(self, entry: AuditEntry) -> bool:
        try:
            self._table.create_entity(to_entity(entry))
        except ResourceExistsError:
            return False
        return True

    def set_outcome(self, dead_letter_id: str, outcome: Outcome, note: str = "") -> None:
        self._table.update_entity({"PartitionKey": PARTITION, "RowKey": row_key(dead_letter_id),
                                   "outcome": outcome.value, "note": note}, mode=UpdateMode.MERGE)

    def entries(self, decision: Decision | None = None) -> Iterator[AuditEntry]:
        query = f"PartitionKey eq '{PARTITION}'"
        if decision is not None:
            query += f" and decision eq '{decision.value}'"
        for entity in self._table.query_entities(query):
            yield from_entity(entity)


def to_entity(entry: AuditEntry) -> dict[str, Any]:
    record, verdict = entry.record, entry.verdict
    body = base64.b64encode(record.body).decode()
    properties = json.dumps({str(k): _plain(v) for k, v in record.properties.items()}, default=str)
    entity: dict[str, Any] = {
        "PartitionKey": PARTITION, "RowKey": row_key(record.message_id),
        "messageId": record.message_id, "originalMessageId": record.original_message_id,
        "entity": record.entity, "reason": record.reason, "description": record.description[:4096],
        "messageType": record.message_type or "", "correlationId": record.correlation_id or "",
        "deliveryCount": record.delivery_count if record.delivery_count is not None else -1,
        "firstFailureAt": _iso(record.first_failure_at), "lastFailureAt": _iso(record.last_failure_at),
        "traceparent": record.traceparent or "", "attempt": record.attempt, "compensated": record.compensated,
        "sessionId": record.session_id or "", "contentType": record.content_type or "",
        "properties": properties[:MAX_BODY_CHARS],
        "body": body if len(body) <= MAX_BODY_CHARS else "", "bodyTruncated": len(body) > MAX_BODY_CHARS,
        "decision": verdict.decision.value, "why": verdict.why, "verdictAttempt": verdict.attempt,
        "delaySeconds": verdict.delay.total_seconds(), "decidedAt": entry.decided_at.isoformat(),
        "outcome": entry.outcome.value, "note": entry.note,
    }
    return entity


def from_entity(entity: dict[str, Any]) -> AuditEntry:
    count = entity.get("deliveryCount", -1)
    record = DeadLetterRecord(
        message_id=entity["messageId"], original_message_id=entity["originalMessageId"], entity=entity["entity"],
        reason=entity["reason"], description=entity.get("description", ""),
        message_type=entity.get("messageType") or None, correlation_id=entity.get("correlationId") or None,
        delivery_count=count if count is not None and count >= 0 else None,
        first_failure_at=_time(entity.get("firstFailureAt")), last_failure_at=_time(entity.get("lastFailureAt")),
        traceparent=entity.get("traceparent") or None, attempt=int(entity.get("attempt", 0)),
        compensated=bool(entity.get("compensated")), body=base64.b64decode(entity.get("body") or ""),
        session_id=entity.get("sessionId") or None, content_type=entity.get("contentType") or None,
        properties=json.loads(entity.get("properties") or "{}"))
    verdict = Verdict(Decision(entity["decision"]), entity.get("why", ""), int(entity.get("verdictAttempt", 0)),
                      timedelta(seconds=float(entity.get("delaySeconds", 0))))
    return AuditEntry(record, verdict, datetime.fromisoformat(entity["decidedAt"]), Outcome(entity["outcome"]),
                      entity.get("note", ""))


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
