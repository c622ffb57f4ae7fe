"""Message contracts and the envelope every message travels in.

A contract is a frozen pydantic model naming its ``TYPE`` and ``SCHEMA_VERSION``. On the wire a
message body is the JSON envelope::

    {"type": "PackageReady", "schemaVersion": 1, "messageId": "PackageReady:d-1",
     "correlationId": "d-1", "causationId": "DeliveryRequested:d-1",
     "traceparent": "00-...-...-01", "occurredAt": "2026-11-22T04:11:00.123Z",
     "data": {...the contract, camelCase...}}

and the same envelope fields (except ``data``) are repeated as Service Bus application
properties, so filters, the dead-letter queue and tools can read them without the body.

A :class:`ContractRegistry` decodes an envelope into the contract a consumer accepts. Older
schema versions are upgraded by explicit upcasters (eventsourcing-style ``upcast_v1_v2``);
a version nobody can read is a permanent ``UnknownSchemaVersion`` failure, never a crash loop.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints, ValidationError
from pydantic.alias_generators import to_camel

from .errors import MalformedMessage, UnknownMessageType, UnknownSchemaVersion

# A delivery id (and a payment file id, the other correlation id) is a Table PartitionKey and a
# Service Bus session id: safe characters only.
DELIVERY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
DeliveryId = Annotated[str, StringConstraints(pattern=DELIVERY_ID_PATTERN)]


class Data(BaseModel):
    """Frozen, camelCase on the wire, tolerant of extra fields (a tolerant reader)."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Contract(Data):
    """Base of every message payload."""

    TYPE: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int] = 1

    def to_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Envelope(BaseModel):
    """What every message body carries around its contract."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore")

    type: str
    schema_version: int
    message_id: str
    correlation_id: DeliveryId  # a delivery id or a payment file id: a Table key and a session id
    causation_id: str
    traceparent: str
    occurred_at: AwareDatetime
    data: dict[str, Any]

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)

    def properties(self) -> dict[str, str | int]:
        """The envelope as Service Bus application properties (everything but ``data``)."""
        return {
            "type": self.type,
            "schemaVersion": self.schema_version,
            "correlationId": self.correlation_id,
            "causationId": self.causation_id,
            "traceparent": self.traceparent,
            "occurredAt": self.model_dump(mode="json", by_alias=True)["occurredAt"],
        }


def invalid_fields(error: ValidationError) -> list[dict[str, str]]:
    """Pydantic errors as ``[{field, message}]`` with dotted camelCase paths."""
    fields = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"]) or "(body)"
        fields.append({"field": path, "message": item["msg"]})
    return fields


class UnreadableJson(ValueError):
    """A body no JSON reader here can hold; the message is ours, never the parser's text."""


# Valid UTF-8 holds no surrogate: only a \\uD800-\\uDFFF escape can make one.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def load_json(body: bytes) -> Any:
    """``json.loads`` for bodies from outside: every way it can fail (bad UTF-8, bad syntax,
    nesting deeper than the interpreter's recursion limit, integers over Python's 4,300-digit
    limit, lone surrogates that no store can encode) is one :class:`UnreadableJson`."""
    try:
        document = json.loads(body)
    except UnicodeDecodeError:
        raise UnreadableJson("the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise UnreadableJson(f"the body is not JSON (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise UnreadableJson("the JSON is nested too deeply") from None
    except ValueError:  # int(): "Exceeds the limit (4300 digits) for integer string conversion"
        raise UnreadableJson("the JSON holds a number too long to read") from None
    if _SURROGATE_ESCAPE.search(body):  # a pair is fine; a lone one fails to encode
        try:
            json.dumps(document, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise UnreadableJson("the JSON holds a lone surrogate (\\ud800-\\udfff), which is not text") from None
        except RecursionError:  # nested within the parser's limit but not the encoder's
            raise UnreadableJson("the JSON is nested too deeply") from None
    return document


def parse_envelope(body: bytes) -> Envelope:
    """The envelope in a message body, or MalformedMessage naming what is wrong."""
    try:
        document = load_json(body)
    except UnreadableJson as exc:
        raise MalformedMessage(f"body is not readable JSON: {exc}") from None
    if not isinstance(document, dict):
        raise MalformedMessage("body is not a JSON object")
    try:
        return Envelope.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(f"{f['field']}: {f['message']}" for f in invalid_fields(exc))
        raise MalformedMessage(f"invalid envelope: {problems}") from None


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class ContractRegistry:
    """The contracts one consumer accepts, by type name, with upcasters for older versions."""

    def __init__(self, *contracts: type[Contract], upcasters: Mapping[tuple[str, int], Upcaster] | None = None):
        self._by_type: dict[str, type[Contract]] = {}
        for contract in contracts:
            if contract.TYPE in self._by_type:
                raise ValueError(f"contract type {contract.TYPE!r} registered twice")
            self._by_type[contract.TYPE] = contract
        self._upcasters = dict(upcasters or {})

    @property
    def types(self) -> frozenset[str]:
        return frozenset(self._by_type)

    def decode(self, envelope: Envelope) -> Contract:
        contract = self._by_type.get(envelope.type)
        if contract is None:
            raise UnknownMessageType(f"no contract for message type {envelope.type!r} here "
                                     f"(accepted: {', '.join(sorted(self._by_type))})")
        data, version = dict(envelope.data), envelope.schema_version
        while version < contract.SCHEMA_VERSION and (envelope.type, version) in self._upcasters:
            data = self._upcasters[(envelope.type, version)](data)
            version += 1
        if version != contract.SCHEMA_VERSION:
            raise UnknownSchemaVersion(f"{envelope.type} schema version {envelope.schema_version} is not "
                                       f"supported (this consumer reads version {contract.SCHEMA_VERSION})")
        try:
            return contract.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{f['field']}: {f['message']}" for f in invalid_fields(exc))
            raise MalformedMessage(f"invalid {envelope.type} v{version}: {problems}") from None
