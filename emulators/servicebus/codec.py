"""AMQP 1.0 message sections, read and written with proton's codec.

The broker never rebuilds a whole message: it keeps the sections the sender wrote (properties,
application properties, body, footer) as the bytes it received and only re-encodes the two
sections it owns on the way out (header, delivery and message annotations), plus application
properties when dead-lettering or a rule action changes them; the sender's priority and delivery
annotations are carried into the ones it writes.  That keeps bodies byte-identical (several data
sections, amqp-value, amqp-sequence all pass through untouched) and the hot path cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proton import Data, Described, decimal128, symbol, timestamp, ubyte, uint, ulong

HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS, PROPERTIES, APP_PROPERTIES = 0x70, 0x71, 0x72, 0x73, 0x74
DATA, AMQP_SEQUENCE, AMQP_VALUE, FOOTER = 0x75, 0x76, 0x77, 0x78
_BODY = (DATA, AMQP_SEQUENCE, AMQP_VALUE)

# Indexes in the properties list (AMQP 1.0 section 3.2.4).
P_MESSAGE_ID, P_TO, P_SUBJECT, P_REPLY_TO, P_CORRELATION_ID, P_CONTENT_TYPE = 0, 2, 3, 4, 5, 6
P_ABSOLUTE_EXPIRY, P_CREATION_TIME, P_GROUP_ID, P_REPLY_TO_GROUP_ID = 8, 9, 10, 12


class DecodeError(ValueError):
    """The bytes are not a well-formed AMQP message."""


@dataclass
class Section:
    code: int
    raw: bytes
    value: Any = None


def split_sections(raw: bytes | memoryview, decode_body: bool = False) -> list[Section]:
    """Split an encoded message into its sections, decoding all but the body (unless asked)."""
    view = memoryview(raw)
    data = Data()
    sections: list[Section] = []
    offset = 0
    while offset < len(view):
        data.clear()
        try:
            consumed = data.decode(bytes(view[offset:]))
        except Exception as exc:  # proton raises its own DataException family
            raise DecodeError(f"malformed AMQP section at byte {offset}: {exc}") from None
        if consumed <= 0:
            raise DecodeError(f"malformed AMQP section at byte {offset}")
        data.rewind()
        if data.next() != Data.DESCRIBED:
            raise DecodeError(f"byte {offset}: expected a described message section")
        # Read the descriptor alone: a body is bytes to pass on, never turned into Python objects
        # (an amqp-value map with binary keys cannot even be: memoryviews are not hashable).
        data.enter()
        data.next()
        descriptor = data.get_object()
        if not isinstance(descriptor, int):
            raise DecodeError(f"byte {offset}: expected a described message section")
        code = int(descriptor)
        if code < HEADER or code > FOOTER:
            raise DecodeError(f"byte {offset}: unknown message section 0x{code:x}")
        value = None
        if decode_body or code not in _BODY:
            data.next()
            try:
                value = data.get_object()
            except Exception as exc:  # proton's own errors, or an unhashable binary map key
                raise DecodeError(f"byte {offset}: section 0x{code:x} cannot be read: {exc}") from None
        data.exit()
        value = owned(value)
        sections.append(Section(code, bytes(view[offset:offset + consumed]), value))
        offset += consumed
    return sections


def owned(value: Any) -> Any:
    """``value`` with every binary copied out: proton hands binaries back as memoryviews into its
    decode buffer, which the next decode overwrites (a kept annotation would turn to garbage)."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, dict):
        return {owned(k): owned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [owned(v) for v in value]
    if isinstance(value, Described):
        return Described(value.descriptor, owned(value.value))
    return value


def encode_section(code: int, value: Any) -> bytes:
    data = Data()
    data.put_object(Described(ulong(code), value))
    return bytes(data.encode())


def encode_value(value: Any) -> bytes:
    data = Data()
    data.put_object(value)
    return bytes(data.encode())


@dataclass
class Envelope:
    """The parts of one message the broker needs, as received from a sender."""

    header: list[Any] | None
    annotations: dict[Any, Any]
    properties: list[Any]
    app_properties: dict[Any, Any]
    props_raw: bytes
    app_raw: bytes
    body_raw: bytes
    body_sections: list[Section] = field(default_factory=list)
    delivery_annotations: dict[Any, Any] | None = None

    @property
    def priority(self) -> int | None:
        if self.header and len(self.header) > 1 and self.header[1] is not None:
            return int(self.header[1])
        return None

    @property
    def message_id(self) -> Any:
        return _prop(self.properties, P_MESSAGE_ID)

    @property
    def session_id(self) -> str | None:
        value = _prop(self.properties, P_GROUP_ID)
        return None if value is None else str(value)

    @property
    def ttl_ms(self) -> int | None:
        if self.header and len(self.header) > 2 and self.header[2] is not None:
            return int(self.header[2])
        return None

    @property
    def size(self) -> int:
        return len(self.props_raw) + len(self.app_raw) + len(self.body_raw)


def _prop(properties: list[Any], index: int) -> Any:
    return properties[index] if len(properties) > index else None


def parse_message(raw: bytes | memoryview) -> Envelope:
    sections = split_sections(raw)
    header: list[Any] | None = None
    annotations: dict[Any, Any] = {}
    delivery_annotations: dict[Any, Any] | None = None
    properties: list[Any] = []
    app_properties: dict[Any, Any] = {}
    props_raw = app_raw = b""
    body: list[Section] = []
    for section in sections:
        if section.code == HEADER:
            header = list(section.value or [])
        elif section.code == DELIVERY_ANNOTATIONS:
            delivery_annotations = dict(section.value or {})
        elif section.code == MESSAGE_ANNOTATIONS:
            annotations = dict(section.value or {})
        elif section.code == PROPERTIES:
            properties = list(section.value or [])
            props_raw = section.raw
        elif section.code == APP_PROPERTIES:
            app_properties = dict(section.value or {})
            app_raw = section.raw
        elif section.code in _BODY or section.code == FOOTER:
            body.append(section)
    return Envelope(header, annotations, properties, app_properties, props_raw, app_raw,
                    b"".join(s.raw for s in body), body, delivery_annotations)


def unpack_batch(envelope: Envelope) -> list[bytes] | None:
    """The messages inside a Service Bus batch, or None when ``envelope`` is a single message.

    The SDKs send a batch as one transfer with message-format 0x80013700 whose data sections each
    hold a whole encoded message.  proton's Python binding does not expose the message format, so
    the batch is recognised by its shape: only data sections, each of which is itself a complete
    message that has a body.  A user payload would have to be a valid encoded AMQP message to be
    mistaken for one.
    """
    if not envelope.body_sections or any(s.code != DATA for s in envelope.body_sections):
        return None
    inner: list[bytes] = []
    for section in envelope.body_sections:
        payload = _data_payload(section.raw)
        if len(payload) < 3 or payload[0] != 0x00 or payload[1] != 0x53 or not (HEADER <= payload[2] <= FOOTER):
            return None
        try:
            parts = split_sections(payload)
        except DecodeError:
            return None
        if not any(p.code in _BODY for p in parts):
            return None
        inner.append(payload)
    return inner


def _data_payload(raw: bytes) -> bytes:
    """The binary inside an encoded data section (0x00 0x53 0x75 then vbin8 or vbin32)."""
    if raw[3] == 0xA0:
        return raw[5:5 + raw[4]]
    if raw[3] == 0xB0:
        length = int.from_bytes(raw[4:8], "big")
        return raw[8:8 + length]
    raise DecodeError("data section without binary payload")


def header_section(delivery_count: int, ttl_ms: int | None, priority: int | None = None) -> bytes:
    # As Service Bus writes it: durable and first-acquirer left out, priority only when the sender set one.
    fields: list[Any] = [None, None if priority is None else ubyte(priority),
                         uint(ttl_ms) if ttl_ms is not None and ttl_ms < 2**32 else None, None, uint(delivery_count)]
    return encode_section(HEADER, fields)


def annotations_section(annotations: dict[Any, Any]) -> bytes:
    return encode_section(MESSAGE_ANNOTATIONS, {symbol(k) if isinstance(k, str) else k: v
                                               for k, v in annotations.items()})


def delivery_annotations_section(annotations: dict[Any, Any]) -> bytes:
    return encode_section(DELIVERY_ANNOTATIONS, {symbol(k) if isinstance(k, str) else k: v
                                                for k, v in annotations.items()})


_DECIMAL128_BIAS = 6176
_DOTNET_DECIMAL_DIGITS = 2**96  # a .NET decimal's coefficient is 96 bits, its scale 0 to 28


def as_service_bus_decimal(value: decimal128) -> decimal128:
    """A decimal128 as Service Bus hands it back: it holds application properties as .NET values, and
    its AMQP library writes a decimal with the exponent's top seven bits in the first byte and its low
    seven in the second, the 96-bit coefficient in the last twelve (what the Python SDK's decoder
    reads; the IEEE layout senders write overflows it).  Values a .NET decimal cannot hold are left."""
    raw = bytes(value)
    if len(raw) != 16 or raw[0] & 0x60 == 0x60:  # NaN, infinities, the large-coefficient form
        return value
    negative = raw[0] & 0x80
    exponent = (((raw[0] & 0x7F) << 7) | (raw[1] >> 1)) - _DECIMAL128_BIAS
    coefficient = int.from_bytes(bytes([0, raw[1] & 0x01]) + raw[2:], "big")
    if exponent > 0:
        coefficient, exponent = coefficient * 10**exponent, 0
    if coefficient >= _DOTNET_DECIMAL_DIGITS or -exponent > 28:
        return value
    field = _DECIMAL128_BIAS + exponent
    head = bytes([negative | (field >> 9), (field & 0x7F) << 1, 0, 0])
    return decimal128(head + coefficient.to_bytes(12, "big"))


def with_service_bus_decimals(app_properties: dict[Any, Any]) -> dict[Any, Any] | None:
    """``app_properties`` with its decimals as Service Bus writes them, or None if it has none."""
    if not any(isinstance(v, decimal128) for v in app_properties.values()):
        return None
    return {k: as_service_bus_decimal(v) if isinstance(v, decimal128) else v for k, v in app_properties.items()}


def app_properties_section(app_properties: dict[Any, Any]) -> bytes:
    return encode_section(APP_PROPERTIES, app_properties) if app_properties else b""


def ms_timestamp(ms: int) -> timestamp:
    return timestamp(ms)
