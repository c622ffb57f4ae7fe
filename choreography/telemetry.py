"""OpenTelemetry for the app: where spans go is configuration, never code.

* ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set: Azure Monitor, through Microsoft's distro
  (``azure-monitor-opentelemetry``, which also turns on azure-core's spans for every storage,
  Service Bus and Event Grid call);
* ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set: OTLP over
  HTTP, so Jaeger, the Aspire Dashboard, Grafana Tempo, any collector or the local stack's trace
  store (``devstack.traces``) receives them (SDK calls sampled by :mod:`.sampling`); with both
  set, both receive them;
* neither: the OpenTelemetry API's no-op tracer, whose spans record nothing;
* ``OTEL_TRACES_EXPORTER=none``: spans are made, then dropped (what tracing costs before export);
* ``OTEL_SDK_DISABLED=true`` (OpenTelemetry's own switch): off, whatever else is set.

The journey is carried by the envelope, not by the Functions host: every message's
``traceparent`` is the context of the PRODUCER span that sent it, and the span of the function
invocation it triggers is that span's child. Scheduled messages (timers, retries with backoff)
keep their producer as parent however late they fire, and Event Grid carries the context in the
CloudEvents ``traceparent`` extension (the distributed-tracing extension). With no exporter
configured the envelope still gets a fresh span id in the caller's trace (:func:`child_traceparent`),
so correlation by trace id works with tracing off too.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .settings import Identity
from .tracing import child_traceparent

log = logging.getLogger(__name__)

APPINSIGHTS = "APPLICATIONINSIGHTS_CONNECTION_STRING"
APPINSIGHTS_AUTHENTICATION = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
OTLP_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
TRACES_EXPORTER = "OTEL_TRACES_EXPORTER"
SDK_DISABLED = "OTEL_SDK_DISABLED"
SDK_SPANS = "AZURE_TRACING_ENABLED"
SERVICE_NAME = "choreography-functions"
TRACER = "choreography"

# Attribute names: OpenTelemetry's messaging conventions, and the app's own under ``choreography.``.
MESSAGING_SYSTEM = "messaging.system"
MESSAGING_OPERATION = "messaging.operation.type"
MESSAGING_DESTINATION = "messaging.destination.name"
MESSAGING_SUBSCRIPTION = "messaging.destination.subscription.name"
MESSAGING_MESSAGE_ID = "messaging.message.id"
MESSAGING_CONVERSATION = "messaging.message.conversation_id"
MESSAGING_DELIVERY_COUNT = "messaging.servicebus.message.delivery_count"
MESSAGING_SESSION = "messaging.servicebus.session.id"
FAAS_TRIGGER = "faas.trigger"
FAAS_NAME = "faas.name"
SERVICE = "choreography.service"
MESSAGE_TYPE = "choreography.message.type"
CORRELATION = "choreography.correlation_id"  # the delivery id, or the payment file id
PAYMENT_FILE = "choreography.payment_file"   # clientId/fileName of a payment file
OUTCOME = "choreography.outcome"             # completed | retried | dead-lettered | failed
REASON = "choreography.reason_code"
SCHEDULED_FOR = "choreography.scheduled_for"
ATTEMPT = "choreography.attempt"             # a step's own retry count (scheduled copies), from 1

_propagator = TraceContextTextMapPropagator()
_configured = False
_configure_lock = threading.Lock()


def configure(env: Mapping[str, str] | None = None) -> str:
    """Install the exporters the settings name, once per process; returns what was installed."""
    global _configured
    with _configure_lock:
        if _configured:
            return "configured"
        _configured = True
        env = os.environ if env is None else env
        if env.get(SDK_DISABLED, "").strip().lower() == "true":
            return "off"
        otlp = _otlp_endpoint(env) is not None
        if env.get(TRACES_EXPORTER) == "none":
            _sdk(env, None)
            return "sdk without export"
        if env.get(APPINSIGHTS):
            _azure_monitor(env)
            return "azure-monitor" + (" + otlp" if otlp else "")
        if otlp:
            _otlp(env)
            return "otlp"
        return "off"


def _azure_monitor(env: Mapping[str, str]) -> None:
    from azure.monitor.opentelemetry import configure_azure_monitor

    processors = [_otlp_processor(env)] if _otlp_endpoint(env) else []
    options: dict[str, Any] = {}
    identity = app_insights_identity(env)
    if identity is not None:
        from .connections import credential

        options["credential"] = credential(identity)
    configure_azure_monitor(connection_string=env[APPINSIGHTS], span_processors=processors,
                            logger_name="choreography", **options)


def app_insights_identity(env: Mapping[str, str]) -> Identity | None:
    """The managed identity telemetry is sent with when Application Insights takes Entra ID only
    (``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` = ``Authorization=AAD[;ClientId=...]``, the
    setting App Service documents); None: the connection string alone."""
    parts = dict(part.split("=", 1) for part in env.get(APPINSIGHTS_AUTHENTICATION, "").split(";") if "=" in part)
    if parts.get("Authorization", "").upper() != "AAD":
        return None
    return Identity(credential="managedidentity", client_id=parts.get("ClientId", ""))


def _otlp_endpoint(env: Mapping[str, str]) -> str | None:
    """The traces URL: the signal's own setting, else the base endpoint + ``/v1/traces`` (OTLP spec)."""
    if env.get(OTLP_TRACES_ENDPOINT):
        return env[OTLP_TRACES_ENDPOINT]
    base = env.get(OTLP_ENDPOINT)
    return f"{base.rstrip('/')}/v1/traces" if base else None


def _otlp_processor(env: Mapping[str, str]) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    return BatchSpanProcessor(OTLPSpanExporter(endpoint=_otlp_endpoint(env)))


def _otlp(env: Mapping[str, str]) -> None:
    _sdk(env, _otlp_processor(env))


def _sdk(env: Mapping[str, str], processor: Any) -> None:
    """The OpenTelemetry SDK exporting through ``processor``; None: spans are made and batched as
    usual, then dropped (``OTEL_TRACES_EXPORTER=none``, what the benchmark's no-op exporter measures)."""
    from azure.core.settings import settings
    from azure.core.tracing.ext.opentelemetry_span import OpenTelemetrySpan
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from .sampling import OneSpanPerSdkCall

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    name = env.get("OTEL_SERVICE_NAME") or env.get("WEBSITE_SITE_NAME") or SERVICE_NAME
    provider = TracerProvider(resource=Resource.create({"service.name": name}), sampler=OneSpanPerSdkCall())
    provider.add_span_processor(processor or BatchSpanProcessor(Discard()))
    trace.set_tracer_provider(provider)
    # azure-core's plugin: every SDK call (tables, blobs, Service Bus, Event Grid) becomes a child
    # span; AZURE_TRACING_ENABLED=false (azure-core's own switch) leaves them out.
    if env.get(SDK_SPANS, "true").lower() not in ("false", "0"):
        settings.tracing_implementation = OpenTelemetrySpan


def tracer() -> trace.Tracer:
    configure()
    return trace.get_tracer(TRACER)


def parent_context(traceparent: str | None, tracestate: str | None = None) -> otel_context.Context | None:
    """The context a W3C ``traceparent`` names, or None when it is absent or not valid."""
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    extracted = _propagator.extract(carrier)
    return extracted if trace.get_current_span(extracted).get_span_context().is_valid else None


@contextmanager
def invocation(function: str, service: str, kind: SpanKind, trigger: str,
               traceparent: str | None = None, tracestate: str | None = None,
               attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
    """The span of one function invocation, current while it runs; child of ``traceparent``."""
    attributes = {FAAS_NAME: function, FAAS_TRIGGER: trigger, SERVICE: service,
                  **{k: v for k, v in (attributes or {}).items() if v is not None}}
    with tracer().start_as_current_span(function, context=parent_context(traceparent, tracestate), kind=kind,
                                        attributes=attributes, record_exception=False,
                                        set_status_on_exception=False) as span:
        try:
            yield span
        except BaseException as exc:
            fail(span, exc)
            raise


def fail(span: Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:300]))


def annotate(attributes: Mapping[str, Any]) -> None:
    """Set ``attributes`` on the current span (None values are skipped); free when tracing is off."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})


def mark_failed(description: str) -> None:
    """The current invocation ended in a failure it handled (a dead letter): status ERROR."""
    trace.get_current_span().set_status(Status(StatusCode.ERROR, description[:300]))


def start_producer(destination: str, attributes: Mapping[str, Any], fallback_parent: str | None,
                   service: str | None = None) -> Span:
    """A PRODUCER span for one message, child of the current span (or of ``fallback_parent``
    when no span is current, e.g. a use case called outside a function)."""
    current = trace.get_current_span()
    parent = None if current.get_span_context().is_valid else parent_context(fallback_parent)
    values = {k: v for k, v in attributes.items() if v is not None}
    if service:
        values[SERVICE] = service
    return tracer().start_span(f"send {destination}", context=parent, kind=SpanKind.PRODUCER, attributes=values)


def traceparent_of(span: Span, fallback_parent: str | None) -> str:
    """What an outgoing message carries: ``span``'s context when it records, else a new span id
    in the caller's trace (tracing off)."""
    if span.is_recording():
        carrier: dict[str, str] = {}
        _propagator.inject(carrier, context=trace.set_span_in_context(span))
        return carrier["traceparent"]
    current = trace.get_current_span().get_span_context()
    if current.is_valid:
        return child_traceparent(f"00-{current.trace_id:032x}-{current.span_id:016x}-{current.trace_flags:02x}")
    return child_traceparent(fallback_parent)


def end(spans: list[Span], error: BaseException | None = None) -> None:
    for span in spans:
        if error is not None:
            fail(span, error)
        span.end()
