"""The app's sampler: one span per Azure SDK call, the HTTP request inside it left out."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from choreography.sampling import OneSpanPerSdkCall


def test_the_http_span_inside_an_sdk_call_is_dropped_and_everything_else_kept() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=OneSpanPerSdkCall())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("delivery_on_event", kind=SpanKind.CONSUMER):
        with tracer.start_as_current_span("TableClient.update_entity", kind=SpanKind.INTERNAL):
            with tracer.start_as_current_span("PUT", kind=SpanKind.CLIENT) as http:
                assert not http.is_recording()
                assert http.get_span_context().trace_id != 0  # still in the trace (headers carry it)
        with tracer.start_as_current_span("ServiceBus.send", kind=SpanKind.CLIENT):
            pass
        with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT):  # an HTTP call of the app's own
            pass
    provider.shutdown()
    assert sorted(s.name for s in exporter.get_finished_spans()) == [
        "GET", "ServiceBus.send", "TableClient.update_entity", "delivery_on_event"]
