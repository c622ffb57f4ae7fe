"""The local stack's trace store: an OTLP/HTTP receiver (``POST /v1/traces``, protobuf or JSON)
that keeps spans in SQLite, so a newcomer sees every journey with no account and no extra install.

``python -m devstack.traces --port 4318 [--db .devstack/traces.sqlite]`` (the stack starts it;
without ``--db`` the spans are kept in memory). The app exports to it through the standard
``OTEL_EXPORTER_OTLP_ENDPOINT``; ``python -m ops trace`` and ``ops map --observed`` read it
through a small JSON API:

* ``GET /api/traces?key=K``  the traces whose spans name ``K`` as delivery id, payment file id
  or ``clientId/fileName``, newest first: ``{"traces": [{"traceId", "spans", "start"}]}``;
* ``GET /api/traces/{traceId}``  ``{"traceId", "spans": [...]}`` (see :class:`SpanRecord`);
* ``GET /api/spans?limit=N[&since=NS]``  the newest spans (those starting at or after ``NS`` ns
  since the epoch), for the observed map and the live view;
* ``GET /health``.

Bounded: a request body over :data:`MAX_BODY` is refused with 413, and the store keeps at most
``max_spans`` spans, forgetting the oldest. Garbage gets 400 with a reason.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

MAX_BODY = 16 * 1024 * 1024
DEFAULT_MAX_SPANS = 200_000
KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
STATUSES = {0: "UNSET", 1: "OK", 2: "ERROR"}
# The attributes a journey is looked up by (see choreography.telemetry).
KEY_ATTRIBUTES = ("choreography.correlation_id", "choreography.payment_file")
SERVICE_ATTRIBUTE = "choreography.service"


class BadExport(ValueError):
    """An OTLP request that cannot be read; the message says why."""


@dataclass
class SpanRecord:
    """One span as the store keeps it and ``ops trace --json`` prints it."""

    traceId: str
    spanId: str
    parentSpanId: str | None
    name: str
    service: str
    kind: str
    startNs: int
    endNs: int
    status: str
    statusMessage: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, str]] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return (self.endNs - self.startNs) / 1e6

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SpanRecord:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


# -- decoding ---------------------------------------------------------------------------------

def decode(body: bytes, content_type: str) -> list[SpanRecord]:
    """The spans of an OTLP ``ExportTraceServiceRequest`` in protobuf or JSON encoding."""
    media = content_type.split(";")[0].strip().lower()
    if media == "application/x-protobuf":
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise BadExport(f"not an OTLP protobuf ExportTraceServiceRequest: {exc}") from exc
        return list(_from_protobuf(request))
    if media == "application/json":
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadExport(f"not JSON: {exc}") from exc
        return list(_from_json(document))
    raise BadExport(f"content type {content_type!r}: send application/x-protobuf or application/json")


def _any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind) if kind else None


def _from_protobuf(request: ExportTraceServiceRequest) -> Iterator[SpanRecord]:
    for resource_spans in request.resource_spans:
        resource = {kv.key: _any_value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attributes = {kv.key: _any_value(kv.value) for kv in span.attributes}
                yield SpanRecord(
                    traceId=span.trace_id.hex(), spanId=span.span_id.hex(),
                    parentSpanId=span.parent_span_id.hex() or None, name=span.name,
                    service=str(attributes.get(SERVICE_ATTRIBUTE) or resource.get("service.name") or ""),
                    kind=KINDS.get(span.kind, "UNSPECIFIED"), startNs=span.start_time_unix_nano,
                    endNs=span.end_time_unix_nano, status=STATUSES.get(span.status.code, "UNSET"),
                    statusMessage=span.status.message, attributes=attributes,
                    events=[{"name": e.name, "timeNs": e.time_unix_nano,
                             "attributes": {kv.key: _any_value(kv.value) for kv in e.attributes}} for e in span.events],
                    links=[{"traceId": link.trace_id.hex(), "spanId": link.span_id.hex()} for link in span.links],
                )


def _json_value(value: Mapping[str, Any]) -> Any:
    if "arrayValue" in value:
        return [_json_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return _json_attributes(value["kvlistValue"].get("values", []))
    if "intValue" in value:
        return int(value["intValue"])  # OTLP/JSON sends 64-bit integers as strings
    for key in ("stringValue", "boolValue", "doubleValue", "bytesValue"):
        if key in value:
            return value[key]
    return None


def _json_attributes(items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    return {item["key"]: _json_value(item.get("value", {})) for item in items}


def _hex_id(value: Any, size: int, what: str, optional: bool = False) -> str | None:
    if optional and not value:
        return None
    if not isinstance(value, str) or len(value) != size * 2:
        raise BadExport(f"{what} must be {size * 2} hex digits (OTLP/JSON), got {value!r}")
    try:
        bytes.fromhex(value)
    except ValueError as exc:
        raise BadExport(f"{what} must be {size * 2} hex digits, got {value!r}") from exc
    return value.lower()


def _kind(value: Any) -> str:
    if isinstance(value, str):  # the enum's name, as some JSON encoders write it
        return value.removeprefix("SPAN_KIND_") if value.startswith("SPAN_KIND_") else value
    return KINDS.get(int(value or 0), "UNSPECIFIED")


def _from_json(document: Any) -> Iterator[SpanRecord]:
    try:
        for resource_spans in document["resourceSpans"]:
            resource = _json_attributes(resource_spans.get("resource", {}).get("attributes", []))
            for scope_spans in resource_spans.get("scopeSpans", []):
                for span in scope_spans.get("spans", []):
                    attributes = _json_attributes(span.get("attributes", []))
                    status = span.get("status", {})
                    code = status.get("code", 0)
                    yield SpanRecord(
                        traceId=str(_hex_id(span.get("traceId"), 16, "traceId")),
                        spanId=str(_hex_id(span.get("spanId"), 8, "spanId")),
                        parentSpanId=_hex_id(span.get("parentSpanId"), 8, "parentSpanId", optional=True),
                        name=str(span["name"]),
                        service=str(attributes.get(SERVICE_ATTRIBUTE) or resource.get("service.name") or ""),
                        kind=_kind(span.get("kind", 0)),
                        startNs=int(span["startTimeUnixNano"]), endNs=int(span["endTimeUnixNano"]),
                        status=code.removeprefix("STATUS_CODE_") if isinstance(code, str)
                        else STATUSES.get(int(code), "UNSET"),
                        statusMessage=str(status.get("message", "")), attributes=attributes,
                        events=[{"name": e.get("name", ""), "timeNs": int(e.get("timeUnixNano", 0)),
                                 "attributes": _json_attributes(e.get("attributes", []))}
                                for e in span.get("events", [])],
                        links=[{"traceId": str(link.get("traceId", "")), "spanId": str(link.get("spanId", ""))}
                               for link in span.get("links", [])],
                    )
    except BadExport:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadExport(f"not an OTLP/JSON ExportTraceServiceRequest: {type(exc).__name__}: {exc}") from exc


# -- the store --------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, start_ns INTEGER NOT NULL, record TEXT NOT NULL,
    UNIQUE (trace_id, span_id));
CREATE INDEX IF NOT EXISTS spans_by_trace ON spans (trace_id);
CREATE INDEX IF NOT EXISTS spans_by_start ON spans (start_ns);
CREATE TABLE IF NOT EXISTS keys (key TEXT NOT NULL, trace_id TEXT NOT NULL, PRIMARY KEY (key, trace_id));
"""


class TraceStore:
    """Spans in SQLite (a file, or memory); safe to share between threads."""

    def __init__(self, path: str | Path | None = None, max_spans: int = DEFAULT_MAX_SPANS) -> None:
        self.path = str(path) if path else ":memory:"
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.max_spans = max_spans
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        if path:
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def add(self, spans: Iterable[SpanRecord]) -> int:
        rows = [(s.traceId, s.spanId, s.startNs, json.dumps(s.to_json())) for s in spans]
        keys = {(str(s.attributes[a]), s.traceId) for s in spans for a in KEY_ATTRIBUTES if s.attributes.get(a)}
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO spans (trace_id, span_id, start_ns, record) "
                                 "VALUES (?, ?, ?, ?)", rows)
            self._db.executemany("INSERT OR IGNORE INTO keys (key, trace_id) VALUES (?, ?)", sorted(keys))
            self._forget_oldest()
        return len(rows)

    def _forget_oldest(self) -> None:
        (count,) = self._db.execute("SELECT COUNT(*) FROM spans").fetchone()
        if count > self.max_spans:
            self._db.execute("DELETE FROM spans WHERE id IN (SELECT id FROM spans ORDER BY id LIMIT ?)",
                             (count - self.max_spans,))
            self._db.execute("DELETE FROM keys WHERE trace_id NOT IN (SELECT trace_id FROM spans)")

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM spans").fetchone()[0])

    def traces(self, key: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT s.trace_id, COUNT(*), MIN(s.start_ns) FROM keys k JOIN spans s ON s.trace_id = k.trace_id "
                "WHERE k.key = ? GROUP BY s.trace_id ORDER BY MIN(s.start_ns) DESC", (key,)).fetchall()
        return [{"traceId": t, "spans": n, "start": start} for t, n, start in rows]

    def trace(self, trace_id: str) -> list[SpanRecord]:
        with self._lock:
            rows = self._db.execute("SELECT record FROM spans WHERE trace_id = ? ORDER BY start_ns",
                                    (trace_id.lower(),)).fetchall()
        return [SpanRecord.from_json(json.loads(r)) for (r,) in rows]

    def spans(self, limit: int = 100_000, since_ns: int = 0) -> list[SpanRecord]:
        with self._lock:
            rows = self._db.execute("SELECT record FROM spans WHERE start_ns >= ? ORDER BY id DESC LIMIT ?",
                                    (since_ns, limit)).fetchall()
        return [SpanRecord.from_json(json.loads(r)) for (r,) in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


# -- the receiver -----------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    server: TraceServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass  # one line per export would drown the stack's log

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/v1/traces":
            self._send_json(404, {"error": f"no such endpoint: POST {self.path}; spans go to /v1/traces"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            self._send_json(413, {"error": f"an export of {length} bytes; at most {MAX_BODY}"})
            return
        body = self.rfile.read(length)
        content_type = self.headers.get("Content-Type", "")
        try:
            spans = decode(body, content_type)
        except BadExport as exc:
            self._send_json(400, {"error": str(exc)})
            return
        self.server.store.add(spans)
        if content_type.startswith("application/x-protobuf"):
            self._send(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")
        else:
            self._send_json(200, {})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        store = self.server.store
        if url.path == "/health":
            self._send_json(200, {"status": "ok", "spans": store.count()})
        elif url.path == "/api/traces" and "key" in query:
            self._send_json(200, {"traces": store.traces(query["key"])})
        elif url.path.startswith("/api/traces/"):
            trace_id = url.path.removeprefix("/api/traces/")
            self._send_json(200, {"traceId": trace_id, "spans": [s.to_json() for s in store.trace(trace_id)]})
        elif url.path == "/api/spans":
            limit = int(query.get("limit", "100000")) if query.get("limit", "1").isdigit() else 100_000
            since = int(query["since"]) if query.get("since", "").isdigit() else 0
            self._send_json(200, {"spans": [s.to_json() for s in store.spans(limit, since)]})
        else:
            self._send_json(404, {"error": f"no such endpoint: GET {url.path}"})

    def _send_json(self, status: int, document: object) -> None:
        self._send(status, json.dumps(document).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class TraceServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, store: TraceStore, host: str = "127.0.0.1") -> None:
        super().__init__((host, port), _Handler)
        self.store = store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.traces", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=4318)
    parser.add_argument("--db", default=None, help="SQLite file (default: in memory)")
    parser.add_argument("--max-spans", type=int, default=DEFAULT_MAX_SPANS)
    args = parser.parse_args(argv)
    store = TraceStore(args.db, args.max_spans)
    server = TraceServer(args.port, store)
    print(f"trace store listening on http://127.0.0.1:{args.port} (OTLP/HTTP /v1/traces; "
          f"{args.db or 'in memory'})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
