"""The Service Bus administration API: what ``ServiceBusAdministrationClient`` speaks.

Azure serves it over HTTPS as ATOM entries whose content is a ``QueueDescription``,
``TopicDescription``, ``SubscriptionDescription`` or ``RuleDescription`` (Azure's property names,
ISO 8601 durations).  The emulator serves it on its own port (Microsoft's emulator uses 5300):

* ``GET /$namespaceinfo``, ``GET /$Resources/queues|topics?$skip=&$top=``;
* ``GET|PUT|DELETE /{queue or topic}``; a PUT with ``If-Match: *`` updates, without it creates;
* ``GET /{topic}/subscriptions``, ``GET|PUT|DELETE /{topic}/subscriptions/{name}``;
* ``GET /{topic}/subscriptions/{name}/rules``, ``GET|PUT|DELETE .../rules/{rule}``.

Errors are Azure's: 404 for a missing entity, 409 for an existing one, 400 for an invalid
property, with an ``<Error><Code/><Detail/></Error>`` body the SDK reads.

The port speaks both plain HTTP (what ``UseDevelopmentEmulator=true`` asks for) and HTTPS: the
Python SDK at 7.15.0 builds ``https://`` URLs for the administration client even for the
emulator, so the first byte of each connection decides (0x16 starts a TLS handshake).  The
certificate is self-signed for 127.0.0.1 and localhost, written where ``--admin-cert`` says, so a
client can trust it (``connection_verify=PATH``).

The :class:`Catalog` keeps what the API describes (every property, creation and update times,
rules as declared); the :class:`~.broker.Broker` keeps what it needs to move messages.  Entities
created, changed or deleted here are written to the store and replayed over the configuration
file on the next start.  All broker work runs on the I/O loop's thread through :class:`~.loop.LoopBridge`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import socket
import ssl
import threading
import xml.etree.ElementTree as ET  # noqa: N817 (the usual name)
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

from .broker import ACTIVE, SCHEDULED, Broker, Holder, Topic, now_ms
from .config import (
    MAX_TTL_MS,
    QUEUE_PROPERTIES,
    SUBSCRIPTION_PROPERTIES,
    TOPIC_PROPERTIES,
    ConfigError,
    EntityConfig,
    NamespaceConfig,
    Rule,
    TopicConfig,
    check_name,
    compile_rules,
    parse_duration_ms,
    queue_config,
    subscription_config,
    topic_config,
)
from .loop import LoopBridge

log = logging.getLogger("emulators.servicebus.admin")

ATOM = "http://www.w3.org/2005/Atom"
SB = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"
SB2011 = "http://schemas.microsoft.com/netservices/2011/06/servicebus"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSD = "http://www.w3.org/2001/XMLSchema"
API_VERSION = "2021-05"
# How .NET (and so Azure) writes TimeSpan.MaxValue, the "never" of TTL and auto-delete.
MAX_DURATION = "P10675199DT2H48M5.4775807S"
MAX_REQUEST_BYTES = 1024 * 1024

QUEUE, TOPIC, SUBSCRIPTION = "queue", "topic", "subscription"

# Every property the API accepts and returns, by entity kind, with its XML type.  Read-only ones
# (counts, times, availability) are computed on each answer and ignored when a client sends them.
_COMMON: dict[str, str] = {
    "DefaultMessageTimeToLive": "duration", "AutoDeleteOnIdle": "duration", "Status": "str",
    "EnableBatchedOperations": "bool", "UserMetadata": "str",
}
_PROPERTY_TYPES: dict[str, dict[str, str]] = {
    QUEUE: {**_COMMON, "LockDuration": "duration", "MaxSizeInMegabytes": "int",
            "RequiresDuplicateDetection": "bool", "RequiresSession": "bool",
            "DeadLetteringOnMessageExpiration": "bool", "DuplicateDetectionHistoryTimeWindow": "duration",
            "MaxDeliveryCount": "int", "EnablePartitioning": "bool", "EnableExpress": "bool",
            "ForwardTo": "str", "ForwardDeadLetteredMessagesTo": "str", "MaxMessageSizeInKilobytes": "int"},
    TOPIC: {**_COMMON, "MaxSizeInMegabytes": "int", "RequiresDuplicateDetection": "bool",
            "DuplicateDetectionHistoryTimeWindow": "duration", "SupportOrdering": "bool",
            "EnablePartitioning": "bool", "EnableExpress": "bool", "MaxMessageSizeInKilobytes": "int"},
    SUBSCRIPTION: {**_COMMON, "LockDuration": "duration", "RequiresSession": "bool",
                   "DeadLetteringOnMessageExpiration": "bool", "DeadLetteringOnFilterEvaluationExceptions": "bool",
                   "MaxDeliveryCount": "int", "ForwardTo": "str", "ForwardDeadLetteredMessagesTo": "str"},
}
_BROKER_PROPERTIES = {QUEUE: QUEUE_PROPERTIES, TOPIC: TOPIC_PROPERTIES, SUBSCRIPTION: SUBSCRIPTION_PROPERTIES}
# Azure's defaults, shown for what a client did not set.
_DEFAULTS: dict[str, Any] = {
    "LockDuration": "PT1M", "MaxSizeInMegabytes": 1024, "RequiresDuplicateDetection": False,
    "RequiresSession": False, "DefaultMessageTimeToLive": MAX_DURATION, "DeadLetteringOnMessageExpiration": False,
    "DeadLetteringOnFilterEvaluationExceptions": True, "DuplicateDetectionHistoryTimeWindow": "PT10M",
    "MaxDeliveryCount": 10, "EnableBatchedOperations": True, "Status": "Active", "AutoDeleteOnIdle": MAX_DURATION,
    "EnablePartitioning": False, "EnableExpress": False, "SupportOrdering": True, "MaxMessageSizeInKilobytes": 256,
}
_ORDER = {
    QUEUE: ["LockDuration", "MaxSizeInMegabytes", "RequiresDuplicateDetection", "RequiresSession",
            "DefaultMessageTimeToLive", "DeadLetteringOnMessageExpiration", "DuplicateDetectionHistoryTimeWindow",
            "MaxDeliveryCount", "EnableBatchedOperations", "*counts", "AuthorizationRules", "Status", "ForwardTo",
            "*times",
            "UserMetadata", "SupportOrdering", "AutoDeleteOnIdle", "EnablePartitioning", "EnableExpress",
            "ForwardDeadLetteredMessagesTo", "MaxMessageSizeInKilobytes"],
    TOPIC: ["DefaultMessageTimeToLive", "MaxSizeInMegabytes", "RequiresDuplicateDetection",
            "DuplicateDetectionHistoryTimeWindow", "EnableBatchedOperations", "*counts", "AuthorizationRules",
            "Status", "*times",
            "UserMetadata", "SupportOrdering", "AutoDeleteOnIdle", "EnablePartitioning", "EnableExpress",
            "MaxMessageSizeInKilobytes"],
    SUBSCRIPTION: ["LockDuration", "RequiresSession", "DefaultMessageTimeToLive", "DeadLetteringOnMessageExpiration",
                   "DeadLetteringOnFilterEvaluationExceptions", "*counts", "MaxDeliveryCount",
                   "EnableBatchedOperations", "Status", "ForwardTo", "*times", "UserMetadata",
                   "ForwardDeadLetteredMessagesTo", "AutoDeleteOnIdle"],
}
_STATUSES = {"Active", "Disabled", "SendDisabled", "ReceiveDisabled"}


class AdminError(Exception):
    """A request Azure refuses: the HTTP status and the detail the SDK shows."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


# -- values -------------------------------------------------------------------------------
def iso_duration(ms: int) -> str:
    """Milliseconds as an ISO 8601 duration (``PT1M``, ``P14D``), Azure's "never" for the maximum."""
    if ms >= MAX_TTL_MS:
        return MAX_DURATION
    days, rest = divmod(ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = rest / 1000
    text = "P" + (f"{days}D" if days else "")
    clock = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    if seconds:
        clock += f"{seconds:g}S"
    if clock:
        text += "T" + clock
    return text if text != "P" else "PT0S"


def iso_time(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _typed(name: str, kind: str, text: str) -> Any:
    """An XML element's text as the JSON value Config.json uses for that property."""
    xml_type = _PROPERTY_TYPES[kind][name]
    text = text.strip()
    if xml_type == "bool":
        if text.lower() not in ("true", "false"):
            raise AdminError(400, f"The value '{text}' of property {name} is not a boolean.")
        return text.lower() == "true"
    if xml_type == "int":
        try:
            return int(text)
        except ValueError:
            raise AdminError(400, f"The value '{text}' of property {name} is not an integer.") from None
    if xml_type == "duration":
        try:
            parse_duration_ms(text, name)
        except ConfigError as exc:
            raise AdminError(400, str(exc)) from None
    return text


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xsi_type(element: ET.Element) -> str:
    return _local(element.get(f"{{{XSI}}}type", "")).split(":")[-1]


# -- rules: as declared (Config.json) and as the API describes them -------------------------
TypedValue = list[str]  # [xsd type, text]: round-trips exactly what a client sent


def _python_value(typed: TypedValue) -> Any:
    xsd_type, text = typed
    if xsd_type in ("int", "long", "short", "byte", "unsignedInt", "unsignedLong"):
        return int(text)
    if xsd_type in ("double", "float", "decimal"):
        return float(text)
    if xsd_type == "boolean":
        return text.lower() == "true"
    return text


def _typed_value(value: Any) -> TypedValue:
    if isinstance(value, bool):
        return ["boolean", _text(value)]
    if isinstance(value, int):
        return ["int" if -(2**31) <= value < 2**31 else "long", str(value)]
    if isinstance(value, float):
        return ["double", repr(value)]
    return ["string", str(value)]


_CORRELATION_FIELDS = ["CorrelationId", "MessageId", "To", "ReplyTo", "Label", "SessionId", "ReplyToSessionId",
                       "ContentType"]
_PARAMETER = re.compile(r"@[A-Za-z_][A-Za-z0-9_]*")


def _with_parameters(expression: str, parameters: list[list[Any]]) -> str:
    """A SQL expression with its ``@name`` parameters written in as literals (the filter engine
    takes no parameters; Azure binds them the same way, by value)."""
    if not parameters:
        return expression
    values: dict[str, str] = {}
    for key, xsd_type, text in parameters:
        value = _python_value([xsd_type, text])
        if isinstance(value, bool):
            literal = "TRUE" if value else "FALSE"
        elif isinstance(value, (int, float)):
            literal = repr(value)
        else:
            literal = "'" + str(value).replace("'", "''") + "'"
        values[key if key.startswith("@") else "@" + key] = literal
    return _PARAMETER.sub(lambda m: values.get(m.group(0), m.group(0)), expression)


def rule_from_config(source: dict[str, Any], created_ms: int) -> dict[str, Any]:
    """A Config.json rule in the API's terms (``Filter``/``Action`` with their XML types)."""
    props = {str(k).lower(): v for k, v in (source.get("Properties") or {}).items()}
    kind = str(props.get("filtertype", "Sql")).lower()
    filt: dict[str, Any]
    if kind == "correlation":
        spec = props.get("correlationfilter") or {}
        filt = {"Type": "CorrelationFilter"}
        for key, value in spec.items():
            if str(key).lower() == "properties":
                filt["Properties"] = [[k, *_typed_value(v)] for k, v in (value or {}).items()]
            else:
                name = next((f for f in _CORRELATION_FIELDS if f.lower() == str(key).lower()), "Label")
                filt[name] = value
    else:
        sql = (props.get("sqlfilter") or {}).get("SqlExpression", "1=1")
        filt = {"Type": {"1=1": "TrueFilter", "1=0": "FalseFilter"}.get(sql.replace(" ", ""), "SqlFilter"),
                "SqlExpression": sql}
    action_spec = props.get("action")
    action = ({"Type": "SqlRuleAction", "SqlExpression": action_spec.get("SqlExpression", "")}
              if isinstance(action_spec, dict) else {"Type": "EmptyRuleAction"})
    return {"Name": source.get("Name", "$Default"), "Filter": filt, "Action": action, "CreatedAt": created_ms}


def rule_to_config(rule: dict[str, Any]) -> dict[str, Any]:
    """The API's rule as Config.json declares one, ready for :func:`~.filters.compile_rule`."""
    filt, action = rule["Filter"], rule["Action"]
    props: dict[str, Any]
    if filt["Type"] == "CorrelationFilter":
        spec = {k: v for k, v in filt.items() if k in _CORRELATION_FIELDS and v is not None}
        if filt.get("Properties"):
            spec["Properties"] = {k: _python_value([t, v]) for k, t, v in filt["Properties"]}
        props = {"FilterType": "Correlation", "CorrelationFilter": spec}
    else:
        expression = _with_parameters(filt.get("SqlExpression") or "1=1", filt.get("Parameters") or [])
        props = {"FilterType": "Sql", "SqlFilter": {"SqlExpression": expression}}
    if action["Type"] == "SqlRuleAction":
        props["Action"] = {"SqlExpression": _with_parameters(action.get("SqlExpression") or "",
                                                             action.get("Parameters") or [])}
    return {"Name": rule["Name"], "Properties": props}


def _key_values(parent: ET.Element | None) -> list[list[str]]:
    found: list[list[str]] = []
    if parent is None:
        return found
    for pair in parent:
        key = pair.find(f"{{{SB}}}Key")
        value = pair.find(f"{{{SB}}}Value")
        if key is None or value is None or key.text is None:
            raise AdminError(400, "A key/value pair of the rule has no Key or Value.")
        found.append([key.text, _xsi_type(value) or "string", value.text or ""])
    return found


def parse_rule(element: ET.Element, name: str, created_ms: int) -> dict[str, Any]:
    """A ``RuleDescription`` element as the API's rule dictionary."""
    filt_el = element.find(f"{{{SB}}}Filter")
    filt: dict[str, Any] = {"Type": "TrueFilter", "SqlExpression": "1=1"}
    if filt_el is not None:
        kind = _xsi_type(filt_el) or "SqlFilter"
        if kind == "CorrelationFilter":
            filt = {"Type": kind}
            for child in filt_el:
                tag = _local(child.tag)
                if tag == "Properties":
                    filt["Properties"] = _key_values(child)
                elif tag in _CORRELATION_FIELDS and child.text is not None:
                    filt[tag] = child.text
        elif kind in ("SqlFilter", "TrueFilter", "FalseFilter"):
            default = {"TrueFilter": "1=1", "FalseFilter": "1=0"}.get(kind, "")
            filt = {"Type": kind, "SqlExpression": filt_el.findtext(f"{{{SB}}}SqlExpression") or default,
                    "Parameters": _key_values(filt_el.find(f"{{{SB}}}Parameters"))}
        else:
            raise AdminError(400, f"The filter type '{kind}' is not supported.")
    action_el = element.find(f"{{{SB}}}Action")
    action: dict[str, Any] = {"Type": "EmptyRuleAction"}
    if action_el is not None and _xsi_type(action_el) == "SqlRuleAction":
        action = {"Type": "SqlRuleAction", "SqlExpression": action_el.findtext(f"{{{SB}}}SqlExpression") or "",
                  "Parameters": _key_values(action_el.find(f"{{{SB}}}Parameters"))}
    return {"Name": name, "Filter": filt, "Action": action, "CreatedAt": created_ms}


def _compile(rules: list[dict[str, Any]], where: str) -> list[Rule]:
    try:
        compiled = compile_rules([rule_to_config(r) for r in rules], where) if rules else []
    except ConfigError as exc:
        raise AdminError(400, str(exc)) from None
    except (ValueError, TypeError) as exc:
        raise AdminError(400, f"{where}: {exc}") from None
    return compiled


# -- the catalog --------------------------------------------------------------------------
@dataclass
class Definition:
    """An entity as the API describes it."""

    kind: str
    name: str
    props: dict[str, Any]
    created_ms: int
    updated_ms: int
    rules: list[dict[str, Any]] = field(default_factory=list)  # subscriptions only
    deleted: bool = False

    def document(self) -> str:
        return json.dumps({"kind": self.kind, "name": self.name, "props": self.props, "created": self.created_ms,
                           "updated": self.updated_ms, "rules": self.rules, "deleted": self.deleted})

    @classmethod
    def from_document(cls, text: str) -> Definition:
        doc = json.loads(text)
        return cls(doc["kind"], doc["name"], doc["props"], doc["created"], doc["updated"], doc.get("rules", []),
                   doc.get("deleted", False))


def _props_of(cfg: EntityConfig | TopicConfig) -> dict[str, Any]:
    """The Azure properties of an entity declared in the configuration file."""
    props: dict[str, Any] = {
        "DefaultMessageTimeToLive": iso_duration(cfg.default_ttl_ms),
        "RequiresDuplicateDetection": cfg.requires_duplicate_detection,
        "DuplicateDetectionHistoryTimeWindow": iso_duration(cfg.duplicate_window_ms),
    }
    if isinstance(cfg, EntityConfig):
        props.update({"LockDuration": iso_duration(cfg.lock_duration_ms), "MaxDeliveryCount": cfg.max_delivery_count,
                      "RequiresSession": cfg.requires_session,
                      "DeadLetteringOnMessageExpiration": cfg.dead_lettering_on_expiration})
        if cfg.forward_to:
            props["ForwardTo"] = cfg.forward_to
        if cfg.forward_dead_lettered_to:
            props["ForwardDeadLetteredMessagesTo"] = cfg.forward_dead_lettered_to
    return props


def _sub_path(topic: str, sub: str) -> str:
    return f"{topic.lower()}/subscriptions/{sub.lower()}"


class Catalog:
    """Every entity's description, durable in the store for those the API created or changed.

    Build it before the broker: it replays the stored definitions over ``config`` (created
    entities added, changed ones replaced, deleted ones removed), so the broker starts with the
    namespace as the API last left it and restores messages into it."""

    def __init__(self, config: NamespaceConfig, store: Any, started_ms: int | None = None) -> None:
        self.config = config
        self.store = store
        started = started_ms or now_ms()
        self.definitions: dict[str, Definition] = {}
        for key, qcfg in config.queues.items():
            self.definitions[key] = Definition(QUEUE, qcfg.name, _props_of(qcfg), started, started)
        for key, tcfg in config.topics.items():
            self.definitions[key] = Definition(TOPIC, tcfg.name, _props_of(tcfg), started, started)
            for skey, scfg in tcfg.subscriptions.items():
                rules = [rule_from_config(r.source or {"Name": r.name}, started) for r in scfg.rules]
                self.definitions[f"{key}/subscriptions/{skey}"] = Definition(
                    SUBSCRIPTION, scfg.name, _props_of(scfg), started, started, rules)
        self._replay()

    def _replay(self) -> None:
        stored = [(path, Definition.from_document(doc)) for path, doc in self.store.load_definitions()]
        # Queues and topics first: a subscription needs its topic whatever the order of writes.
        for path, definition in sorted(stored, key=lambda item: item[1].kind == SUBSCRIPTION):
            try:
                self._apply(path, definition)
            except (AdminError, ConfigError) as exc:
                log.warning("stored definition of %s no longer applies, left out: %s", path, exc)

    def _apply(self, path: str, definition: Definition) -> None:
        if definition.kind == QUEUE:
            self.config.queues.pop(path, None)
            if not definition.deleted:
                self.config.queues[path] = build_config(definition)  # type: ignore[assignment]
        elif definition.kind == TOPIC:
            old = self.config.topics.pop(path, None)
            if not definition.deleted:
                topic = build_config(definition)
                assert isinstance(topic, TopicConfig)
                topic.subscriptions = old.subscriptions if old else {}
                self.config.topics[path] = topic
        else:
            topic_key, _, key = path.partition("/subscriptions/")
            parent = self.config.topics.get(topic_key)
            if parent is None:
                return
            parent.subscriptions.pop(key, None)
            if not definition.deleted:
                parent.subscriptions[key] = build_config(definition)  # type: ignore[assignment]
        if definition.deleted:
            self.definitions.pop(path, None)
        else:
            self.definitions[path] = definition

    def save(self, path: str, definition: Definition) -> None:
        self.store.save_definition(path, definition.document())
        if definition.deleted:
            self.definitions.pop(path, None)
        else:
            self.definitions[path] = definition


def build_config(definition: Definition) -> EntityConfig | TopicConfig:
    """The broker's settings for a definition; :class:`AdminError` 400 for an invalid property."""
    known = _BROKER_PROPERTIES[definition.kind]
    props = {k: v for k, v in definition.props.items() if k in known}
    where = f"{definition.kind} {definition.name!r}"
    try:
        if definition.kind == TOPIC:
            return topic_config(definition.name, props, where)
        if definition.kind == QUEUE:
            return queue_config(definition.name, props, where)
        cfg = subscription_config(definition.name, props, where)
    except ConfigError as exc:
        raise AdminError(400, str(exc)) from None
    cfg.rules = _compile(definition.rules, where)
    return cfg


def _validate(kind: str, props: dict[str, Any]) -> None:
    """Azure's limits on property values (Standard tier)."""
    def ms(name: str) -> int | None:
        return parse_duration_ms(props[name], name) if name in props else None

    lock = ms("LockDuration")
    if lock is not None and not 5_000 <= lock <= 300_000:
        raise AdminError(400, "The supplied lock time is not in the allowed range of 00:00:05 to 00:05:00. "
                              "Parameter name: LockDuration")
    window = ms("DuplicateDetectionHistoryTimeWindow")
    if window is not None and not 20_000 <= window <= 7 * 86_400_000:
        raise AdminError(400, "The value supplied for DuplicateDetectionHistoryTimeWindow must be between "
                              "00:00:20 and 7.00:00:00.")
    idle = ms("AutoDeleteOnIdle")
    if idle is not None and idle < 300_000:
        raise AdminError(400, "The minimum allowed value for AutoDeleteOnIdle is 5 minutes.")
    ttl = ms("DefaultMessageTimeToLive")
    if ttl is not None and ttl < 1_000:
        raise AdminError(400, "The minimum allowed value for DefaultMessageTimeToLive is 1 second.")
    if props.get("MaxMessageSizeInKilobytes", _DEFAULTS["MaxMessageSizeInKilobytes"]) != 256:
        raise AdminError(400, "MaxMessageSizeInKilobytes can be set only on a Premium namespace; this one is "
                              "Standard (256 KB per message).")
    for name in ("MaxDeliveryCount", "MaxSizeInMegabytes"):
        if name in props and props[name] < 1:
            raise AdminError(400, f"The value supplied for {name} must be greater than zero.")
    if props.get("Status", "Active") not in _STATUSES:
        raise AdminError(400, f"The value '{props['Status']}' is not a valid entity status.")
    if len(str(props.get("UserMetadata", ""))) > 1024:
        raise AdminError(400, "UserMetadata is longer than 1024 characters.")


# -- rendering ------------------------------------------------------------------------------
@dataclass
class Counts:
    active: int = 0
    dead_letter: int = 0
    scheduled: int = 0
    total: int = 0
    size: int = 0
    last_enqueued_ms: int = 0

    def add(self, holder: Holder | None, dead: bool = False) -> None:
        if holder is None:
            return
        for msg in holder.messages.values():
            self.total += 1
            self.size += msg.size
            self.last_enqueued_ms = max(self.last_enqueued_ms, msg.enqueued_ms)
            if dead:
                self.dead_letter += 1
            elif msg.state == ACTIVE:
                self.active += 1
            elif msg.state == SCHEDULED:
                self.scheduled += 1


def _element(name: str, value: Any) -> str:
    return f"<{name}>{escape(_text(value))}</{name}>"


def _rule_xml(rule: dict[str, Any]) -> str:
    def pairs(items: list[list[str]]) -> str:
        return "".join(
            f"<KeyValueOfstringanyType><Key>{escape(k)}</Key><Value xmlns:d6p1=\"{XSD}\" i:type=\"d6p1:{t}\">"
            f"{escape(v)}</Value></KeyValueOfstringanyType>" for k, t, v in items)

    filt, action = rule["Filter"], rule["Action"]
    if filt["Type"] == "CorrelationFilter":
        inner = "".join(_element(f, filt[f]) for f in _CORRELATION_FIELDS if filt.get(f) is not None)
        inner += f"<Properties>{pairs(filt.get('Properties') or [])}</Properties>"
    else:
        inner = (_element("SqlExpression", filt.get("SqlExpression", "1=1"))
                 + "<CompatibilityLevel>20</CompatibilityLevel>"
                 + (f"<Parameters>{pairs(filt['Parameters'])}</Parameters>" if filt.get("Parameters") else ""))
    if action["Type"] == "SqlRuleAction":
        action_xml = (f'<Action i:type="SqlRuleAction">{_element("SqlExpression", action.get("SqlExpression", ""))}'
                      "<CompatibilityLevel>20</CompatibilityLevel>"
                      + (f"<Parameters>{pairs(action['Parameters'])}</Parameters>" if action.get("Parameters") else "")
                      + "</Action>")
    else:
        action_xml = '<Action i:type="EmptyRuleAction"/>'
    return (f'<Filter i:type="{filt["Type"]}">{inner}</Filter>{action_xml}'
            f"{_element('CreatedAt', iso_time(rule.get('CreatedAt') or now_ms()))}{_element('Name', rule['Name'])}")


class AdminApi:
    """Request → response for the administration API; runs on the broker's thread."""

    def __init__(self, broker: Broker, catalog: Catalog) -> None:
        self.broker = broker
        self.catalog = catalog

    # -- dispatch ---------------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        try:
            status, xml = self._route(method, target, headers, body)
        except AdminError as exc:
            status = exc.status
            xml = f"<Error><Code>{exc.status}</Code><Detail>{escape(exc.detail)}</Detail></Error>"
        except Exception as exc:  # a bug must answer, not hang the client
            log.exception("administration request failed: %s %s", method, target)
            status, xml = 500, f"<Error><Code>500</Code><Detail>{escape(str(exc))}</Detail></Error>"
        if not xml:  # a DELETE answers with no body at all; an XML prolog alone is not a document
            return status, b""
        return status, ("<?xml version=\"1.0\" encoding=\"utf-8\"?>" + xml).encode()

    def _route(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        parts = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = unquote(parts.path).strip("/")
        self.host = headers.get("host", "127.0.0.1")
        update = headers.get("if-match") == "*"
        if path.lower() == "$namespaceinfo" and method == "GET":
            return 200, self._namespace_info()
        if path.lower().startswith("$resources/") and method == "GET":
            kind = path.split("/", 1)[1].lower()
            if kind not in ("queues", "topics"):
                raise AdminError(400, f"Listing '{kind}' is not supported.")
            keys = sorted(k for k, d in self.catalog.definitions.items() if d.kind == kind[:-1])
            return 200, self._feed(path, query, keys, kind.capitalize())
        match = re.fullmatch(r"(.+?)/subscriptions(?:/([^/]+)(/rules(?:/([^/]+))?)?)?", path, re.IGNORECASE)
        if match:
            topic, sub, rules_list, rule = match.groups()
            if sub is None:
                if method != "GET":
                    raise AdminError(405, "Only GET lists subscriptions.")
                self._topic(topic)
                prefix = _sub_path(topic, "")
                keys = sorted(k for k in self.catalog.definitions if k.startswith(prefix))
                return 200, self._feed(path, query, keys, "Subscriptions")
            if rule is not None or rules_list:
                return self._rules(method, topic, sub, rule, query, path, body, update)
            return self._subscription(method, topic, sub, body, update)
        return self._entity(method, path, body, update)

    # -- queues and topics ------------------------------------------------------------------
    def _entity(self, method: str, name: str, body: bytes, update: bool) -> tuple[int, str]:
        key = name.lower()
        existing = self.catalog.definitions.get(key)
        if existing is not None and existing.kind == SUBSCRIPTION:
            existing = None
        what = f"Entity '{name}'"
        if method == "GET":
            return 200, self._entry(key, _found(existing, what))
        if method == "DELETE":
            self._delete(key, _found(existing, what))
            return 200, ""
        if method != "PUT":
            raise AdminError(405, f"{method} is not supported here.")
        description = _description(body)
        kind = {"QueueDescription": QUEUE, "TopicDescription": TOPIC}.get(_local(description.tag))
        if kind is None:
            raise AdminError(400, f"Expected a QueueDescription or TopicDescription, got {_local(description.tag)}.")
        props = self._props(kind, description)
        now = now_ms()
        if update:
            existing = _found(existing, what)
            if existing.kind != kind:
                raise AdminError(400, f"Entity '{name}' is a {existing.kind}, not a {kind}.")
            if kind == QUEUE and props.get("RequiresSession", False) != existing.props.get("RequiresSession", False):
                raise AdminError(400, "The value for the RequiresSession property of an existing Queue cannot be "
                                      "changed.")
            definition = Definition(kind, existing.name, props, existing.created_ms, now)
            cfg = build_config(definition)
            entity = self.broker.resolve_target(key)
            self.broker.reconfigure(entity, cfg)
            self.catalog.save(key, definition)
            return 200, self._entry(key, definition)
        if existing is not None or key in self.catalog.definitions:
            raise AdminError(409, f"The messaging entity '{name}' already exists.")
        try:
            check_name(name, kind)
        except ConfigError as exc:
            raise AdminError(400, str(exc)) from None
        definition = Definition(kind, name, props, now, now)
        cfg = build_config(definition)
        if isinstance(cfg, TopicConfig):
            self.broker.add_topic(cfg)
        else:
            self.broker.add_queue(cfg)
        self.catalog.save(key, definition)
        return 201, self._entry(key, definition)

    def _delete(self, key: str, definition: Definition) -> None:
        if definition.kind == TOPIC:
            for sub_key in [k for k in self.catalog.definitions if k.startswith(key + "/subscriptions/")]:
                sub = self.catalog.definitions[sub_key]
                self.catalog.save(sub_key, Definition(SUBSCRIPTION, sub.name, {}, 0, 0, deleted=True))
        self.broker.remove(self.broker.resolve_target(key))
        self.catalog.save(key, Definition(definition.kind, definition.name, {}, 0, 0, deleted=True))

    def _topic(self, name: str) -> Topic:
        entity = self.broker.topics.get(name.lower())
        if entity is None:
            raise AdminError(404, f"Entity '{name}' was not found.")
        return entity

    def _props(self, kind: str, description: ET.Element) -> dict[str, Any]:
        types = _PROPERTY_TYPES[kind]
        props: dict[str, Any] = {}
        for child in description:
            name = _local(child.tag)
            if name in types and child.text is not None:
                props[name] = _typed(name, kind, child.text)
            elif name == "AuthorizationRules" and kind != SUBSCRIPTION and len(child):
                # Kept as sent and given back: the emulator enforces no rights (README).
                props[name] = ET.tostring(child, encoding="unicode")
        for name in ("ForwardTo", "ForwardDeadLetteredMessagesTo"):
            if name in props:
                # The SDK sends a full address (sb://host/queue); the entity is the path.
                target = unquote(urlsplit(props[name]).path.strip("/")) if "://" in props[name] else props[name]
                if target.lower() not in self.broker.queues and target.lower() not in self.broker.topics:
                    raise AdminError(400, f"The entity '{target}' named by {name} does not exist.")
                props[name] = target
        _validate(kind, props)
        return props

    # -- subscriptions ----------------------------------------------------------------------
    def _subscription(self, method: str, topic_name: str, name: str, body: bytes, update: bool) -> tuple[int, str]:
        topic = self._topic(topic_name)
        key = _sub_path(topic.path, name)
        existing = self.catalog.definitions.get(key)
        what = f"Subscription '{name}' of topic '{topic_name}'"
        if method == "GET":
            return 200, self._entry(key, _found(existing, what))
        if method == "DELETE":
            existing = _found(existing, what)
            self.broker.remove(topic.subscriptions[name.lower()])
            self.catalog.save(key, Definition(SUBSCRIPTION, existing.name, {}, 0, 0, deleted=True))
            return 200, ""
        if method != "PUT":
            raise AdminError(405, f"{method} is not supported here.")
        description = _description(body)
        if _local(description.tag) != "SubscriptionDescription":
            raise AdminError(400, f"Expected a SubscriptionDescription, got {_local(description.tag)}.")
        props = self._props(SUBSCRIPTION, description)
        now = now_ms()
        if update:
            existing = _found(existing, what)
            if props.get("RequiresSession", False) != existing.props.get("RequiresSession", False):
                raise AdminError(400, "The value for the RequiresSession property of an existing Subscription "
                                      "cannot be changed.")
            definition = Definition(SUBSCRIPTION, existing.name, props, existing.created_ms, now, existing.rules)
            self.broker.reconfigure(topic.subscriptions[name.lower()], build_config(definition))
            self.catalog.save(key, definition)
            return 200, self._entry(key, definition)
        if existing is not None:
            raise AdminError(409, f"The messaging entity '{topic_name}/Subscriptions/{name}' already exists.")
        try:
            check_name(name, "subscription")
        except ConfigError as exc:
            raise AdminError(400, str(exc)) from None
        default = description.find(f"{{{SB}}}DefaultRuleDescription")
        rule = (parse_rule(default, default.findtext(f"{{{SB}}}Name") or "$Default", now) if default is not None
                else rule_from_config({"Name": "$Default"}, now))
        definition = Definition(SUBSCRIPTION, name, props, now, now, [rule])
        cfg = build_config(definition)
        assert isinstance(cfg, EntityConfig)
        self.broker.add_subscription(topic, cfg)
        self.catalog.save(key, definition)
        return 201, self._entry(key, definition)

    # -- rules ------------------------------------------------------------------------------
    def _rules(self, method: str, topic_name: str, sub_name: str, rule_name: str | None, query: dict[str, str],
               path: str, body: bytes, update: bool) -> tuple[int, str]:
        topic = self._topic(topic_name)
        key = _sub_path(topic.path, sub_name)
        sub = self.catalog.definitions.get(key)
        if sub is None:
            raise AdminError(404, f"Subscription '{sub_name}' of topic '{topic_name}' was not found.")
        if rule_name is None:
            if method != "GET":
                raise AdminError(405, "Only GET lists rules.")
            return 200, self._rule_feed(path, query, sub)
        index = next((i for i, r in enumerate(sub.rules) if r["Name"].lower() == rule_name.lower()), None)
        if method == "GET":
            if index is None:
                raise AdminError(404, f"Rule '{rule_name}' was not found.")
            return 200, self._rule_entry(path, sub.rules[index])
        rules = list(sub.rules)
        status = 200
        if method == "DELETE":
            if index is None:
                raise AdminError(404, f"Rule '{rule_name}' was not found.")
            del rules[index]
            xml = ""
        elif method == "PUT":
            element = _description(body)
            if _local(element.tag) != "RuleDescription":
                raise AdminError(400, f"Expected a RuleDescription, got {_local(element.tag)}.")
            if update and index is None:
                raise AdminError(404, f"Rule '{rule_name}' was not found.")
            if not update and index is not None:
                raise AdminError(409, f"The messaging entity rule '{rule_name}' already exists.")
            try:
                check_name(rule_name, "rule")
            except ConfigError as exc:
                raise AdminError(400, str(exc)) from None
            created = sub.rules[index]["CreatedAt"] if index is not None else now_ms()
            rule = parse_rule(element, rule_name, created)
            if index is None:
                rules.append(rule)
                status = 201
            else:
                rules[index] = rule
            xml = self._rule_entry(path, rule)
        else:
            raise AdminError(405, f"{method} is not supported here.")
        definition = Definition(SUBSCRIPTION, sub.name, sub.props, sub.created_ms, now_ms(), rules)
        holder = topic.subscriptions[sub_name.lower()]
        # An empty list is allowed (Azure: the subscription then takes no messages).
        holder.cfg.rules = _compile(rules, f"subscription {sub.name!r}")
        self.catalog.save(key, definition)
        return status, xml

    # -- rendering --------------------------------------------------------------------------
    def _base(self) -> str:
        return f"https://{self.host}"

    def _feed(self, path: str, query: dict[str, str], keys: list[str], title: str) -> str:
        page, more = _page(keys, query)
        entries = "".join(self._entry(k, self.catalog.definitions[k], root=False) for k in page)
        return self._feed_xml(path, query, title, entries, more, len(page))

    def _rule_feed(self, path: str, query: dict[str, str], sub: Definition) -> str:
        page, more = _page(sub.rules, query)
        entries = "".join(self._rule_entry(f"{path}/{r['Name']}", r, root=False) for r in page)
        return self._feed_xml(path, query, "Rules", entries, more, len(page))

    def _feed_xml(self, path: str, query: dict[str, str], title: str, entries: str, more: bool, count: int) -> str:
        skip, top = int(query.get("$skip", 0)), int(query.get("$top", 100))
        url = f"{self._base()}/{path}?api-version={API_VERSION}"
        links = f'<link rel="self" href="{escape(url)}&amp;$skip={skip}&amp;$top={top}"/>'
        if more:
            links += f'<link rel="next" href="{escape(url)}&amp;$skip={skip + count}&amp;$top={top}"/>'
        return (f'<feed xmlns="{ATOM}"><title type="text">{title}</title><id>{escape(url)}</id>'
                f"<updated>{iso_time(now_ms())}</updated>{links}{entries}</feed>")

    def _entry(self, key: str, definition: Definition, root: bool = True) -> str:
        kind = definition.kind
        counts = Counts()
        subscription_count = 0
        if kind == TOPIC:
            topic = self.broker.topics[key]
            counts.add(topic.holding)
            for holder in topic.subscriptions.values():
                for msg in holder.messages.values():
                    counts.size += msg.size
            subscription_count = len(topic.subscriptions)
        else:
            holder = self.broker.resolve_source(key)
            counts.add(holder)
            counts.add(holder.dlq, dead=True)
        accessed = max(definition.updated_ms, counts.last_enqueued_ms)
        body = []
        for item in _ORDER[kind]:
            if item == "*counts":
                if kind != TOPIC:
                    body.append(_element("MessageCount", counts.total))
                body.append(_element("SizeInBytes", counts.size))
                if kind == TOPIC:
                    body.append(_element("SubscriptionCount", subscription_count))
                    rules = [r for k, d in self.catalog.definitions.items()
                             if d.kind == SUBSCRIPTION and k.startswith(key + "/subscriptions/") for r in d.rules]
                    correlation = sum(1 for r in rules if r["Filter"]["Type"] == "CorrelationFilter")
                    body.append(_element("SqlFilterCount", len(rules) - correlation)
                                + _element("CorrelationFilterCount", correlation))
                body.append(
                    f'<CountDetails xmlns:d2p1="{SB2011}">'
                    f"<d2p1:ActiveMessageCount>{counts.active}</d2p1:ActiveMessageCount>"
                    f"<d2p1:DeadLetterMessageCount>{counts.dead_letter}</d2p1:DeadLetterMessageCount>"
                    f"<d2p1:ScheduledMessageCount>{counts.scheduled}</d2p1:ScheduledMessageCount>"
                    "<d2p1:TransferMessageCount>0</d2p1:TransferMessageCount>"
                    "<d2p1:TransferDeadLetterMessageCount>0</d2p1:TransferDeadLetterMessageCount></CountDetails>")
            elif item == "*times":
                body.append(_element("CreatedAt", iso_time(definition.created_ms))
                            + _element("UpdatedAt", iso_time(definition.updated_ms))
                            + _element("AccessedAt", iso_time(accessed)))
            elif item in ("ForwardTo", "ForwardDeadLetteredMessagesTo"):
                if definition.props.get(item):
                    body.append(_element(item, f"sb://{self.host}/{definition.props[item]}"))
            elif item == "AuthorizationRules":
                body.append(definition.props.get(item, "<AuthorizationRules/>"))
            elif item in definition.props:
                body.append(_element(item, definition.props[item]))
            elif item in _DEFAULTS:
                body.append(_element(item, _DEFAULTS[item]))
        body.append("<EntityAvailabilityStatus>Available</EntityAvailabilityStatus>")
        tag = {QUEUE: "QueueDescription", TOPIC: "TopicDescription", SUBSCRIPTION: "SubscriptionDescription"}[kind]
        content = f'<{tag} xmlns="{SB}" xmlns:i="{XSI}">{"".join(body)}</{tag}>'
        return self._entry_xml(key, definition.name, definition.created_ms,
                               definition.updated_ms, content, root)

    def _rule_entry(self, path: str, rule: dict[str, Any], root: bool = True) -> str:
        content = f'<RuleDescription xmlns="{SB}" xmlns:i="{XSI}">{_rule_xml(rule)}</RuleDescription>'
        return self._entry_xml(path, rule["Name"], rule["CreatedAt"], rule["CreatedAt"], content, root)

    def _entry_xml(self, path: str, title: str, created: int, updated: int, content: str, root: bool) -> str:
        url = escape(f"{self._base()}/{path}?api-version={API_VERSION}")
        namespace = f' xmlns="{ATOM}"' if root else ""
        return (f"<entry{namespace}><id>{url}</id><title type=\"text\">{escape(title)}</title>"
                f"<published>{iso_time(created)}</published><updated>{iso_time(updated)}</updated>"
                f"<author><name>{escape(self.broker.config.name)}</name></author>"
                f'<link rel="self" href="{url}"/><content type="application/xml">{content}</content></entry>')

    def _namespace_info(self) -> str:
        started = min((d.created_ms for d in self.catalog.definitions.values()), default=now_ms())
        content = (f'<NamespaceInfo xmlns="{SB}" xmlns:i="{XSI}">{_element("CreatedTime", iso_time(started))}'
                   f"<MessagingSKU>Standard</MessagingSKU>{_element('ModifiedTime', iso_time(started))}"
                   f"{_element('Name', self.broker.config.name)}<NamespaceType>Messaging</NamespaceType>"
                   "</NamespaceInfo>")
        return self._entry_xml("$namespaceinfo", self.broker.config.name, started, started, content, True)


def _found(definition: Definition | None, what: str) -> Definition:
    """The definition, or Azure's 404 naming what is missing."""
    if definition is None:
        raise AdminError(404, f"{what} was not found.")
    return definition


def _page(items: list[Any], query: dict[str, str]) -> tuple[list[Any], bool]:
    try:
        skip, top = int(query.get("$skip", 0)), int(query.get("$top", 100))
    except ValueError:
        raise AdminError(400, "$skip and $top must be integers.") from None
    if skip < 0 or top < 1:
        raise AdminError(400, "$skip must be at least 0 and $top at least 1.")
    page = items[skip: skip + top]
    return page, skip + top < len(items)


def _description(body: bytes) -> ET.Element:
    """The description inside an ATOM entry's content."""
    try:
        entry = ET.fromstring(body)  # noqa: S314 (loopback clients; expat resolves no external entities)
    except ET.ParseError as exc:
        raise AdminError(400, f"The request body is not valid XML: {exc}") from None
    content = entry.find(f"{{{ATOM}}}content") if _local(entry.tag) == "entry" else None
    if content is None or len(content) == 0:
        raise AdminError(400, "The request body must be an ATOM entry with a description in its content.")
    return content[0]


# -- the HTTP(S) server ---------------------------------------------------------------------------
def ensure_certificate(cert_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, ::1 and localhost, made once and kept beside its key."""
    key_path = cert_path.with_suffix(".key")
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Service Bus emulator (localhost)")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


class _Handler(BaseHTTPRequestHandler):
    server: AdminHttpServer
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            self.send_error(413)
            return
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        api = self.server.api
        status, payload = self.server.bridge.call(lambda: api.handle(self.command, self.path, headers, body))
        self.send_response(status)
        self.send_header("Content-Type", "application/atom+xml;type=entry;charset=utf-8" if status < 300
                         else "application/xml; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_DELETE = do_POST = _serve  # noqa: N815 (http.server's names)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("admin %s: %s", self.address_string(), format % args)


class AdminHttpServer(ThreadingHTTPServer):
    """The administration API on one port, plain HTTP or HTTPS by the client's first byte."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: AdminApi, bridge: LoopBridge, cert: Path) -> None:
        super().__init__(address, _Handler)
        self.api = api
        self.bridge = bridge
        cert_path, key_path = ensure_certificate(cert)
        self.cert_path = cert_path
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(cert_path, key_path)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # In the connection's own thread: a client that sends nothing holds up only itself.
        request.settimeout(60)
        try:
            first = request.recv(1, socket.MSG_PEEK)
            if first == b"\x16":
                request = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.debug("admin connection dropped before a request: %s", exc)
            return
        super().finish_request(request, client_address)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="servicebus-admin", daemon=True)
        thread.start()
        return thread

