"""Where spans go is configuration: each setting installs its exporter, and no setting installs
nothing. Each case runs in a fresh interpreter, since OpenTelemetry's provider is process-global."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json
from opentelemetry import trace
from azure.core.settings import settings
from choreography import telemetry
installed = telemetry.configure(json.loads({env!r}))
provider = trace.get_tracer_provider()
processors = getattr(getattr(provider, "_active_span_processor", None), "_span_processors", ())
exported = [getattr(p, "span_exporter", None) or getattr(p, "_exporter", None) for p in processors]
exporters = sorted(type(e).__name__ for e in exported)
endpoints = sorted(str(getattr(e, "_endpoint", "")) for e in exported if type(e).__name__ == "OTLPSpanExporter")
with telemetry.tracer().start_as_current_span("probe") as span:
    recording = span.is_recording()
print(json.dumps({{"installed": installed, "provider": type(provider).__name__, "recording": recording,
                  "sdk_spans": settings.tracing_implementation() is not None, "exporters": exporters,
                  "endpoints": endpoints}}))
"""
FAKE_AI = ("InstrumentationKey=00000000-0000-0000-0000-000000000000;"
           "IngestionEndpoint=http://127.0.0.1:9/;LiveEndpoint=http://127.0.0.1:9/")


def probe(env: dict[str, str]) -> dict[str, object]:
    import json

    done = subprocess.run([sys.executable, "-c", PROBE.format(env=json.dumps(env))], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_no_setting_no_tracing() -> None:
    assert probe({}) == {"installed": "off", "provider": "ProxyTracerProvider", "recording": False,
                         "sdk_spans": False, "exporters": [], "endpoints": []}


def test_an_otlp_endpoint_exports_over_otlp_with_sdk_call_spans() -> None:
    found = probe({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert found["installed"] == "otlp" and found["recording"] and found["sdk_spans"]
    assert found["exporters"] == ["OTLPSpanExporter"]
    assert found["endpoints"] == ["http://127.0.0.1:9/v1/traces"]


@pytest.mark.slow
def test_an_application_insights_connection_string_uses_microsofts_distro_and_otlp_beside_it() -> None:
    found = probe({"APPLICATIONINSIGHTS_CONNECTION_STRING": FAKE_AI, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    # Whether this one span records is the distro's sampler's call (rate-limited by default).
    assert found["installed"] == "azure-monitor + otlp" and found["provider"] == "TracerProvider"
    assert found["sdk_spans"]
    assert "AzureMonitorTraceExporter" in found["exporters"] and "OTLPSpanExporter" in found["exporters"]
    assert found["endpoints"] == ["http://127.0.0.1:9/v1/traces"]


def test_otel_sdk_disabled_turns_tracing_off_whatever_else_is_set() -> None:
    found = probe({"OTEL_SDK_DISABLED": "True", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
                   "APPLICATIONINSIGHTS_CONNECTION_STRING": FAKE_AI})
    assert found == {"installed": "off", "provider": "ProxyTracerProvider", "recording": False,
                     "sdk_spans": False, "exporters": [], "endpoints": []}


def test_no_op_exporter_makes_spans_and_drops_them() -> None:
    found = probe({"OTEL_TRACES_EXPORTER": "none"})
    assert found["installed"] == "sdk without export" and found["recording"]
    assert found["exporters"] == ["Discard"]


def test_a_stack_without_its_trace_store_turns_off_the_examples_otlp_endpoint() -> None:
    """devhost exports local.settings.json.example (whose OTLP endpoint is the trace store's
    port) under the stack's settings: without a trace store nothing may be sent there."""
    from devhost.settings import apply_to_environment, load_local_settings
    from devstack.stack import Stack

    example = load_local_settings(ROOT / "tests", ROOT / "local.settings.json.example")
    assert example.values.get("OTEL_EXPORTER_OTLP_ENDPOINT"), "the example no longer names an endpoint"
    for with_traces, installed in ((False, "off"), (True, "otlp")):
        env = Stack(with_traces=with_traces).app_settings()
        apply_to_environment(example, {}, env, say=lambda _: None)
        assert probe(env)["installed"] == installed
