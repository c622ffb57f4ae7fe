"""Spans read back from Application Insights rows (the shape azure-monitor-query returns for
``ops trace --app-insights``), and the journey drawn from them."""

from __future__ import annotations

import datetime as dt

from devstack.traces import SpanRecord
from ops.journey import Journey, timeline
from ops.sources import spans_from_rows, summarize

T0 = dt.datetime(2026, 12, 5, 10, 0, tzinfo=dt.UTC)
TRACE = "0af7651916cd43dd8448eb211c80319c"


def row(span_id: str, parent: str, name: str, kind: str, offset_ms: int, duration: float,
        **attributes: object) -> dict[str, object]:
    return {"traceId": TRACE, "spanId": span_id, "parentSpanId": parent, "name": name,
            "timestamp": T0 + dt.timedelta(milliseconds=offset_ms), "duration": duration, "success": True,
            "kind": kind, "attributes": attributes, "role": "func-app"}


def test_rows_become_spans_and_a_journey() -> None:
    rows = [
        row("a1", TRACE, "ingestion_submit_delivery", "SERVER", 0, 12.5, **{
            "faas.name": "ingestion_submit_delivery", "choreography.service": "ingestion",
            "choreography.correlation_id": "d-1"}),
        row("b2", "a1", "send deliveries", "PRODUCER", 5, 1.0, **{
            "choreography.message.type": "DeliveryRequested", "messaging.destination.name": "deliveries"}),
        row("c3", "b2", "package_on_delivery_requested", "CONSUMER", 30, 4.0, **{
            "faas.name": "package_on_delivery_requested", "choreography.service": "package",
            "choreography.message.type": "DeliveryRequested",
            "messaging.servicebus.message.delivery_count": 2, "choreography.outcome": "completed"}),
    ]
    spans = spans_from_rows(list(reversed(rows)))
    assert [s.name for s in spans] == ["ingestion_submit_delivery", "send deliveries", "package_on_delivery_requested"]
    root = spans[0]
    assert root.parentSpanId is None  # Application Insights names the trace as the root's parent
    assert (root.service, root.kind, root.duration_ms) == ("ingestion", "SERVER", 12.5)
    assert isinstance(spans[1], SpanRecord) and spans[1].service == "func-app"
    assert summarize(spans) == [{"traceId": TRACE, "spans": 3, "start": root.startNs}]
    text = timeline(Journey("d-1", TRACE, spans, []))
    lines = text.splitlines()
    assert "3 spans" in lines[0] and "2 invocations" in lines[0]
    assert lines[2].endswith("ingestion_submit_delivery")
    assert lines[3].endswith("  -> DeliveryRequested to deliveries")
    assert lines[4].endswith("    package_on_delivery_requested <- DeliveryRequested  [retry: delivery 2; completed]")
