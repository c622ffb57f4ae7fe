"""The local stack's live view: a page at ``http://127.0.0.1:7072/`` showing the choreography as it runs.

``python -m devstack.view --port 7072 --traces http://127.0.0.1:4318`` (the stack starts it with
``AzureWebJobsStorage`` and ``ServiceBusConnection`` in its environment). It only reads -- the
trace store, Tables ``deliveries``, ``paymentfiles`` and ``remediations``, queue ``deadletter`` --
except for one action, resubmitting a dead letter, which is :meth:`ops.dlq.DeadLetters.resubmit`
(what ``ops dlq resubmit`` does). It binds to 127.0.0.1 only.

* ``GET /``, ``/static/...``  the page (``devstack/static/view``); ``/vendor/mermaid.min.js`` the
  Mermaid bundle pinned in ``tools/mermaid`` (no CDN: the page works offline);
* ``GET /events``  Server-Sent Events: a ``state`` event (the whole picture, see :class:`Collector`)
  every second while someone watches (``version`` goes up when something but the chart changed);
  ``retry: 1000`` so a browser reconnects at once after the view (or the whole stack) restarts;
* ``GET /api/state``  the same picture as JSON; ``GET /api/journey?key=K``  one journey's hops;
* ``POST /api/deadletters/{id}/resubmit`` with ``{"confirm": "<id>"}``;
* ``GET /health``  ``{"instance", "clients": [{"queued", "skipped"}]}``.

It answers only requests addressed to ``127.0.0.1:<port>`` or ``localhost:<port>`` (Host header).

Each event-stream client has a bounded queue (:class:`Hub`): the collector never waits for a
client; a client that does not keep up skips to the newest picture (each event is the whole
picture, so nothing is lost but intermediate frames), and one whose socket stops taking data
for :data:`WRITE_TIMEOUT` seconds is dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from devstack.traces import SpanRecord

ROOT = Path(__file__).resolve().parents[1]
STATIC = Path(__file__).with_name("static") / "view"
MERMAID_JS = ROOT / "tools" / "mermaid" / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
QUEUE_SIZE = 4            # pictures waiting per client before it skips to the newest
WRITE_TIMEOUT = 10.0      # seconds a client's socket may refuse data before it is dropped
KEEPALIVE = 15.0          # a comment line this often, so proxies and the browser keep the stream
CHART_WINDOW_S = 300      # the chart's last five minutes...
CHART_BUCKET_S = 10       # ...in ten-second buckets
SPAN_CACHE = 50_000       # spans kept in the view's memory (the newest)
ROWS = 60                 # deliveries / files shown, newest first
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}


# -- fan-out to the event-stream clients --------------------------------------------------------

class Client:
    """One event-stream client's bounded queue."""

    def __init__(self, size: int) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue(maxsize=size)
        self.skipped = 0

    def offer(self, event: str) -> None:
        """Never blocks: a full queue loses its oldest picture."""
        while True:
            try:
                self.queue.put_nowait(event)
                return
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.skipped += 1
                except queue.Empty:
                    pass  # the client's writer took one meanwhile: try again


class Hub:
    """Publishes events to every subscribed client without ever waiting for one."""

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._clients: list[Client] = []
        self._lock = threading.Lock()

    def subscribe(self) -> Client:
        client = Client(self.queue_size)
        with self._lock:
            self._clients.append(client)
        return client

    def unsubscribe(self, client: Client) -> None:
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)

    def publish(self, event: str) -> None:
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            client.offer(event)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.offer("")  # wakes its writer, which ends the stream

    def stats(self) -> list[dict[str, int]]:
        with self._lock:
            return [{"queued": c.queue.qsize(), "skipped": c.skipped} for c in self._clients]

    def __len__(self) -> int:
        with self._lock:
            return len(self._clients)


def sse(event: str, data: Mapping[str, Any], event_id: int | None = None) -> str:
    lines = [f"event: {event}"] + ([f"id: {event_id}"] if event_id is not None else [])
    return "\n".join([*lines, f"data: {json.dumps(data, separators=(',', ':'))}", "", ""])


# -- the picture ----------------------------------------------------------------------------------

def _ago(at: datetime | None, now: datetime) -> float | None:
    return round((now - at).total_seconds(), 1) if at else None


def _parse(raw: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(raw)) if raw else None
    except ValueError:
        return None


def delivery_rows(entities: Iterable[Mapping[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Table ``deliveries`` as the page lists it: status, the last hop (by whom), age; newest first."""
    rows = []
    for entity in entities:
        history = json.loads(entity.get("history") or "[]")
        last = history[-1] if history else {}
        created = _parse(entity.get("createdAt")) or _parse(history[0].get("at") if history else None)
        status = str(entity.get("status", ""))
        rows.append({"id": entity["PartitionKey"], "status": status, "reason": entity.get("reason") or None,
                     "hop": f"{last.get('status', '')} by {last.get('by', '?')}" if last else "",
                     "final": status in ("Shipped", "Cancelled"), "ageSeconds": _ago(created, now),
                     "sinceUpdateSeconds": _ago(_parse(last.get("at")), now), "_created": created or now})
    rows.sort(key=lambda r: r.pop("_created"), reverse=True)
    return rows[:ROWS]


def file_rows(entities: Iterable[Mapping[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Table ``paymentfiles``' file records (RowKey ``file-...``): state, the step it is at or failed in, age."""
    rows = []
    for entity in entities:
        received = _parse(entity.get("receivedAt"))
        state = str(entity.get("state", ""))
        rows.append({"id": entity.get("fileId", ""), "name": f"{entity['PartitionKey']}/{entity.get('fileName', '')}",
                     "state": state, "hop": entity.get("failedStep") or state,
                     "groupStatus": entity.get("groupStatus") or None, "final": state in ("Completed", "Rejected"),
                     "ageSeconds": _ago(received, now),
                     "sinceUpdateSeconds": _ago(_parse(entity.get("updatedAt")), now), "_received": received or now})
    rows.sort(key=lambda r: r.pop("_received"), reverse=True)
    return rows[:ROWS]


def _pct(values: list[float], p: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def chart(spans: Iterable[SpanRecord], now_ns: int, window_s: int = CHART_WINDOW_S,
          bucket_s: int = CHART_BUCKET_S) -> list[dict[str, Any]]:
    """Function invocations per second and their p50/p99 duration, per bucket of the last ``window_s``."""
    buckets = window_s // bucket_s
    first = now_ns - buckets * bucket_s * 1_000_000_000
    durations: list[list[float]] = [[] for _ in range(buckets)]
    for span in spans:
        if "faas.name" not in span.attributes or span.startNs < first:
            continue
        index = min(int((span.startNs - first) // (bucket_s * 1_000_000_000)), buckets - 1)
        durations[index].append(span.duration_ms)
    return [{"t": -(buckets - i) * bucket_s, "perSecond": round(len(d) / bucket_s, 2),
             "p50": round(_pct(d, 50), 1) if d else None, "p99": round(_pct(d, 99), 1) if d else None}
            for i, d in enumerate(durations)]


def dead_letter_summary(letters: list[dict[str, Any]], entities: dict[str, int] | None) -> dict[str, Any]:
    """``letters``: :meth:`ops.dlq.Letter.to_json` of every decision; ``entities``: each entity's own
    dead-letter count from the administration API, None when it cannot be asked."""
    by_reason: dict[tuple[str, str], int] = {}
    for letter in letters:
        key = (str(letter["entity"]), str(letter["reason"]))
        by_reason[key] = by_reason.get(key, 0) + 1
    return {"letters": letters,
            "byEntityAndReason": [{"entity": e, "reason": r, "count": n} for (e, r), n in sorted(by_reason.items())],
            "entities": entities}


class Collector:
    """Builds the picture from the stores; the Hub gets a new one when it changed."""

    def __init__(self, traces_url: str, storage: str, servicebus: str, hub: Hub, interval: float = 1.0,
                 dead_letter_interval: float = 3.0) -> None:
        from azure.data.tables import TableServiceClient

        from ops.sources import StoreApi

        self.store = StoreApi(traces_url)
        self.tables = TableServiceClient.from_connection_string(storage)
        self.storage, self.servicebus = storage, servicebus
        self.hub = hub
        self.interval, self.dead_letter_interval = interval, dead_letter_interval
        self.spans: dict[str, SpanRecord] = {}
        self._newest_ns = 0
        self._map: Any = None
        self.dead_letters: dict[str, Any] = dead_letter_summary([], None)
        self.warnings: dict[str, str] = {}
        self.picture: dict[str, Any] = {}
        self.event = ""  # the newest picture as an event, for a client that just (re)connected
        self.version = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._letters: Any = None  # ops.dlq.DeadLetters, open while the view runs
        self._dead_letters_lock = threading.Lock()

    # -- sources --------------------------------------------------------------------------------
    def _refresh_spans(self) -> None:
        # Spans arrive in batches up to a few seconds late: ask again for the last minute.
        since = max(self._newest_ns - 60_000_000_000, 0)
        try:
            fresh = self.store.spans(SPAN_CACHE, since)
            self.warnings.pop("traces", None)
        except (OSError, ValueError) as exc:
            self.warnings["traces"] = f"trace store {self.store.url}: {exc}"
            return
        for span in fresh:
            self.spans[span.spanId] = span
            self._newest_ns = max(self._newest_ns, span.startNs)
        if len(self.spans) > SPAN_CACHE:
            for span in sorted(self.spans.values(), key=lambda s: s.startNs)[: len(self.spans) - SPAN_CACHE]:
                del self.spans[span.spanId]

    def _rows(self, table: str, query: str | None = None) -> list[Any]:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        client = self.tables.get_table_client(table)
        try:
            found = list(client.query_entities(query) if query else client.list_entities())
            self.warnings.pop(table, None)
            return found
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            self.warnings[table] = f"Table {table}: {type(exc).__name__}"
            return []

    def map_text(self) -> str:
        from ops import map as choreography_map

        if self._map is None:
            self._map = choreography_map.derive()
        observed = choreography_map.observe(list(self.spans.values()))
        return choreography_map.mermaid(self._map, observed.labels())

    def _open_dead_letters(self) -> Any:
        from ops import dlq

        return dlq.DeadLetters(self.servicebus, self.storage, dlq.optional_setting(dlq.ADMIN_CONNECTION),
                               dlq.optional_setting(dlq.ADMIN_CERTIFICATE))

    def refresh_dead_letters(self) -> None:
        """What ``ops dlq list --all`` lists, on clients kept open between refreshes (one AMQP
        connection, not one every few seconds); reopened after a failure."""
        now = datetime.now(UTC)
        with self._dead_letters_lock:
            try:
                if self._letters is None:
                    self._letters = self._open_dead_letters()
                self._letters.warnings.clear()
                found = [x.to_json(now) for x in self._letters.letters(include_all=True)]
                warnings = list(self._letters.warnings)
                entities = None if warnings else self._letters.entities()
            except Exception as exc:  # noqa: BLE001 - any failure of one source is shown, the page goes on
                self.warnings["deadletters"] = f"dead letters: {type(exc).__name__}: {str(exc)[:200]}"
                self._close_dead_letters()
                return
        found.sort(key=lambda x: x.get("lastFailureAt") or "", reverse=True)
        with self._lock:
            self.dead_letters = dead_letter_summary(found, entities)
        if warnings:
            self.warnings["deadletters"] = "; ".join(warnings)
        else:
            self.warnings.pop("deadletters", None)

    def _close_dead_letters(self) -> None:
        if self._letters is not None:
            try:
                self._letters.close()
            except Exception:  # noqa: BLE001 - already broken: nothing more to release
                pass
            self._letters = None

    # -- the picture ----------------------------------------------------------------------------
    def build(self) -> dict[str, Any]:
        self._refresh_spans()
        now = datetime.now(UTC)
        deliveries = delivery_rows(self._rows("deliveries"), now)
        files = file_rows(self._rows("paymentfiles", "RowKey ge 'file-' and RowKey lt 'file.'"), now)
        with self._lock:
            dead_letters = self.dead_letters
        return {"deliveries": deliveries, "files": files, "map": self.map_text(),
                "chart": chart(self.spans.values(), time.time_ns()), "deadLetters": dead_letters,
                "warnings": sorted(self.warnings.values())}

    def update(self) -> dict[str, Any]:
        picture = self.build()
        comparable = json.dumps({k: v for k, v in picture.items() if k != "chart"}, sort_keys=True, default=str)
        with self._lock:
            changed = comparable != getattr(self, "_last", None)
            self._last = comparable
            if changed or not self.picture:
                self.version += 1
            self.picture = {**picture, "version": self.version, "at": datetime.now(UTC).isoformat()}
            event = self.event = sse("state", self.picture, self.version)
        self.hub.publish(event)
        return self.picture

    def current(self) -> dict[str, Any]:
        """The newest picture; drawn now if nobody watches the stream (so none is kept fresh)."""
        with self._lock:
            if self.picture and len(self.hub):
                return self.picture
        self.refresh_dead_letters()
        return self.update()

    def run(self) -> None:
        """Pictures only while someone watches (an idle view costs the stack nothing)."""
        last_dead_letters = 0.0
        while not self._stop.is_set():
            if len(self.hub):
                if time.monotonic() - last_dead_letters >= self.dead_letter_interval:
                    self.refresh_dead_letters()
                    last_dead_letters = time.monotonic()
                try:
                    self.update()
                except Exception as exc:  # noqa: BLE001 - the view keeps going; the page shows why
                    self.warnings["view"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            self._wake.wait(self.interval)
            self._wake.clear()

    def poke(self) -> None:
        """Sooner than the next tick (a client just connected, a dead letter was resubmitted)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.tables.close()
        with self._dead_letters_lock:
            self._close_dead_letters()

    def journey(self, key: str) -> dict[str, Any]:
        from ops import journey

        found = journey.find(self.store, key)
        start = min(s.startNs for s in found.spans)
        hops = [{"offsetMs": round((s.startNs - start) / 1e6, 1), "durationMs": round(s.duration_ms, 1),
                 "service": s.service, "depth": depth, "text": journey.describe(s), **journey.marks(s)}
                for s, depth in journey.hop_tree(found)]
        return {"key": key, "traceId": found.trace_id, "hops": hops, "otherTraces": found.other_traces}

    def resubmit(self, letter_id: str) -> str:
        with self._open_dead_letters() as letters:  # its own clients: this runs on a request's thread
            copy: str = letters.resubmit(letters.find(letter_id), datetime.now(UTC))
        self.refresh_dead_letters()
        self.poke()
        return copy


# -- HTTP -----------------------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    server: ViewServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass

    def _foreign_host(self) -> bool:
        """A page on another site that got its name resolved to 127.0.0.1 (DNS rebinding) reaches
        this server as same-origin; its requests still carry that name in Host: refused."""
        port = self.server.server_address[1]
        if self.headers.get("Host", "") in (f"127.0.0.1:{port}", f"localhost:{port}"):
            return False
        self._problem(403, "Forbidden", f"this view answers only to http://127.0.0.1:{port}/")
        return True

    def do_GET(self) -> None:
        if self._foreign_host():
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        routes: dict[str, Callable[[], None]] = {
            "/": lambda: self._file(STATIC / "index.html"),
            "/vendor/mermaid.min.js": lambda: self._file(MERMAID_JS, "run `make venv` (npm ci --prefix tools/mermaid)"),
            "/events": self._events,
            "/api/state": lambda: self._json(200, self.server.collector.current()),
            "/api/journey": lambda: self._journey(query.get("key", "")),
            "/health": lambda: self._json(200, {"status": "ok", "instance": self.server.instance,
                                                "clients": self.server.hub.stats()}),
        }
        if url.path in routes:
            routes[url.path]()
        elif url.path.startswith("/static/"):
            name = url.path.removeprefix("/static/")
            path = (STATIC / name).resolve()
            if STATIC.resolve() not in path.parents:
                self._problem(404, "Not found", f"no such file: {name}")
            else:
                self._file(path)
        else:
            self._problem(404, "Not found", f"no such endpoint: GET {url.path}")

    def do_POST(self) -> None:
        if self._foreign_host():
            return
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 4 or parts[:2] != ["api", "deadletters"] or parts[3] != "resubmit":
            self._problem(404, "Not found", f"no such endpoint: POST {url.path}")
            return
        letter_id = unquote(parts[2])
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 65536))
        # A JSON body naming the letter again: a cross-site form cannot send it, a stray click cannot.
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            self._problem(415, "Unsupported media type", "send application/json: {\"confirm\": \"<id>\"}")
            return
        try:
            confirm = json.loads(body or b"{}").get("confirm")
        except (ValueError, AttributeError):
            confirm = None
        if confirm != letter_id:
            self._problem(400, "Confirmation required", f"the body must be {{\"confirm\": \"{letter_id}\"}}")
            return
        from ops import dlq

        try:
            copy = self.server.collector.resubmit(letter_id)
        except LookupError as exc:
            self._problem(404, "No such dead letter", str(exc))
            return
        except dlq.DlqError as exc:
            self._problem(409, "Cannot resubmit", str(exc))
            return
        self._json(200, {"resubmitted": letter_id, "as": copy})

    def _journey(self, key: str) -> None:
        from ops.journey import UnknownJourney

        if not key:
            self._problem(400, "Missing key", "give ?key=<delivery id, payment file id or clientId/fileName>")
            return
        try:
            self._json(200, self.server.collector.journey(key))
        except UnknownJourney as exc:
            self._problem(404, "No journey", str(exc))

    def _events(self) -> None:
        hub, collector = self.server.hub, self.server.collector
        client = hub.subscribe()
        if collector.event:
            client.offer(collector.event)  # the page fills at once, before the next tick
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "keep-alive")
        self.end_headers()
        self.close_connection = True
        self.connection.settimeout(WRITE_TIMEOUT)
        collector.poke()
        try:
            self.wfile.write(f"retry: 1000\n: view {self.server.instance}\n\n".encode())
            self.wfile.flush()
            while True:
                try:
                    event = client.queue.get(timeout=KEEPALIVE)
                except queue.Empty:
                    event = ": keepalive\n\n"
                if not event:
                    return
                self.wfile.write(event.encode())
                self.wfile.flush()
        except OSError:  # gone, or its socket took nothing for WRITE_TIMEOUT s (TimeoutError)
            return  # dropped
        finally:
            hub.unsubscribe(client)

    def _file(self, path: Path, hint: str = "") -> None:
        if not path.is_file():
            self._problem(404, "Not found", f"{path.relative_to(ROOT)} is missing" + (f": {hint}" if hint else ""))
            return
        self._send(200, path.read_bytes(), _CONTENT_TYPES.get(path.suffix, "application/octet-stream"))

    def _json(self, status: int, document: object) -> None:
        self._send(status, json.dumps(document, default=str).encode(), "application/json")

    def _problem(self, status: int, title: str, detail: str) -> None:
        self._send(status, json.dumps({"type": "about:blank", "title": title, "status": status,
                                       "detail": detail}).encode(), "application/problem+json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


class ViewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, collector: Collector, hub: Hub) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.collector, self.hub = collector, hub
        self.instance = uuid.uuid4().hex[:12]


def main(argv: list[str] | None = None) -> int:
    from choreography.settings import SERVICE_BUS_CONNECTION, STORAGE_CONNECTION

    parser = argparse.ArgumentParser(prog="python -m devstack.view", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=7072)
    parser.add_argument("--traces", default="http://127.0.0.1:4318", help="the trace store's URL")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between pictures")
    args = parser.parse_args(argv)
    hub = Hub()
    collector = Collector(args.traces, os.environ[STORAGE_CONNECTION], os.environ[SERVICE_BUS_CONNECTION], hub,
                          args.interval)
    server = ViewServer(args.port, collector, hub)
    worker = threading.Thread(target=collector.run, name="collector", daemon=True)
    worker.start()
    print(f"live view listening on http://127.0.0.1:{args.port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        hub.close()
        collector.stop()
        server.server_close()
    return 0


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the Stack stops its pieces with SIGTERM: end serve_forever cleanly


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    raise SystemExit(main())
