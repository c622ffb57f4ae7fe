"""The choreography map, derived from the code: ``python -m ops map``.

Who consumes what comes from the triggers the app registers (``app.get_functions()``), the
Service Bus topology the emulator loads (``emulators/servicebus/config.json``: subscriptions and
their label filters) and the Event Grid subscriptions of the stack
(``devstack/eventgrid-subscriptions.json``); who sends what comes from each function's
``@flow(...)`` declaration, which the publisher enforces at run time. Drawn as Mermaid
``flowchart LR``. Flags a message type nobody consumes and a trigger nothing in the app feeds.

``--observed`` draws instead the edges seen in the trace store, with counts and p50/p99 latency
from the send to the start of the invocation it triggered.
"""

from __future__ import annotations

import functools
import json
import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from choreography.entities import DEADLETTER_QUEUE
from choreography.flow import declared
from devstack.traces import SpanRecord

ROOT = Path(__file__).resolve().parents[1]
SERVICEBUS_CONFIG = ROOT / "emulators" / "servicebus" / "config.json"
EVENTGRID_SUBSCRIPTIONS = ROOT / "devstack" / "eventgrid-subscriptions.json"
README_START, README_END = "<!-- choreography-map:start -->", "<!-- choreography-map:end -->"


@functools.cache
def app_functions() -> tuple[Any, ...]:
    """The app's functions (``app.get_functions()``), once per process: a second call on the same
    app raises in azure-functions."""
    import function_app

    return tuple(function_app.app.get_functions())


@dataclass(frozen=True)
class Trigger:
    function: str
    service: str
    kind: str          # http | servicebus | eventgrid | blob | other
    entity: str        # queue or topic name, Event Grid function, blob path, route
    subscription: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Edge:
    source: str        # the sending function
    message_type: str
    destination: str   # "queue X", "topic X", "eventgrid X"
    target: str | None  # the consuming function; None: nobody in the app


@dataclass
class Choreography:
    triggers: list[Trigger]
    edges: list[Edge]
    unconsumed: list[Edge] = field(default_factory=list)   # Service Bus messages no function receives
    external: list[Edge] = field(default_factory=list)     # Event Grid events for subscribers outside the app
    unfed: list[Trigger] = field(default_factory=list)     # message triggers no function sends to

    def pairs(self) -> set[tuple[str, str, str]]:
        return {(e.source, e.message_type, e.target) for e in self.edges if e.target}


# ``(<labels> AND ResubmitTo IS NULL) OR ResubmitTo = '<subscription>'``: the labels, plus the
# copies remediation sends back to this subscription alone (not an edge of the choreography).
_RESUBMISSION = re.compile(r"^\s*\((?P<labels>.*)\s+AND\s+ResubmitTo\s+IS\s+NULL\s*\)\s+OR\s+"
                           r"ResubmitTo\s*=\s*'[^']*'\s*$", re.IGNORECASE)
DEAD_LETTERS = "dead letters"


def _label_filter(rules: list[dict[str, Any]] | None) -> set[str] | None:
    """The labels a subscription accepts (None: all)."""
    if not rules:
        return None
    labels: set[str] = set()
    for rule in rules:
        props = rule.get("Properties", {})
        sql = (props.get("SqlFilter") or {}).get("SqlExpression", "")
        resubmittable = _RESUBMISSION.match(sql)
        if resubmittable:
            sql = resubmittable.group("labels")
        correlation = (props.get("CorrelationFilter") or {}).get("Label")
        if correlation:
            labels.add(correlation)
        elif re.fullmatch(r"\s*sys\.Label\s*(=|IN)\s*\(?[^)]*\)?\s*", sql, re.IGNORECASE):
            labels.update(re.findall(r"'([^']*)'", sql))
        else:
            return None  # a filter this map cannot read: assume it lets everything through
    return labels


def dead_letter_forwarding(config: dict[str, Any]) -> dict[tuple[str, str | None], str]:
    """(queue or topic, subscription or None) -> the queue its dead letters are forwarded to."""
    found: dict[tuple[str, str | None], str] = {}
    for namespace in config["UserConfig"]["Namespaces"]:
        for queue in namespace.get("Queues", []):
            if target := queue.get("Properties", {}).get("ForwardDeadLetteredMessagesTo"):
                found[(queue["Name"], None)] = target
        for topic in namespace.get("Topics", []):
            for sub in topic.get("Subscriptions", []):
                if target := sub.get("Properties", {}).get("ForwardDeadLetteredMessagesTo"):
                    found[(topic["Name"], sub["Name"])] = target
    return found


def subscriptions(config: dict[str, Any]) -> dict[tuple[str, str], set[str] | None]:
    found: dict[tuple[str, str], set[str] | None] = {}
    for namespace in config["UserConfig"]["Namespaces"]:
        for topic in namespace.get("Topics", []):
            for sub in topic.get("Subscriptions", []):
                found[(topic["Name"], sub["Name"])] = _label_filter(sub.get("Rules"))
    return found


def triggers_of(functions: Iterable[Any]) -> list[Trigger]:
    found = []
    for function in functions:
        name = function.get_function_name()
        flow = declared(function.get_user_function())
        service = flow.service if flow else name.split("_")[0]
        binding = function.get_trigger()
        data = binding.get_dict_repr()
        kind = data.get("type", "")
        if kind == "serviceBusTrigger":
            topic, sub = data.get("topicName"), data.get("subscriptionName")
            entity = topic or data.get("queueName", "")
            found.append(Trigger(name, service, "servicebus", entity, sub if topic else None))
        elif kind == "httpTrigger":
            methods = ",".join(str(getattr(m, "value", m)).upper() for m in (data.get("methods") or []))
            found.append(Trigger(name, service, "http", data.get("route", ""), detail=methods))
        elif kind == "eventGridTrigger":
            found.append(Trigger(name, service, "eventgrid", name))
        elif kind == "blobTrigger":
            found.append(Trigger(name, service, "blob", data.get("path", "")))
        else:
            found.append(Trigger(name, service, "other", kind))
    return found


def derive(functions: Iterable[Any] | None = None, servicebus_config: dict[str, Any] | None = None,
           eventgrid_subscriptions: list[dict[str, Any]] | None = None) -> Choreography:
    """The map of an app's ``functions`` (default: :func:`app_functions`); the default topology is
    the emulator's config and the stack's Event Grid subscriptions."""
    if servicebus_config is None:
        servicebus_config = json.loads(SERVICEBUS_CONFIG.read_text())
    if eventgrid_subscriptions is None:
        eventgrid_subscriptions = json.loads(EVENTGRID_SUBSCRIPTIONS.read_text())
    functions = app_functions() if functions is None else tuple(functions)
    triggers = triggers_of(functions)
    filters = subscriptions(servicebus_config)
    by_queue = {t.entity: t for t in triggers if t.kind == "servicebus" and t.subscription is None}
    by_subscription = {(t.entity, t.subscription): t for t in triggers if t.subscription}
    result = Choreography(triggers, [])
    for function in functions:
        flow = declared(function.get_user_function())
        for route in flow.publishes if flow else ():
            d = route.destination
            for message_type in route.types:
                targets: list[str] = []
                if d.kind == "queue" and d.name in by_queue:
                    targets = [by_queue[d.name].function]
                elif d.kind == "topic":
                    targets = [t.function for (topic, sub), t in sorted(by_subscription.items())
                               if topic == d.name and _accepts(filters.get((topic, str(sub))), message_type)]
                elif d.kind == "eventgrid":
                    targets = [s["function"] for s in eventgrid_subscriptions
                               if s["topic"] == d.name and message_type in s.get("includedEventTypes", [message_type])]
                where = f"{d.kind} {d.name}"
                if targets:
                    result.edges.extend(Edge(flow.function, message_type, where, t) for t in targets)  # type: ignore[union-attr]
                else:
                    edge = Edge(flow.function, message_type, where, None)  # type: ignore[union-attr]
                    (result.external if d.kind == "eventgrid" else result.unconsumed).append(edge)
    # Dead letters: the app's own (every Service Bus consumer writes them to ``deadletter``) and
    # the broker's, which each entity forwards there (ForwardDeadLetteredMessagesTo).
    # A blob-triggered step dead-letters the claim check of an upload it rejects.
    forwarding = dead_letter_forwarding(servicebus_config)
    for trigger in triggers:
        if trigger.kind == "blob":
            target = by_queue.get(DEADLETTER_QUEUE.name)
        elif trigger.kind == "servicebus":
            target = by_queue.get(forwarding.get((trigger.entity, trigger.subscription), ""))
        else:
            continue
        if target is not None and target.function != trigger.function:
            result.edges.append(Edge(trigger.function, DEAD_LETTERS, f"queue {target.entity}", target.function))
    fed = {e.target for e in result.edges}
    result.unfed = [t for t in triggers if t.kind in ("servicebus", "eventgrid") and t.function not in fed]
    return result


def _accepts(labels: set[str] | None, message_type: str) -> bool:
    return labels is None or message_type in labels


# -- Mermaid ------------------------------------------------------------------------------------

def _node(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _entry(trigger: Trigger) -> tuple[str, str] | None:
    if trigger.kind == "http":
        return f"http_{_node(trigger.function)}", f'(["HTTP {trigger.detail} /api/{trigger.entity}"])'
    if trigger.kind == "blob":
        return f"blob_{_node(trigger.function)}", f'[("blob {trigger.entity}")]'
    return None


def mermaid(choreography: Choreography, counts: dict[tuple[str, str, str], str] | None = None) -> str:
    """``flowchart LR``: functions grouped by service; an edge per (sender, message type, receiver)."""
    lines = ["flowchart LR"]
    services: dict[str, list[Trigger]] = {}
    for trigger in choreography.triggers:
        services.setdefault(trigger.service, []).append(trigger)
    for service, members in services.items():
        lines.append(f"  subgraph {_node(service)}[{service}]")
        lines.extend(f"    {_node(t.function)}[{t.function}]" for t in members)
        lines.append("  end")
    for trigger in choreography.triggers:
        entry = _entry(trigger)
        if entry:
            node, shape = entry
            lines.append(f"  {node}{shape} --> {_node(trigger.function)}")
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for edge in choreography.edges:
        assert edge.target is not None
        label = edge.message_type
        if counts is not None:
            label += f" {counts.get((edge.source, edge.message_type, edge.target), '')}".rstrip()
        grouped.setdefault((edge.source, edge.target, edge.destination), []).append(label)
    for (source, target, destination), labels in grouped.items():
        via = "" if destination == "observed" else f"<br/>({destination})"
        lines.append(f'  {_node(source)} -->|"{"<br/>".join(labels)}{via}"| {_node(target)}')
    defined: set[str] = set()
    for edge in choreography.external:
        node = f"external_{_node(edge.destination)}"
        shape = "" if node in defined else f'[/"{edge.destination}: subscribers outside the app"/]'
        defined.add(node)
        lines.append(f'  {_node(edge.source)} -.->|"{edge.message_type}"| {node}{shape}')
    lines.extend(f'  {_node(e.source)} -->|"{e.message_type}"| nobody_{_node(e.message_type)}'
                 f'{{{{"!! nobody consumes {e.message_type} on {e.destination}"}}}}' for e in choreography.unconsumed)
    lines.extend(f'  unfed_{_node(t.function)}{{{{"!! nothing in the app feeds"}}}} -.-> {_node(t.function)}'
                 for t in choreography.unfed)
    return "\n".join(lines) + "\n"


def problems(choreography: Choreography) -> list[str]:
    found = [f"nobody consumes {e.message_type} sent by {e.source} to {e.destination}" for e in choreography.unconsumed]
    found += [f"nothing in the app feeds {t.function} ({t.kind} {t.entity}"
              f"{'/' + t.subscription if t.subscription else ''})" for t in choreography.unfed]
    return found


# -- what the trace store saw ------------------------------------------------------------------

@dataclass
class Observed:
    edges: dict[tuple[str, str, str], list[float]]  # (sender, type, receiver) -> latencies in ms

    def labels(self) -> dict[tuple[str, str, str], str]:
        return {edge: f"n={len(ms)} p50 {_percentile(ms, 50):,.0f} ms p99 {_percentile(ms, 99):,.0f} ms"
                for edge, ms in self.edges.items()}


def _percentile(values: list[float], p: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def observe(spans: Iterable[SpanRecord]) -> Observed:
    """Edges seen: an invocation whose parent is a message sent by another invocation."""
    by_id = {s.spanId: s for s in spans}
    edges: dict[tuple[str, str, str], list[float]] = {}
    for span in by_id.values():
        target = span.attributes.get("faas.name")
        producer = by_id.get(span.parentSpanId or "")
        if not target or producer is None or producer.kind != "PRODUCER":
            continue
        sender = by_id.get(producer.parentSpanId or "")
        message_type = producer.attributes.get("choreography.message.type")
        if producer.attributes.get("messaging.destination.name") == DEADLETTER_QUEUE.name:
            message_type = DEAD_LETTERS
        if sender is None or "faas.name" not in sender.attributes or not message_type:
            continue
        key = (str(sender.attributes["faas.name"]), str(message_type), str(target))
        edges.setdefault(key, []).append((span.startNs - producer.startNs) / 1e6)
    return Observed(edges)


def observed_choreography(choreography: Choreography, observed: Observed) -> Choreography:
    """The map with only the edges seen (and any seen edge the code does not declare, flagged by name)."""
    edges = [Edge(s, t, "observed", r) for (s, t, r) in sorted(observed.edges)]
    return Choreography(choreography.triggers, edges)


def readme_block(text: str) -> str:
    return f"{README_START}\n```mermaid\n{text}```\n{README_END}"


def replace_in_readme(readme: str, text: str) -> str:
    start, end = readme.find(README_START), readme.find(README_END)
    if start < 0 or end < 0:
        raise ValueError(f"README has no {README_START} ... {README_END} markers")
    return readme[:start] + readme_block(text) + readme[end + len(README_END):]
