"""Event Grid and CloudEvents 1.0 wire formats: validating published batches, converting
between schemas, and building the bodies that go to subscribers.

Contract:
  * ``parse_batch(body, content_type, topic)`` returns the accepted events in order, already
    stamped the way Azure stamps them (Event Grid schema: ``topic``, ``metadataVersion``,
    ``dataVersion``), or raises ``BatchError`` whose message names the first problem and the
    index of the offending event. It never raises anything else for client input.
  * ``delivery_payload(event, topic, delivery_schema)`` returns ``(body_bytes, content_type)``
    exactly as Azure posts one event to a webhook: an array of one event for Event Grid
    schema, a single structured-mode object for CloudEvents.
  * Conversion is Event Grid -> CloudEvents only, which is all Azure offers; the reverse is
    refused when the subscription is created (see ``config.parse_subscription``).

Facts from Azure's documentation this relies on: Event Grid schema requires ``id``,
``subject``, ``eventType`` and ``eventTime``; ``dataVersion`` is stamped empty when absent;
``metadataVersion`` when present must be ``"1"``; ``topic`` when present must equal the
topic's resource id. CloudEvents require ``id``, ``source``, ``type`` and
``specversion == "1.0"``; ``data`` and ``data_base64`` are mutually exclusive.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .config import CLOUDEVENT_SCHEMA, EVENTGRID_SCHEMA, Topic

MAX_BATCH_BYTES = 1024 * 1024  # Azure: 1 MB per request, and so at most 1 MB per event

VALIDATION_EVENT_TYPE = "Microsoft.EventGrid.SubscriptionValidationEvent"

_CE_BATCH = "application/cloudevents-batch+json"
_CE_SINGLE = "application/cloudevents+json"
_JSON = "application/json"


class BatchError(ValueError):
    """A published request body Azure would answer with 400."""

    def __init__(self, message: str, code: str = "InputJsonInvalid") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Event:
    """One accepted event, in the topic's input schema, ready to store."""

    id: str
    type: str
    subject: str
    schema: str
    payload: dict[str, Any]


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _not_json(constant: str) -> Any:
    """Python's reader takes NaN and Infinity; JSON (and Event Grid) does not."""
    raise BatchError(f"request body is not valid JSON: {constant} is not a JSON value")


def parse_batch(body: bytes, content_type: str | None, topic: Topic) -> list[Event]:
    mtype = media_type(content_type)
    schema = topic.input_schema
    if mtype and mtype not in (_JSON, _CE_BATCH, _CE_SINGLE):
        raise BatchError(
            f"Content-Type '{mtype}' is not supported; topic '{topic.name}' takes "
            + (_JSON if schema == EVENTGRID_SCHEMA else f"{_CE_BATCH} or {_CE_SINGLE}"),
            code="InvalidContentType",
        )
    if schema == EVENTGRID_SCHEMA and mtype in (_CE_BATCH, _CE_SINGLE):
        raise BatchError(
            f"topic '{topic.name}' is configured for EventGridSchema but the request is CloudEvents "
            f"(Content-Type '{mtype}'); publish Event Grid schema events as {_JSON}"
        )
    try:
        doc = json.loads(body.decode("utf-8-sig"), parse_constant=_not_json)
    except BatchError:
        raise
    except UnicodeDecodeError:
        raise BatchError("request body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BatchError(
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise BatchError("request body is nested too deeply to be read") from None
    except ValueError:  # an integer longer than Python's int digit limit
        raise BatchError("request body holds a number too long to be read") from None
    try:
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BatchError("request body holds a lone surrogate (\\ud800-\\udfff), which is not text") from None
    except RecursionError:
        raise BatchError("request body is nested too deeply to be read") from None

    if schema == EVENTGRID_SCHEMA:
        if not isinstance(doc, list):
            raise BatchError(
                f"topic '{topic.name}' expects a JSON array of Event Grid schema events, got a JSON {_json_kind(doc)}"
            )
        items = doc
    elif mtype == _CE_SINGLE:
        if not isinstance(doc, dict):
            raise BatchError(
                f"Content-Type {_CE_SINGLE} carries one CloudEvent as a JSON object, got a JSON {_json_kind(doc)}"
            )
        items = [doc]
    elif mtype == _CE_BATCH:
        if not isinstance(doc, list):
            raise BatchError(
                f"Content-Type {_CE_BATCH} carries a JSON array of CloudEvents, got a JSON {_json_kind(doc)}"
            )
        items = doc
    else:
        # Plain JSON on a CloudEvents topic: name the likely mistake instead of a bare refusal.
        first = doc[0] if isinstance(doc, list) and doc else doc
        if isinstance(first, dict) and _looks_like_eventgrid(first):
            raise _wrong_schema(topic, 0 if isinstance(doc, list) else None)
        raise BatchError(
            f"topic '{topic.name}' is configured for CloudEventSchemaV1_0; send a batch as {_CE_BATCH} "
            f"or one event as {_CE_SINGLE} (got Content-Type '{mtype or 'none'}')"
        )
    if not items:
        raise BatchError("the batch contains no events")
    parse_one = _parse_eventgrid if schema == EVENTGRID_SCHEMA else _parse_cloudevent
    return [parse_one(item, i, topic) for i, item in enumerate(items)]


def _parse_eventgrid(raw: Any, i: int, topic: Topic) -> Event:
    where = f"events[{i}]"
    if not isinstance(raw, dict):
        raise BatchError(f"{where}: must be a JSON object, got a JSON {_json_kind(raw)}")
    if "eventType" not in raw and "specversion" in raw:
        raise _wrong_schema(topic, i)
    for key in ("id", "subject", "eventType", "eventTime"):
        if key not in raw or raw[key] is None:
            raise BatchError(f"{where}: required property '{key}' is missing")
        if not isinstance(raw[key], str):
            raise BatchError(f"{where}.{key}: must be a string")
    for key in ("id", "eventType"):
        if not raw[key]:
            raise BatchError(f"{where}.{key}: must not be empty")
    _check_time(raw["eventTime"], f"{where}.eventTime")
    event = dict(raw)
    if event.get("topic") is None:
        event["topic"] = topic.resource_id
    elif not isinstance(event["topic"], str) or event["topic"].lower() != topic.resource_id.lower():
        raise BatchError(f"{where}.topic: when set it must be this topic's resource id '{topic.resource_id}'")
    if event.get("dataVersion") is None:
        event["dataVersion"] = ""
    elif not isinstance(event["dataVersion"], str):
        raise BatchError(f"{where}.dataVersion: must be a string")
    if event.get("metadataVersion") is None:
        event["metadataVersion"] = "1"
    elif event["metadataVersion"] != "1":
        raise BatchError(f'{where}.metadataVersion: when set it must be "1"')
    return Event(
        id=event["id"],
        type=event["eventType"],
        subject=event["subject"],
        schema=EVENTGRID_SCHEMA,
        payload=event,
    )


def _parse_cloudevent(raw: Any, i: int, topic: Topic) -> Event:
    where = f"events[{i}]"
    if not isinstance(raw, dict):
        raise BatchError(f"{where}: must be a JSON object, got a JSON {_json_kind(raw)}")
    if "specversion" not in raw and _looks_like_eventgrid(raw):
        raise _wrong_schema(topic, i)
    for key in ("specversion", "id", "source", "type"):
        if key not in raw or raw[key] is None:
            raise BatchError(f"{where}: required attribute '{key}' is missing")
        if not isinstance(raw[key], str) or not raw[key]:
            raise BatchError(f"{where}.{key}: must be a non-empty string")
    if raw["specversion"] != "1.0":
        raise BatchError(
            f'{where}.specversion: only CloudEvents "1.0" is supported (got {raw["specversion"]!r})'
        )
    for key in ("subject", "time", "datacontenttype", "dataschema"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise BatchError(f"{where}.{key}: must be a string")
    if raw.get("time") is not None:
        _check_time(raw["time"], f"{where}.time")
    if raw.get("data") is not None and raw.get("data_base64") is not None:
        raise BatchError(f"{where}: 'data' and 'data_base64' are mutually exclusive")
    if raw.get("data_base64") is not None:
        try:
            if not isinstance(raw["data_base64"], str):
                raise TypeError
            base64.b64decode(raw["data_base64"], validate=True)
        except (TypeError, binascii.Error):
            raise BatchError(f"{where}.data_base64: must be a base64 string") from None
    return Event(
        id=raw["id"],
        type=raw["type"],
        subject=raw.get("subject") or "",
        schema=CLOUDEVENT_SCHEMA,
        payload=dict(raw),
    )


def to_cloudevent(event: dict[str, Any], topic: Topic) -> dict[str, Any]:
    """Azure's Event Grid -> CloudEvents mapping (topic becomes source, dataVersion the dataschema)."""
    out: dict[str, Any] = {
        "specversion": "1.0",
        "id": event["id"],
        "source": event.get("topic") or topic.resource_id,
        "type": event["eventType"],
        "subject": event.get("subject", ""),
        "time": event["eventTime"],
        "dataschema": "#" + (event.get("dataVersion") or ""),
    }
    if "data" in event:
        out["data"] = event["data"]
    return out


def delivery_payload(
    event: dict[str, Any], event_schema: str, topic: Topic, delivery_schema: str
) -> tuple[bytes, str]:
    if delivery_schema == EVENTGRID_SCHEMA:
        if event_schema != EVENTGRID_SCHEMA:  # refused at subscription time; guard against old stored rows
            raise ValueError("CloudEvents input cannot be delivered as Event Grid schema")
        return json.dumps([event]).encode(), "application/json; charset=utf-8"
    ce = event if event_schema == CLOUDEVENT_SCHEMA else to_cloudevent(event, topic)
    return json.dumps(ce).encode(), "application/cloudevents+json; charset=utf-8"


def validation_event(topic: Topic, code: str) -> bytes:
    return json.dumps(
        [
            {
                "id": str(uuid.uuid4()),
                "topic": topic.resource_id,
                "subject": "",
                "data": {"validationCode": code},
                "eventType": VALIDATION_EVENT_TYPE,
                "eventTime": utc_now_iso(),
                "metadataVersion": "1",
                "dataVersion": "2",
            }
        ]
    ).encode()


def _check_time(value: str, where: str) -> None:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise BatchError(f"{where}: {value!r} is not an ISO 8601 / RFC 3339 date-time") from None


def _looks_like_eventgrid(raw: dict) -> bool:
    return "eventType" in raw and "eventTime" in raw


def _wrong_schema(topic: Topic, index: int | None) -> BatchError:
    where = f"events[{index}]: " if index is not None else ""
    if topic.input_schema == CLOUDEVENT_SCHEMA:
        return BatchError(
            f"{where}topic '{topic.name}' is configured for CloudEventSchemaV1_0 but the event is in Event Grid "
            "schema (it has eventType/eventTime); publish azure.core.messaging.CloudEvent objects instead"
        )
    return BatchError(
        f"{where}topic '{topic.name}' is configured for EventGridSchema but the event is a CloudEvent "
        "(it has specversion); publish azure.eventgrid.EventGridEvent objects instead"
    )


def _json_kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )
