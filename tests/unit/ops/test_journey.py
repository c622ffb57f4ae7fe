"""A journey's hops in reading order (what ``ops trace`` prints and the live view draws), and the
marks the page highlights: retries, dead letters, compensations, errors."""

from __future__ import annotations

from typing import Any

from devstack.traces import SpanRecord
from ops.journey import Journey, hop_tree, marks, timeline

TRACE = "a" * 32


def _span(span_id: str, parent: str | None, start: int, kind: str = "CONSUMER", status: str = "OK",
          **attributes: Any) -> SpanRecord:
    return SpanRecord(TRACE, span_id.ljust(16, "0"), parent.ljust(16, "0") if parent else None, "s", "svc", kind,
                      start, start + 1_000_000, status, attributes=attributes)


def test_hops_nest_under_what_caused_them_skipping_the_sdk_spans() -> None:
    root = _span("1", None, 0, "SERVER", **{"faas.name": "ingestion_submit_delivery"})
    sdk = _span("2", "1", 1, "CLIENT")  # a storage call: not a hop
    sent = _span("3", "2", 2, "PRODUCER", **{"choreography.message.type": "DeliveryRequested"})
    handled = _span("4", "3", 5, **{"faas.name": "package_on_delivery_requested"})
    early = _span("5", "1", 1, "PRODUCER", **{"choreography.message.type": "JoinTimeout"})
    hops = hop_tree(Journey("d", TRACE, [root, sdk, sent, handled, early], []))
    assert [(s.spanId[0], depth) for s, depth in hops] == [("1", 0), ("5", 1), ("3", 1), ("4", 2)]
    assert len(hop_tree(Journey("d", TRACE, [root, sdk], []), show_all=True)) == 2
    assert timeline(Journey("d", TRACE, [root, sdk, sent, handled, early], [])).count("\n") == 5


def test_marks_say_retry_dead_letter_compensation_and_error() -> None:
    plain = marks(_span("1", None, 0, **{"faas.name": "f"}))
    assert plain == {"retry": False, "deadLetter": False, "compensation": False, "error": False}
    assert marks(_span("1", None, 0, **{"messaging.servicebus.message.delivery_count": 2}))["retry"]
    assert marks(_span("1", None, 0, **{"choreography.attempt": 3}))["retry"]
    dead = _span("1", None, 0, status="ERROR", **{"choreography.outcome": "dead-lettered"})
    assert marks(dead)["deadLetter"] and not marks(dead)["error"]
    assert marks(_span("1", None, 0, "PRODUCER", **{"messaging.destination.name": "deadletter"}))["deadLetter"]
    assert marks(_span("1", None, 0, "PRODUCER", **{"choreography.message.type": "CancelPackage"}))["compensation"]
    assert marks(_span("1", None, 0, status="ERROR"))["error"]
