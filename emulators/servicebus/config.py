"""Entity configuration in the JSON shape of Microsoft's Service Bus emulator ``Config.json``.

``load_config(path)`` returns a :class:`NamespaceConfig` or raises :class:`ConfigError` whose
message is one line naming the file, the JSON path and what is wrong.  The shape is::

    {"UserConfig": {"Namespaces": [{"Name": "sbemulatorns",
        "Queues": [{"Name": "q", "Properties": {"LockDuration": "PT1M", ...}}],
        "Topics": [{"Name": "t", "Properties": {...},
                    "Subscriptions": [{"Name": "s", "Properties": {...}, "Rules": [...]}]}]}],
      "Logging": {"Type": "File"}}}

Property names and defaults follow Azure's (durations are ISO 8601).  Properties this emulator
does not know are rejected, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .filters import FilterError, compile_rule

# Azure's defaults for a Standard namespace.
DEFAULT_LOCK_MS = 60_000
DEFAULT_MAX_DELIVERY = 10
DEFAULT_DUP_WINDOW_MS = 10 * 60_000
MAX_TTL_MS = 10_675_199 * 24 * 3600 * 1000  # TimeSpan.MaxValue, in practice "never"
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024

_DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


class ConfigError(ValueError):
    """The configuration file cannot be used; the message is one line naming the problem."""


def parse_duration_ms(text: Any, where: str) -> int:
    """ISO 8601 duration (``PT1M``, ``P14D``, ``PT0.5S``) or .NET TimeSpan (``00:01:00``) to ms."""
    if not isinstance(text, str):
        raise ConfigError(f"{where}: expected an ISO 8601 duration string such as 'PT1M', got {text!r}")
    match = _DURATION.match(text.strip())
    if match and any(match.groupdict().values()):
        parts = {k: float(v) for k, v in match.groupdict().items() if v}
        seconds = (
            parts.get("days", 0) * 86400
            + parts.get("hours", 0) * 3600
            + parts.get("minutes", 0) * 60
            + parts.get("seconds", 0)
        )
        return round(seconds * 1000)
    timespan = re.match(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)$", text.strip())
    if timespan:
        days, hours, minutes, seconds = timespan.groups()
        total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        return round(total * 1000)
    raise ConfigError(f"{where}: {text!r} is not an ISO 8601 duration such as 'PT1M' or 'P14D'")


@dataclass(frozen=True)
class Rule:
    name: str
    matches: Any  # Callable[[MessageView], bool]
    action: Any  # Callable[[MessageView], None] | None
    # The rule as declared (Config.json shape), so the administration API can describe it.
    source: dict[str, Any] | None = None


@dataclass
class EntityConfig:
    """A queue or a subscription: everything that holds messages."""

    name: str
    lock_duration_ms: int = DEFAULT_LOCK_MS
    max_delivery_count: int = DEFAULT_MAX_DELIVERY
    requires_session: bool = False
    default_ttl_ms: int = MAX_TTL_MS
    dead_lettering_on_expiration: bool = False
    forward_to: str | None = None
    forward_dead_lettered_to: str | None = None
    requires_duplicate_detection: bool = False
    duplicate_window_ms: int = DEFAULT_DUP_WINDOW_MS
    rules: list[Rule] = field(default_factory=list)


@dataclass
class TopicConfig:
    name: str
    default_ttl_ms: int = MAX_TTL_MS
    requires_duplicate_detection: bool = False
    duplicate_window_ms: int = DEFAULT_DUP_WINDOW_MS
    subscriptions: dict[str, EntityConfig] = field(default_factory=dict)


@dataclass
class NamespaceConfig:
    name: str
    queues: dict[str, EntityConfig]
    topics: dict[str, TopicConfig]
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES


QUEUE_PROPERTIES = _QUEUE_PROPS = {
    "DeadLetteringOnMessageExpiration", "DefaultMessageTimeToLive", "DuplicateDetectionHistoryTimeWindow",
    "ForwardDeadLetteredMessagesTo", "ForwardTo", "LockDuration", "MaxDeliveryCount",
    "RequiresDuplicateDetection", "RequiresSession", "MaxSizeInMegabytes", "EnableBatchedOperations",
    "EnablePartitioning", "Status", "AutoDeleteOnIdle", "UserMetadata",
}
TOPIC_PROPERTIES = _TOPIC_PROPS = {
    "DefaultMessageTimeToLive", "DuplicateDetectionHistoryTimeWindow", "RequiresDuplicateDetection",
    "MaxSizeInMegabytes", "EnableBatchedOperations", "EnablePartitioning", "SupportOrdering", "Status",
    "AutoDeleteOnIdle", "UserMetadata",
}
SUBSCRIPTION_PROPERTIES = _SUB_PROPS = {
    "DeadLetteringOnMessageExpiration", "DefaultMessageTimeToLive", "LockDuration", "MaxDeliveryCount",
    "ForwardDeadLetteredMessagesTo", "ForwardTo", "RequiresSession", "EnableBatchedOperations",
    "DeadLetteringOnFilterEvaluationExceptions", "Status", "AutoDeleteOnIdle", "UserMetadata",
}


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a JSON array, got {type(value).__name__}")
    return value


def _name(item: dict[str, Any], where: str) -> str:
    name = item.get("Name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}.Name: a non-empty string is required")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._\-/~]{0,259}", name) or "//" in name:
        raise ConfigError(f"{where}.Name: {name!r} is not a valid entity name")
    return name


def _bool(props: dict[str, Any], key: str, default: bool, where: str) -> bool:
    value = props.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}: expected true or false, got {value!r}")
    return value


def _int(props: dict[str, Any], key: str, default: int, where: str, minimum: int = 1) -> int:
    value = props.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}.{key}: expected an integer >= {minimum}, got {value!r}")
    return value


def _check_known(props: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(props) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown propert{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}")


def _holder(name: str, props: dict[str, Any], where: str, known: set[str]) -> EntityConfig:
    _check_known(props, known, where)
    forward_to = props.get("ForwardTo") or None
    forward_dl = props.get("ForwardDeadLetteredMessagesTo") or None
    return EntityConfig(
        name=name,
        lock_duration_ms=parse_duration_ms(props.get("LockDuration", "PT1M"), f"{where}.LockDuration"),
        max_delivery_count=_int(props, "MaxDeliveryCount", DEFAULT_MAX_DELIVERY, where),
        requires_session=_bool(props, "RequiresSession", False, where),
        default_ttl_ms=_ttl(props, where),
        dead_lettering_on_expiration=_bool(props, "DeadLetteringOnMessageExpiration", False, where),
        forward_to=forward_to,
        forward_dead_lettered_to=forward_dl,
        requires_duplicate_detection=_bool(props, "RequiresDuplicateDetection", False, where),
        duplicate_window_ms=parse_duration_ms(
            props.get("DuplicateDetectionHistoryTimeWindow", "PT10M"), f"{where}.DuplicateDetectionHistoryTimeWindow"
        ),
    )


def _ttl(props: dict[str, Any], where: str) -> int:
    if "DefaultMessageTimeToLive" not in props:
        return MAX_TTL_MS
    return min(parse_duration_ms(props["DefaultMessageTimeToLive"], f"{where}.DefaultMessageTimeToLive"), MAX_TTL_MS)


def parse_config(document: Any, source: str = "config") -> NamespaceConfig:
    """Validate a decoded Config.json document and build the namespace it describes."""
    root = _obj(document, source)
    user = _obj(root.get("UserConfig"), f"{source}: UserConfig")
    namespaces = _list(user.get("Namespaces"), f"{source}: UserConfig.Namespaces")
    if len(namespaces) != 1:
        raise ConfigError(f"{source}: UserConfig.Namespaces must hold exactly one namespace, found {len(namespaces)}")
    ns_where = f"{source}: UserConfig.Namespaces[0]"
    ns = _obj(namespaces[0], ns_where)
    ns_name = _name(ns, ns_where)
    ns_props = _obj(ns.get("Properties", {}), f"{ns_where}.Properties")
    max_kb = _int(ns_props, "MaxMessageSizeInKilobytes", DEFAULT_MAX_MESSAGE_BYTES // 1024, f"{ns_where}.Properties")

    queues: dict[str, EntityConfig] = {}
    topics: dict[str, TopicConfig] = {}
    taken: set[str] = set()

    def claim(name: str, where: str) -> None:
        if name.lower() in taken:
            raise ConfigError(f"{where}.Name: {name!r} is declared twice (entity names are case-insensitive)")
        taken.add(name.lower())

    for i, raw in enumerate(_list(ns.get("Queues"), f"{ns_where}.Queues")):
        where = f"{ns_where}.Queues[{i}]"
        item = _obj(raw, where)
        name = _name(item, where)
        claim(name, where)
        queues[name.lower()] = _holder(name, _obj(item.get("Properties", {}), f"{where}.Properties"),
                                      f"{where}.Properties", _QUEUE_PROPS)

    for i, raw in enumerate(_list(ns.get("Topics"), f"{ns_where}.Topics")):
        where = f"{ns_where}.Topics[{i}]"
        item = _obj(raw, where)
        name = _name(item, where)
        claim(name, where)
        topic = topic_config(name, _obj(item.get("Properties", {}), f"{where}.Properties"), f"{where}.Properties")
        for j, raw_sub in enumerate(_list(item.get("Subscriptions"), f"{where}.Subscriptions")):
            sub_where = f"{where}.Subscriptions[{j}]"
            sub_item = _obj(raw_sub, sub_where)
            sub_name = _name(sub_item, sub_where)
            if sub_name.lower() in topic.subscriptions:
                raise ConfigError(f"{sub_where}.Name: {sub_name!r} is declared twice in topic {name!r}")
            sub = _holder(sub_name, _obj(sub_item.get("Properties", {}), f"{sub_where}.Properties"),
                          f"{sub_where}.Properties", _SUB_PROPS)
            sub.rules = _rules(sub_item.get("Rules"), f"{sub_where}.Rules")
            topic.subscriptions[sub_name.lower()] = sub
        topics[name.lower()] = topic

    config = NamespaceConfig(name=ns_name, queues=queues, topics=topics, max_message_bytes=max_kb * 1024)
    _check_forwarding(config, ns_where)
    return config


def _rules(raw_rules: Any, where: str) -> list[Rule]:
    rules: list[Rule] = []
    names: set[str] = set()
    for k, raw in enumerate(_list(raw_rules, where)):
        rule = _obj(raw, f"{where}[{k}]")
        name = rule.get("Name") or f"rule{k}"
        if name.lower() in names:
            raise ConfigError(f"{where}[{k}].Name: rule {name!r} is declared twice")
        names.add(name.lower())
        try:
            matches, action = compile_rule(rule)
        except FilterError as exc:
            raise ConfigError(f"{where}[{k}]: {exc}") from None
        rules.append(Rule(name=name, matches=matches, action=action, source=dict(rule, Name=name)))
    if not rules:
        rules.append(default_rule())
    return rules


DEFAULT_RULE_SOURCE: dict[str, Any] = {"Name": "$Default", "Properties": {"FilterType": "Sql",
                                                                         "SqlFilter": {"SqlExpression": "1=1"}}}


def default_rule() -> Rule:
    """Azure gives every new subscription the "$Default" rule, a TrueFilter."""
    matches, action = compile_rule(DEFAULT_RULE_SOURCE)
    return Rule(name="$Default", matches=matches, action=action, source=DEFAULT_RULE_SOURCE)


def compile_rules(raw_rules: Any, where: str) -> list[Rule]:
    """Rules in the Config.json shape, compiled; ``$Default`` when there are none."""
    return _rules(raw_rules, where)


def queue_config(name: str, props: dict[str, Any], where: str) -> EntityConfig:
    """A queue from its Azure properties (Config.json ``Properties``); :class:`ConfigError` if invalid."""
    return _holder(name, props, where, _QUEUE_PROPS)


def subscription_config(name: str, props: dict[str, Any], where: str) -> EntityConfig:
    return _holder(name, props, where, _SUB_PROPS)


def topic_config(name: str, props: dict[str, Any], where: str) -> TopicConfig:
    _check_known(props, _TOPIC_PROPS, where)
    return TopicConfig(
        name=name,
        default_ttl_ms=_ttl(props, where),
        requires_duplicate_detection=_bool(props, "RequiresDuplicateDetection", False, where),
        duplicate_window_ms=parse_duration_ms(
            props.get("DuplicateDetectionHistoryTimeWindow", "PT10M"), f"{where}.DuplicateDetectionHistoryTimeWindow"
        ),
    )


def check_name(name: Any, where: str) -> str:
    """An entity name Azure accepts; :class:`ConfigError` otherwise."""
    return _name({"Name": name}, where)


def _check_forwarding(config: NamespaceConfig, where: str) -> None:
    known = set(config.queues) | set(config.topics)
    holders = list(config.queues.values()) + [s for t in config.topics.values() for s in t.subscriptions.values()]
    for holder in holders:
        for key, target in (("ForwardTo", holder.forward_to), ("ForwardDeadLetteredMessagesTo",
                                                                holder.forward_dead_lettered_to)):
            if target and target.lower() not in known:
                raise ConfigError(f"{where}: {holder.name}.{key} names {target!r}, which is not a queue or topic here")


def load_config(path: str | Path) -> NamespaceConfig:
    """Read and validate a Config.json file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    return parse_config(document, str(path))
