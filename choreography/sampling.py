"""Which spans the app's OpenTelemetry SDK records (imported only when tracing is on)."""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import SpanKind

_HTTP_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "MERGE", "OPTIONS"})


class OneSpanPerSdkCall(Sampler):
    """Parent-based, always on, except for the HTTP request span azure-core opens inside an SDK
    call's own span (``TableClient.update_entity`` > ``PUT``): the call's span already says what
    was done, for how long and how it ended, and the HTTP spans were a third of all spans and of
    what tracing cost (``make bench``)."""

    def __init__(self) -> None:
        self._default = ParentBased(ALWAYS_ON)

    def should_sample(self, parent_context: otel_context.Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Any = None, links: Any = None,
                      trace_state: Any = None) -> SamplingResult:
        if kind is SpanKind.CLIENT and name in _HTTP_METHODS:
            parent = trace.get_current_span(parent_context)
            if getattr(parent, "kind", None) is SpanKind.INTERNAL:
                return SamplingResult(Decision.DROP, None, parent.get_span_context().trace_state)
        return self._default.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return "OneSpanPerSdkCall"
