"""The local trace store (devstack.traces): OTLP/HTTP in protobuf (from the real OpenTelemetry
exporter) and JSON, garbage refused with 400, bounded in size and in memory."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from devstack.stack import free_port
from devstack.traces import MAX_BODY, TraceServer, TraceStore
from ops.sources import StoreApi, StoreFile


@pytest.fixture
def server() -> Iterator[TraceServer]:
    running = TraceServer(free_port(), TraceStore(max_spans=50))
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running
    running.shutdown()
    running.server_close()


def url(server: TraceServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def post(server: TraceServer, body: bytes, content_type: str) -> tuple[int, bytes]:
    request = urllib.request.Request(f"{url(server)}/v1/traces", data=body, method="POST",
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_spans_from_the_opentelemetry_exporter_are_kept_with_their_tree(server: TraceServer) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "test-app"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{url(server)}/v1/traces")))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("invocation", kind=SpanKind.CONSUMER,
                                      attributes={"choreography.correlation_id": "d-1", "faas.name": "f",
                                                  "messaging.servicebus.message.delivery_count": 2}) as parent:
        with tracer.start_as_current_span("send q", kind=SpanKind.PRODUCER) as child:
            child.set_status(StatusCode.ERROR, "broken")
    provider.shutdown()

    api = StoreApi(url(server))
    [found] = api.traces("d-1")
    assert found["spans"] == 2
    spans = {s.name: s for s in api.trace(found["traceId"])}
    assert spans["send q"].parentSpanId == spans["invocation"].spanId == f"{parent.get_span_context().span_id:016x}"
    assert spans["invocation"].kind == "CONSUMER" and spans["send q"].kind == "PRODUCER"
    assert spans["send q"].status == "ERROR" and spans["send q"].statusMessage == "broken"
    assert spans["invocation"].attributes["messaging.servicebus.message.delivery_count"] == 2
    assert spans["invocation"].service == "test-app"
    assert spans["invocation"].endNs >= spans["invocation"].startNs > 0


def test_otlp_json_is_accepted() -> None:
    store = TraceStore()
    server = TraceServer(free_port(), store)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        document = {"resourceSpans": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "json-app"}}]},
            "scopeSpans": [{"spans": [{
                "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                "parentSpanId": "", "name": "GET /", "kind": 2,
                "startTimeUnixNano": "1544712660000000000", "endTimeUnixNano": "1544712661000000000",
                "attributes": [{"key": "choreography.payment_file", "value": {"stringValue": "ACME/a.csv"}},
                               {"key": "n", "value": {"intValue": "42"}}],
                "status": {"code": 2, "message": "bad"}}]}]}]}
        status, body = post(server, json.dumps(document).encode(), "application/json")
        assert (status, json.loads(body)) == (200, {})
        [span] = store.trace("5b8efff798038103d269b633813fc60c")
        assert (span.kind, span.status, span.service, span.parentSpanId) == ("SERVER", "ERROR", "json-app", None)
        assert span.attributes["n"] == 42 and span.duration_ms == 1000
        assert store.traces("ACME/a.csv")[0]["traceId"] == span.traceId
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("body", "content_type", "says"), [
    (b"\xff\xfe not protobuf", "application/x-protobuf", "protobuf"),
    (b"{not json", "application/json", "not JSON"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}', "application/json", "traceId"),
    (b"{}", "text/plain", "content type"),
])
def test_garbage_gets_400_with_a_reason(server: TraceServer, body: bytes, content_type: str, says: str) -> None:
    status, answer = post(server, body, content_type)
    assert status == 400 and says in json.loads(answer)["error"]
    assert server.store.count() == 0


def test_an_oversized_export_gets_413_and_the_store_stays_bounded(server: TraceServer) -> None:
    # refused on its Content-Length, before a byte of the body is read
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    connection.putrequest("POST", "/v1/traces")
    connection.putheader("Content-Type", "application/x-protobuf")
    connection.putheader("Content-Length", str(MAX_BODY + 1))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and str(MAX_BODY) in json.loads(response.read())["error"]
    connection.close()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{url(server)}/v1/traces")))
    for i in range(120):
        with provider.get_tracer("test").start_as_current_span(f"span {i}", attributes={
                "choreography.correlation_id": f"d-{i}"}):
            pass
    provider.shutdown()
    assert server.store.count() == 50  # the newest 50 (max_spans); the oldest forgotten
    names = {s.name for s in server.store.spans(1000)}
    assert "span 119" in names and "span 0" not in names
    assert server.store.traces("d-0") == [] and server.store.traces("d-119")


def test_the_store_file_outlives_the_receiver(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "traces.sqlite"
    store = TraceStore(path)
    server = TraceServer(free_port(), store)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
        endpoint=f"http://127.0.0.1:{server.server_address[1]}/v1/traces")))
    with provider.get_tracer("test").start_as_current_span("kept", attributes={"choreography.correlation_id": "d-x"}):
        pass
    provider.shutdown()
    server.shutdown()
    server.server_close()
    store.close()
    [found] = StoreFile(path).traces("d-x")
    assert [s.name for s in StoreFile(path).trace(found["traceId"])] == ["kept"]
