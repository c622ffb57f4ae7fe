"""What every AuditLog does, run against the fake (unit) and Table ``remediations`` (integration)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from remediation.domain import AuditEntry, DeadLetterRecord, Decision, Outcome, Verdict
from remediation.ports import AuditLog

T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def record(message_id: str = "dl-1", **changes: object) -> DeadLetterRecord:
    values: dict[str, object] = dict(
        message_id=message_id, original_message_id="DeliveryRequested:d-1",
        entity="deliveries/subscriptions/package", reason="MaxDeliveryCountExceeded",
        description="Message could not be consumed after 5 delivery attempts.", message_type="DeliveryRequested",
        correlation_id="d-1", delivery_count=5, first_failure_at=T0, last_failure_at=T0 + timedelta(seconds=3),
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", attempt=0, compensated=False,
        body=b'{"type": "DeliveryRequested"}', session_id=None, content_type="application/json",
        properties={"type": "DeliveryRequested", "DeadLetterReason": "MaxDeliveryCountExceeded"})
    values.update(changes)
    return DeadLetterRecord(**values)  # type: ignore[arg-type]


def check_audit_log(log: AuditLog) -> None:
    retry = AuditEntry(record("dl-1"), Verdict(Decision.RETRY, "transient", 1, timedelta(seconds=30)), T0)
    park = AuditEntry(record("dl-2/with:odd#chars?", reason="MalformedMessage"), Verdict(Decision.PARK, "unusable"),
                      T0)
    assert log.get("dl-1") is None
    assert log.add(retry) and log.add(park)
    assert not log.add(retry)  # the same dead letter twice: one decision
    assert log.get("dl-1") == retry  # everything kept, body and properties included
    log.set_outcome("dl-1", Outcome.DONE)
    got = log.get("dl-1")
    assert got is not None and got.outcome is Outcome.DONE and got.verdict == retry.verdict
    assert [e.record.message_id for e in log.entries(Decision.PARK)] == ["dl-2/with:odd#chars?"]
    assert {e.record.message_id for e in log.entries()} == {"dl-1", "dl-2/with:odd#chars?"}
