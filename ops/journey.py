"""One delivery's (or payment file's) journey from its spans: ``python -m ops trace``.

The timeline shows the hops a reader cares about -- each function invocation and each message it
sent -- indented by causation (a message under the invocation that sent it, the invocation it
triggered under the message); the SDK's own spans (storage calls, AMQP sends) stay in ``--json``
and behind ``--all``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from choreography.entities import DEADLETTER_QUEUE
from devstack.traces import SpanRecord

from .sources import SpanSource

TYPE = "choreography.message.type"
OUTCOME = "choreography.outcome"
REASON = "choreography.reason_code"
DELIVERY_COUNT = "messaging.servicebus.message.delivery_count"
FUNCTION = "faas.name"
SCHEDULED_FOR = "choreography.scheduled_for"
# Commands and events that undo work already done (the sagas' compensations).
COMPENSATIONS = frozenset({"CancelPackage", "PackageCancelled", "CompensatePaymentFile"})


class UnknownJourney(LookupError):
    """No trace names this id."""


@dataclass(frozen=True)
class Journey:
    key: str
    trace_id: str
    spans: list[SpanRecord]
    other_traces: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"traceId": self.trace_id, "spans": [_json_span(s) for s in self.spans]}


def _json_span(span: SpanRecord) -> dict[str, Any]:
    return {"traceId": span.traceId, "spanId": span.spanId, "parentSpanId": span.parentSpanId, "name": span.name,
            "service": span.service, "kind": span.kind, "start": span.startNs,
            "durationMs": round(span.duration_ms, 3), "status": span.status, "attributes": span.attributes}


def find(source: SpanSource, key: str) -> Journey:
    """The journey of ``key`` (a delivery id, a payment file id, or ``clientId/fileName``): the trace
    with the most spans among those naming it (a resubmission answered 409 has its own, short one)."""
    found = source.traces(key)
    if not found:
        raise UnknownJourney(f"no trace names {key!r} in {source.description}")
    best = max(found, key=lambda t: (int(t["spans"]), int(t["start"])))
    others = [str(t["traceId"]) for t in found if t["traceId"] != best["traceId"]]
    return Journey(key, str(best["traceId"]), source.trace(str(best["traceId"])), others)


def is_hop(span: SpanRecord) -> bool:
    """A function invocation, or a message the app sent."""
    return FUNCTION in span.attributes or (span.kind == "PRODUCER" and TYPE in span.attributes)


def hop_tree(journey: Journey, show_all: bool = False) -> list[tuple[SpanRecord, int]]:
    """The hops (every span with ``show_all``) in reading order, each with its depth: a message
    under the invocation that sent it, the invocation it triggered under the message."""
    spans = journey.spans if show_all else [s for s in journey.spans if is_hop(s)]
    shown = {s.spanId for s in spans}
    by_id = {s.spanId: s for s in journey.spans}
    children: dict[str | None, list[SpanRecord]] = {}
    for span in spans:
        children.setdefault(_shown_parent(span, by_id, shown), []).append(span)
    ordered: list[tuple[SpanRecord, int]] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s.startNs):
            ordered.append((span, depth))
            walk(span.spanId, depth + 1)

    walk(None, 0)
    return ordered


def timeline(journey: Journey, show_all: bool = False) -> str:
    hops = hop_tree(journey, show_all)
    if not hops:
        return f"{journey.key}: trace {journey.trace_id} has no spans"
    by_id = {s.spanId: s for s in journey.spans}
    start = min(s.startNs for s in journey.spans)
    end = max(s.endNs for s in journey.spans)
    invocations = [s for s, _ in hops if FUNCTION in s.attributes]
    orphans = [s for s in journey.spans if s.parentSpanId and s.parentSpanId not in by_id]
    lines = [f"{journey.key}  trace {journey.trace_id}  {len(invocations)} invocations, "
             f"{len(journey.spans)} spans, {(end - start) / 1e6:,.0f} ms"
             + (f", {len(orphans)} spans whose parent is missing" if orphans else ""),
             f"{'start':>10} {'took':>9}  {'service':<16} hop"]
    for span, depth in hops:
        offset = (span.startNs - start) / 1e6
        lines.append(f"{offset:>+9,.0f}ms {span.duration_ms:>7,.1f}ms  {span.service:<16} "
                     f"{'  ' * depth}{describe(span)}")
    if journey.other_traces:
        lines.append(f"also named by {len(journey.other_traces)} other trace(s): {', '.join(journey.other_traces)}")
    return "\n".join(lines)


def _shown_parent(span: SpanRecord, by_id: dict[str, SpanRecord], shown: set[str]) -> str | None:
    parent = span.parentSpanId
    while parent is not None and parent not in shown:
        ancestor = by_id.get(parent)
        parent = ancestor.parentSpanId if ancestor else None
    return parent


def marks(span: SpanRecord) -> dict[str, bool]:
    """What a reader must not miss in a hop: a retry, a dead letter, a compensation, an error."""
    a = span.attributes
    count, attempt = a.get(DELIVERY_COUNT), a.get("choreography.attempt")
    dead = (a.get(OUTCOME) == "dead-lettered" or a.get("messaging.destination.name") == DEADLETTER_QUEUE.name
            or a.get(FUNCTION) == "remediation_on_dead_letter")
    return {"retry": (isinstance(count, int) and count > 1) or (isinstance(attempt, int) and attempt > 1),
            "deadLetter": bool(dead), "compensation": a.get(TYPE) in COMPENSATIONS,
            "error": span.status == "ERROR" and a.get(OUTCOME) != "dead-lettered"}


def describe(span: SpanRecord) -> str:
    a = span.attributes
    kind = a.get(TYPE)
    if FUNCTION in a:
        text = f"{a[FUNCTION]}" + (f" <- {kind}" if kind else "")
    elif span.kind == "PRODUCER" and kind:
        system = "Event Grid topic " if a.get("messaging.system") == "eventgrid" else ""
        text = f"-> {kind} to {system}{a.get('messaging.destination.name', '?')}"
        if a.get(SCHEDULED_FOR):
            text += f" (scheduled for {str(a[SCHEDULED_FOR])[11:23]})"
    else:
        text = f"{span.kind.lower()} {span.name}"
    notes = []
    if kind in COMPENSATIONS:
        notes.append("compensation")
    count = a.get(DELIVERY_COUNT)
    if isinstance(count, int) and count > 1:
        notes.append(f"retry: delivery {count}")
    attempt = a.get("choreography.attempt")
    if isinstance(attempt, int) and attempt > 1:
        notes.append(f"retry: attempt {attempt}")
    if a.get(OUTCOME):
        notes.append(str(a[OUTCOME]) + (f" {a[REASON]}" if a.get(REASON) else ""))
    elif a.get(REASON):
        notes.append(f"reason {a[REASON]}")
    if span.status == "ERROR" and a.get(OUTCOME) != "dead-lettered":
        notes.append(f"ERROR {span.statusMessage}".strip())
    return text + (f"  [{'; '.join(notes)}]" if notes else "")
