"""Topic and subscription configuration for the Event Grid emulator.

Contract:
  * ``load_config(path)`` reads the JSON file and returns a ``Config`` or raises
    ``ConfigError`` whose message is one human-readable line naming the offending
    path inside the document (e.g. ``topics[1].subscriptions[0].endpoint: ...``).
  * ``parse_subscription(raw, topic, where)`` validates one subscription object; the
    management API uses it for ``PUT /topics/{topic}/subscriptions/{name}`` bodies, so
    the file and the API accept exactly the same shape.
  * ``Subscription.to_json()`` returns that same shape, so what ``GET .../subscriptions``
    shows can be pasted into the config file.

Document shape::

    {"topics": [{"name": "deliveries",
                 "inputSchema": "CloudEventSchemaV1_0" | "EventGridSchema",
                 "keys": ["local-eventgrid-key"],
                 "subscriptions": [{"name": "...", "endpoint": "http://...",
                                    "includedEventTypes": ["..."],
                                    "subjectBeginsWith": "...", "subjectEndsWith": "...",
                                    "isSubjectCaseSensitive": false,
                                    "deliverySchema": "CloudEventSchemaV1_0",
                                    "maxDeliveryAttempts": 30,
                                    "eventTimeToLiveInMinutes": 1440}]}]}

Unknown keys are rejected rather than ignored: a misspelt filter that silently matched
everything would hide exactly the routing bugs a local stack exists to catch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

EVENTGRID_SCHEMA = "EventGridSchema"
CLOUDEVENT_SCHEMA = "CloudEventSchemaV1_0"
SCHEMAS = (EVENTGRID_SCHEMA, CLOUDEVENT_SCHEMA)

# Azure's own limits, so a config that works here is also valid in an ARM template.
MAX_DELIVERY_ATTEMPTS_RANGE = (1, 30)
EVENT_TTL_MINUTES_RANGE = (1, 1440)
DEFAULT_MAX_DELIVERY_ATTEMPTS = 30
DEFAULT_EVENT_TTL_MINUTES = 1440

_TOPIC_NAME = re.compile(r"^[A-Za-z0-9-]{3,50}$")
_SUBSCRIPTION_NAME = re.compile(r"^[A-Za-z0-9-]{3,64}$")

_TOPIC_KEYS = {"name", "inputSchema", "keys", "subscriptions"}
_SUBSCRIPTION_KEYS = {
    "name",
    "endpoint",
    "includedEventTypes",
    "subjectBeginsWith",
    "subjectEndsWith",
    "isSubjectCaseSensitive",
    "deliverySchema",
    "maxDeliveryAttempts",
    "eventTimeToLiveInMinutes",
}


class ConfigError(ValueError):
    """A configuration document (file or API body) that cannot be used."""


@dataclass(frozen=True)
class Subscription:
    name: str
    endpoint: str
    delivery_schema: str
    included_event_types: tuple[str, ...] | None = None
    subject_begins_with: str = ""
    subject_ends_with: str = ""
    is_subject_case_sensitive: bool = False
    max_delivery_attempts: int = DEFAULT_MAX_DELIVERY_ATTEMPTS
    event_ttl_minutes: int = DEFAULT_EVENT_TTL_MINUTES

    def matches(self, event_type: str, subject: str) -> bool:
        """Azure's basic filters: event type list (case-insensitive) and subject prefix/suffix."""
        if self.included_event_types is not None:
            wanted = {t.lower() for t in self.included_event_types}
            if event_type.lower() not in wanted:
                return False
        begins, ends, subj = self.subject_begins_with, self.subject_ends_with, subject
        if not self.is_subject_case_sensitive:
            begins, ends, subj = begins.lower(), ends.lower(), subj.lower()
        return subj.startswith(begins) and subj.endswith(ends)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "endpoint": self.endpoint}
        if self.included_event_types is not None:
            out["includedEventTypes"] = list(self.included_event_types)
        if self.subject_begins_with:
            out["subjectBeginsWith"] = self.subject_begins_with
        if self.subject_ends_with:
            out["subjectEndsWith"] = self.subject_ends_with
        out["isSubjectCaseSensitive"] = self.is_subject_case_sensitive
        out["deliverySchema"] = self.delivery_schema
        out["maxDeliveryAttempts"] = self.max_delivery_attempts
        out["eventTimeToLiveInMinutes"] = self.event_ttl_minutes
        return out


@dataclass
class Topic:
    name: str
    input_schema: str
    keys: tuple[str, ...]
    subscriptions: dict[str, Subscription] = field(default_factory=dict)

    @property
    def resource_id(self) -> str:
        """What Azure stamps into ``topic`` (Event Grid schema) and ``source`` (converted CloudEvents)."""
        return (
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local"
            f"/providers/Microsoft.EventGrid/topics/{self.name}"
        )


@dataclass
class Config:
    topics: dict[str, Topic]  # insertion order matters: the first topic also answers /api/events

    @property
    def default_topic(self) -> Topic:
        return next(iter(self.topics.values()))


def load_config(path: str | Path) -> Config:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    try:
        return parse_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def parse_config(raw: Any) -> Config:
    if not isinstance(raw, dict):
        raise ConfigError("top level must be a JSON object with a 'topics' array")
    _reject_unknown(raw, {"topics"}, "top level")
    topics_raw = raw.get("topics")
    if not isinstance(topics_raw, list) or not topics_raw:
        raise ConfigError("'topics' must be a non-empty array")
    topics: dict[str, Topic] = {}
    for i, traw in enumerate(topics_raw):
        topic = _parse_topic(traw, f"topics[{i}]")
        # Azure resource names are case-insensitive, so two spellings would be one topic there.
        if topic.name.lower() in (n.lower() for n in topics):
            raise ConfigError(f"topics[{i}].name: duplicate topic name '{topic.name}'")
        topics[topic.name] = topic
    return Config(topics=topics)


def _parse_topic(raw: Any, where: str) -> Topic:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be an object")
    _reject_unknown(raw, _TOPIC_KEYS, where)
    name = raw.get("name")
    if not isinstance(name, str) or not _TOPIC_NAME.match(name):
        raise ConfigError(f"{where}.name: must be 3-50 letters, digits or '-' (got {name!r})")
    schema = raw.get("inputSchema", EVENTGRID_SCHEMA)
    if schema not in SCHEMAS:
        raise ConfigError(f"{where}.inputSchema: must be one of {', '.join(SCHEMAS)} (got {schema!r})")
    keys = raw.get("keys")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys):
        raise ConfigError(f"{where}.keys: must be a non-empty array of non-empty strings")
    topic = Topic(name=name, input_schema=schema, keys=tuple(keys))
    subs_raw = raw.get("subscriptions", [])
    if not isinstance(subs_raw, list):
        raise ConfigError(f"{where}.subscriptions: must be an array")
    for j, sraw in enumerate(subs_raw):
        sub = parse_subscription(sraw, topic, f"{where}.subscriptions[{j}]")
        if sub.name.lower() in (n.lower() for n in topic.subscriptions):
            raise ConfigError(f"{where}.subscriptions[{j}].name: duplicate subscription name '{sub.name}'")
        topic.subscriptions[sub.name] = sub
    return topic


def parse_subscription(
    raw: Any, topic: Topic, where: str = "subscription", name: str | None = None
) -> Subscription:
    """Validate one subscription object; ``name`` (from a URL) wins over a missing body name."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a JSON object")
    _reject_unknown(raw, _SUBSCRIPTION_KEYS, where)
    body_name = raw.get("name")
    if name is not None and body_name is not None and body_name != name:
        raise ConfigError(f"{where}.name: body name {body_name!r} differs from the URL name {name!r}")
    sub_name = name if name is not None else body_name
    if not isinstance(sub_name, str) or not _SUBSCRIPTION_NAME.match(sub_name):
        raise ConfigError(f"{where}.name: must be 3-64 letters, digits or '-' (got {sub_name!r})")

    endpoint = raw.get("endpoint")
    if not isinstance(endpoint, str):
        raise ConfigError(f"{where}.endpoint: required, an http(s) URL")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}.endpoint: must be an absolute http(s) URL (got {endpoint!r})")

    types = raw.get("includedEventTypes")
    if types is not None:
        if not isinstance(types, list) or not all(isinstance(t, str) and t for t in types):
            raise ConfigError(f"{where}.includedEventTypes: must be an array of non-empty strings or null")
        types = tuple(types) if types else None  # Azure treats an empty list as "all types"

    begins = _optional_str(raw, "subjectBeginsWith", where)
    ends = _optional_str(raw, "subjectEndsWith", where)
    case_sensitive = raw.get("isSubjectCaseSensitive", False)
    if not isinstance(case_sensitive, bool):
        raise ConfigError(f"{where}.isSubjectCaseSensitive: must be true or false")

    delivery_schema = raw.get("deliverySchema", topic.input_schema)
    if delivery_schema not in SCHEMAS:
        raise ConfigError(
            f"{where}.deliverySchema: must be one of {', '.join(SCHEMAS)} (got {delivery_schema!r})"
        )
    if topic.input_schema == CLOUDEVENT_SCHEMA and delivery_schema == EVENTGRID_SCHEMA:
        # Azure refuses this combination too: it only converts Event Grid -> CloudEvents.
        raise ConfigError(
            f"{where}.deliverySchema: topic '{topic.name}' takes CloudEventSchemaV1_0 input, "
            "which Azure can only deliver as CloudEventSchemaV1_0"
        )

    attempts = _int_in_range(
        raw, "maxDeliveryAttempts", DEFAULT_MAX_DELIVERY_ATTEMPTS, MAX_DELIVERY_ATTEMPTS_RANGE, where
    )
    ttl = _int_in_range(
        raw, "eventTimeToLiveInMinutes", DEFAULT_EVENT_TTL_MINUTES, EVENT_TTL_MINUTES_RANGE, where
    )
    return Subscription(
        name=sub_name,
        endpoint=endpoint,
        delivery_schema=delivery_schema,
        included_event_types=types,
        subject_begins_with=begins,
        subject_ends_with=ends,
        is_subject_case_sensitive=case_sensitive,
        max_delivery_attempts=attempts,
        event_ttl_minutes=ttl,
    )


def _reject_unknown(raw: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def _optional_str(raw: dict, key: str, where: str) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key}: must be a string")
    return value


def _int_in_range(raw: dict, key: str, default: int, bounds: tuple[int, int], where: str) -> int:
    value = raw.get(key, default)
    lo, hi = bounds
    # bool is an int subclass; "true" attempts is a typo, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{where}.{key}: must be an integer from {lo} to {hi} (got {value!r})")
    return value
