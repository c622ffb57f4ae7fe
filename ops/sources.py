"""Where ``ops`` reads spans: the local trace store (over its HTTP API, or its SQLite file once the
stack has stopped), or Application Insights (``azure-monitor-query``)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from devstack.traces import SpanRecord, TraceStore

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB = ROOT / ".devstack" / "traces.sqlite"
DEFAULT_URL = "http://127.0.0.1:4318"
STORE_SETTING = "OPS_TRACE_STORE"
APP_INSIGHTS_SETTING = "OPS_APP_INSIGHTS"


class NoSource(RuntimeError):
    """No place to read spans from; the message says what was tried."""


class SpanSource(Protocol):
    description: str

    def traces(self, key: str) -> list[dict[str, Any]]:
        """``[{"traceId", "spans", "start"}]`` of the traces naming ``key``, newest first."""
        ...

    def trace(self, trace_id: str) -> list[SpanRecord]: ...

    def spans(self, limit: int) -> list[SpanRecord]: ...


class StoreApi:
    """A running trace store, over its JSON API."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.description = f"trace store {self.url}"

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=30) as response:
            return json.loads(response.read())

    def healthy(self) -> bool:
        try:
            self._get("/health")
            return True
        except (OSError, ValueError):
            return False

    def traces(self, key: str) -> list[dict[str, Any]]:
        return list(self._get(f"/api/traces?key={urllib.parse.quote(key, safe='')}")["traces"])

    def trace(self, trace_id: str) -> list[SpanRecord]:
        return [SpanRecord.from_json(s) for s in self._get(f"/api/traces/{trace_id}")["spans"]]

    def spans(self, limit: int, since_ns: int = 0) -> list[SpanRecord]:
        """The newest ``limit`` spans; with ``since_ns``, only those that started then or later."""
        return [SpanRecord.from_json(s) for s in self._get(f"/api/spans?limit={limit}&since={since_ns}")["spans"]]


class StoreFile:
    """The trace store's SQLite file, read directly (e.g. after ``make demo`` has stopped the stack)."""

    def __init__(self, path: Path) -> None:
        self.store = TraceStore(path)
        self.description = f"trace store file {path}"

    def traces(self, key: str) -> list[dict[str, Any]]:
        return self.store.traces(key)

    def trace(self, trace_id: str) -> list[SpanRecord]:
        return self.store.trace(trace_id)

    def spans(self, limit: int) -> list[SpanRecord]:
        return self.store.spans(limit)


# Application Insights keeps OpenTelemetry spans as requests (SERVER, CONSUMER) and dependencies
# (everything else); the span's attributes are its customDimensions.
_KQL_SPANS = """
union requests, dependencies
| where timestamp > ago({days}d)
| extend kind = iff(itemType == "request", iff(isnotempty(url), "SERVER", "CONSUMER"),
                    iff(type has "Queue Message", "PRODUCER", "CLIENT"))
| project traceId = operation_Id, spanId = id, parentSpanId = operation_ParentId, name, timestamp,
          duration, success, kind, attributes = customDimensions, role = cloud_RoleName
"""


class AppInsights:
    """Spans from an Application Insights resource (``--app-insights <resource id>``), queried with
    ``azure-monitor-query`` as whoever ``DefaultAzureCredential`` finds (``az login``, a managed identity)."""

    def __init__(self, resource_id: str, days: int = 7) -> None:
        from azure.identity import DefaultAzureCredential
        from azure.monitor.query import LogsQueryClient

        self.resource_id = resource_id
        self.days = days
        self.client = LogsQueryClient(DefaultAzureCredential())
        self.description = f"Application Insights {resource_id}"

    def _rows(self, where: str) -> list[dict[str, Any]]:
        query = _KQL_SPANS.format(days=self.days) + where
        result = self.client.query_resource(self.resource_id, query, timespan=timedelta(days=self.days))
        tables = getattr(result, "tables", None) or []
        return [dict(zip(table.columns, row, strict=True)) for table in tables for row in table.rows]

    def traces(self, key: str) -> list[dict[str, Any]]:
        quoted = key.replace("\\", "\\\\").replace('"', '\\"')
        rows = self._rows(f'| where tostring(attributes["choreography.correlation_id"]) == "{quoted}" '
                          f'or tostring(attributes["choreography.payment_file"]) == "{quoted}"')
        return summarize(spans_from_rows(rows))

    def trace(self, trace_id: str) -> list[SpanRecord]:
        if not all(c in "0123456789abcdef" for c in trace_id.lower()):
            return []
        return spans_from_rows(self._rows(f'| where traceId == "{trace_id.lower()}"'))

    def spans(self, limit: int) -> list[SpanRecord]:
        return spans_from_rows(self._rows(f"| take {int(limit)}"))


def spans_from_rows(rows: list[dict[str, Any]]) -> list[SpanRecord]:
    """Application Insights rows (``_KQL_SPANS``) as spans."""
    spans = []
    for row in rows:
        attributes = row.get("attributes") or {}
        if isinstance(attributes, str):
            attributes = json.loads(attributes or "{}")
        start = row["timestamp"]
        start_ns = int(start.timestamp() * 1e9) if hasattr(start, "timestamp") else int(start)
        duration = row.get("duration") or 0.0
        spans.append(SpanRecord(
            traceId=str(row["traceId"]), spanId=str(row["spanId"]),
            parentSpanId=(str(row["parentSpanId"]) if row.get("parentSpanId") not in (None, "", row["traceId"])
                          else None),
            name=str(row["name"]), service=str(attributes.get("choreography.service") or row.get("role") or ""),
            kind=str(row["kind"]), startNs=start_ns, endNs=start_ns + int(float(duration) * 1e6),
            status="ERROR" if row.get("success") in (False, "False") else "UNSET", attributes=dict(attributes)))
    return sorted(spans, key=lambda s: s.startNs)


def summarize(spans: list[SpanRecord]) -> list[dict[str, Any]]:
    by_trace: dict[str, list[SpanRecord]] = {}
    for span in spans:
        by_trace.setdefault(span.traceId, []).append(span)
    found = [{"traceId": t, "spans": len(s), "start": min(x.startNs for x in s)} for t, s in by_trace.items()]
    return sorted(found, key=lambda t: -int(t["start"]))


def open_source(store: str | None = None, app_insights: str | None = None) -> SpanSource:
    """``--app-insights``, else ``--store`` (a URL or a SQLite file), else the running local store
    (``OTEL_EXPORTER_OTLP_ENDPOINT``, default :data:`DEFAULT_URL`), else ``.devstack/traces.sqlite``."""
    app_insights = app_insights or os.environ.get(APP_INSIGHTS_SETTING)
    if app_insights:
        return AppInsights(app_insights)
    store = store or os.environ.get(STORE_SETTING)
    if store:
        if store.startswith(("http://", "https://")):
            return StoreApi(store)
        if not Path(store).exists():
            raise NoSource(f"no trace store file at {store}")
        return StoreFile(Path(store))
    api = StoreApi(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_URL)
    if api.healthy():
        return api
    if DEFAULT_DB.exists():
        return StoreFile(DEFAULT_DB)
    raise NoSource(f"no trace store answers at {api.url} and there is no {DEFAULT_DB.relative_to(ROOT)}: "
                   "start the stack (make up), run make demo, or name one with --store / --app-insights")
