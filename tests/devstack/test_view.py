"""The live view's event stream and its pictures: a client that does not keep up skips to the newest
picture and is dropped when it stops reading, while the others go on getting theirs; the rows and
the chart the page draws, from Table entities and spans."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.stack import ManagedProcess, Stack, view_command
from devstack.traces import SpanRecord
from devstack.view import QUEUE_SIZE, WRITE_TIMEOUT, Hub, chart, dead_letter_summary, delivery_rows, file_rows
from tests.support.waiting import wait_until


# -- the fan-out, alone ---------------------------------------------------------------------------
def test_a_client_that_never_reads_keeps_only_the_newest_pictures_and_holds_up_nobody() -> None:
    hub = Hub()
    slow, fast = hub.subscribe(), hub.subscribe()
    received = []
    for n in range(100):
        hub.publish(f"picture {n}")  # put_nowait only: returns whatever the slow client does
        received.append(fast.queue.get_nowait())
    assert received == [f"picture {n}" for n in range(100)]
    kept = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
    assert kept == [f"picture {n}" for n in range(100 - QUEUE_SIZE, 100)]
    assert slow.skipped == 100 - QUEUE_SIZE and fast.skipped == 0
    assert hub.stats() == [{"queued": 0, "skipped": 100 - QUEUE_SIZE}, {"queued": 0, "skipped": 0}]
    hub.unsubscribe(slow)
    hub.close()
    assert fast.queue.get_nowait() == ""  # the end of its stream
    assert len(hub) == 0


# -- the pictures ---------------------------------------------------------------------------------
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def _delivery(delivery_id: str, status: str, created: datetime, *hops: tuple[str, str]) -> dict[str, Any]:
    history = [{"status": s, "at": (created + timedelta(seconds=i)).isoformat(), "by": by}
               for i, (s, by) in enumerate(hops)]
    return {"PartitionKey": delivery_id, "status": status, "createdAt": created.isoformat(),
            "history": json.dumps(history)}


def test_deliveries_are_listed_newest_first_with_their_last_hop_and_age() -> None:
    rows = delivery_rows([
        _delivery("old", "Shipped", NOW - timedelta(minutes=2), ("Requested", "ingestion"), ("Shipped", "delivery")),
        _delivery("new", "Scheduling", NOW - timedelta(seconds=5), ("Requested", "ingestion"),
                  ("PackageReady", "package")),
    ], NOW)
    assert [(r["id"], r["status"], r["hop"], r["final"], r["ageSeconds"]) for r in rows] == [
        ("new", "Scheduling", "PackageReady by package", False, 5.0),
        ("old", "Shipped", "Shipped by delivery", True, 120.0)]
    assert rows[0]["sinceUpdateSeconds"] == 4.0


def test_payment_files_show_the_step_they_failed_in() -> None:
    rows = file_rows([{"PartitionKey": "ACME001", "fileId": "f1", "fileName": "a.csv", "state": "Rejected",
                       "failedStep": "Validate", "receivedAt": (NOW - timedelta(seconds=30)).isoformat(),
                       "updatedAt": NOW.isoformat(), "groupStatus": "RJCT"}], NOW)
    assert rows == [{"id": "f1", "name": "ACME001/a.csv", "state": "Rejected", "hop": "Validate",
                     "groupStatus": "RJCT", "final": True, "ageSeconds": 30.0, "sinceUpdateSeconds": 0.0}]


def _invocation(start_s: float, ms: float) -> SpanRecord:
    start = int(start_s * 1e9)
    return SpanRecord("t" * 32, f"{int(start_s * 1000):016x}", None, "f", "svc", "CONSUMER", start,
                      start + int(ms * 1e6), "OK", attributes={"faas.name": "f"})


def test_the_chart_counts_invocations_per_second_and_their_latency_per_bucket() -> None:
    now = 1_000.0
    spans = [_invocation(now - 5, 10), _invocation(now - 4, 30), _invocation(now - 15, 20),
             _invocation(now - 400, 99)]  # older than the window: left out
    points = chart(spans, int(now * 1e9), window_s=60, bucket_s=10)
    assert [p["t"] for p in points] == [-60, -50, -40, -30, -20, -10]
    assert points[-1] == {"t": -10, "perSecond": 0.2, "p50": 20.0, "p99": 29.8}
    assert points[-2] == {"t": -20, "perSecond": 0.1, "p50": 20.0, "p99": 20.0}
    assert all(p["perSecond"] == 0 and p["p50"] is None for p in points[:-2])


def test_dead_letters_are_counted_per_entity_and_reason() -> None:
    letters = [{"entity": "deliveries/subscriptions/package", "reason": "MalformedMessage"}] * 2 + [
        {"entity": "payment-files-validated", "reason": "MaxDeliveryCountExceeded"}]
    summary = dead_letter_summary(letters, None)
    assert summary["byEntityAndReason"] == [
        {"entity": "deliveries/subscriptions/package", "reason": "MalformedMessage", "count": 2},
        {"entity": "payment-files-validated", "reason": "MaxDeliveryCountExceeded", "count": 1}]
    assert summary["entities"] is None  # the administration API could not say


# -- the event stream of a running view -----------------------------------------------------------
@pytest.fixture(scope="module")
def view() -> Iterator[str]:
    """A view on the stack's stores, drawing twenty pictures a second so buffers fill quickly."""
    stack = Stack(with_devhost=False).start()
    env = {"AzureWebJobsStorage": stack.storage_connection, "ServiceBusConnection": stack.servicebus_connection,
           "ServiceBusAdminConnection": stack.servicebus_admin_connection,
           "ServiceBusAdminCertificate": stack.servicebus_admin_certificate}
    process = ManagedProcess("view", [*view_command(stack.ports.view, stack.traces_url), "--interval", "0.05"],
                             env=env).start()
    try:
        process.wait_for_line(r"live view listening on", 60)
        yield f"http://127.0.0.1:{stack.ports.view}"
    finally:
        process.stop()
        stack.stop()


def _get(url: str) -> tuple[int, str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers["Content-Type"], json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], json.loads(exc.read())


def _health(view: str) -> dict[str, Any]:
    status, _, body = _get(f"{view}/health")
    assert status == 200
    return dict(body)


# The view redraws every second; under a loaded full run a picture can take a while.
VIEW_DEADLINE = 120.0


def test_a_client_that_stops_reading_skips_then_is_dropped_while_another_keeps_getting_pictures(view: str) -> None:
    port = int(view.rsplit(":", 1)[1])
    stalled = []
    for _ in range(3):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # before connecting: a small window
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        stalled.append(sock)  # ...and never read from again
    events: list[float] = []
    reading, done = threading.Event(), threading.Event()

    def read() -> None:
        with urllib.request.urlopen(f"{view}/events", timeout=60) as stream:
            for line in stream:
                if line.startswith(b"data: "):
                    events.append(time.monotonic())
                    reading.set()
                if done.is_set():
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        reading.wait(60)
        skipping = wait_until(lambda: [c for c in _health(view)["clients"] if c["skipped"] > 0],
                              "the stalled clients skip pictures", VIEW_DEADLINE)
        assert skipping
        since = time.monotonic()
        wait_until(lambda: len(_health(view)["clients"]) == 1, "the stalled clients are dropped",
                   WRITE_TIMEOUT * 6)
        dropped = time.monotonic()
        # The reader was served while the others were stuck (about WRITE_TIMEOUT s, twenty
        # pictures a second), and after they were dropped.
        assert len([t for t in events if since < t < dropped]) >= 5
        wait_until(lambda: events[-1] > dropped, "a picture after the drop", VIEW_DEADLINE)
    finally:
        for sock in stalled:
            sock.close()
        done.set()
        reader.join(30)


def test_the_view_answers_problems_in_problem_json(view: str) -> None:
    for path in ("/nowhere", "/static/../view.py", "/static/%2e%2e/view.py", "/api/journey",
                 "/api/journey?key=no-such-delivery"):
        status, content_type, problem = _get(view + path)
        assert status in (400, 404) and content_type == "application/problem+json", (path, status, problem)
        assert problem["status"] == status and problem["detail"]
    rebound = urllib.request.Request(f"{view}/api/state", headers={"Host": "attacker.example:80"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(rebound, timeout=30)
    assert refused.value.code == 403
    status, _, picture = _get(f"{view}/api/state")
    assert status == 200 and picture["map"].startswith("flowchart LR")
    assert picture["deliveries"] == [] and len(picture["chart"]) == 30
    wait_until(lambda: not _health(view)["clients"], "no client on the stream", VIEW_DEADLINE)
    _, _, again = _get(f"{view}/api/state")
    assert again["at"] > picture["at"]  # drawn anew: nobody watches the stream to keep one fresh
