"""Envelope, contract registry and the one place failures are classified."""

from __future__ import annotations

import json

import pytest

from choreography.clock import FixedClock
from choreography.contracts import ContractRegistry, Envelope, parse_envelope
from choreography.entities import DELIVERY_EVENTS_QUEUE
from choreography.errors import (
    BusinessRuleViolation,
    MalformedMessage,
    PermanentFailure,
    TransientFailure,
    UnknownMessageType,
    UnknownSchemaVersion,
    classify,
)
from choreography.handling import consume
from choreography.idempotency import MAX_MESSAGE_ID, ProcessedMessages, message_id
from choreography.messaging import Cause, Incoming, Outgoing, dead_letter_properties, stamp
from choreography.reason_codes import ReasonCode
from choreography.tracing import child_traceparent, new_traceparent, trace_id
from contracts.deliveries import DroneScheduled, PackageReady

from .fakes import T0, RecordingPublisher
from .samples import envelope_json

READY = PackageReady(delivery_id="d-1", package_id="pkg-1", size="small", weight=2)


def test_stamp_fills_every_envelope_field():
    parent = new_traceparent()
    out = Outgoing(DELIVERY_EVENTS_QUEUE, READY, "PackageReady:d-1", "d-1", session_id="d-1")
    envelope = stamp(out, Cause("DeliveryRequested:d-1", parent), T0)
    assert envelope.type == "PackageReady" and envelope.schema_version == 1
    assert envelope.message_id == "PackageReady:d-1" and envelope.correlation_id == "d-1"
    assert envelope.causation_id == "DeliveryRequested:d-1"
    assert trace_id(envelope.traceparent) == trace_id(parent) and envelope.traceparent != parent
    assert envelope.occurred_at == T0
    assert envelope.data == {"deliveryId": "d-1", "packageId": "pkg-1", "size": "small", "weight": 2.0}
    assert envelope.properties() == {"type": "PackageReady", "schemaVersion": 1, "correlationId": "d-1",
                                     "causationId": "DeliveryRequested:d-1", "traceparent": envelope.traceparent,
                                     "occurredAt": "2026-11-22T09:00:00Z"}


def test_envelope_round_trips_through_json():
    body = envelope_json(READY, "d-1", T0)
    envelope = parse_envelope(body)
    assert isinstance(envelope, Envelope)
    assert ContractRegistry(PackageReady).decode(envelope) == READY


def test_a_new_trace_when_the_parent_is_missing_or_invalid():
    assert trace_id(child_traceparent(None))
    assert trace_id(child_traceparent("garbage"))
    assert trace_id(child_traceparent("00-" + "0" * 32 + "-" + "1" * 16 + "-01")) != "0" * 32


@pytest.mark.parametrize(("body", "error"), [
    (b"\xff\xfe", MalformedMessage),
    (b"not json", MalformedMessage),
    (b"[1, 2]", MalformedMessage),
    (b'{"type": "PackageReady"}', MalformedMessage),
    (b"[" * 32_000 + b"]" * 32_000, MalformedMessage),
    (b'{"type": ' + b"7" * 5_000 + b"}", MalformedMessage),
    (b'{"type": "\\udfff"}', MalformedMessage),
])
def test_unreadable_envelopes_are_malformed(body: bytes, error: type[PermanentFailure]):
    with pytest.raises(error):
        parse_envelope(body)


def test_unknown_type_and_version_and_bad_data_are_permanent():
    registry = ContractRegistry(PackageReady)
    base = json.loads(envelope_json(READY, "d-1", T0))
    with pytest.raises(UnknownMessageType):
        registry.decode(Envelope.model_validate({**base, "type": "Mystery"}))
    with pytest.raises(UnknownSchemaVersion) as failure:
        registry.decode(Envelope.model_validate({**base, "schemaVersion": 2}))
    assert failure.value.reason is ReasonCode.UNKNOWN_SCHEMA_VERSION
    with pytest.raises(MalformedMessage) as malformed:
        registry.decode(Envelope.model_validate({**base, "data": {"deliveryId": "d-1", "size": "small"}}))
    assert "packageId" in malformed.value.description and "weight" in malformed.value.description


@pytest.mark.parametrize("hostile", ["d/1", "d#1", "d?1", "d\\1", "d\x00", "d" * 2000, ""])
def test_ids_that_become_table_keys_are_refused_when_decoding(hostile: str):
    base = json.loads(envelope_json(READY, "d-1", T0))
    with pytest.raises(MalformedMessage, match="correlationId"):
        parse_envelope(json.dumps({**base, "correlationId": hostile}).encode())
    scheduled = {"deliveryId": "d-1", "droneId": hostile, "capacityKg": 5}
    with pytest.raises(MalformedMessage, match="droneId"):
        ContractRegistry(DroneScheduled).decode(Envelope.model_validate(
            {**base, "type": "DroneScheduled", "data": scheduled}))


def test_upcasters_read_older_versions():
    class PackageReadyV2(PackageReady):
        SCHEMA_VERSION = 2

    def upcast_v1_v2(data: dict) -> dict:
        return {**data, "size": data["size"].lower()}

    registry = ContractRegistry(PackageReadyV2, upcasters={("PackageReady", 1): upcast_v1_v2})
    base = json.loads(envelope_json(READY, "d-1", T0))
    decoded = registry.decode(Envelope.model_validate({**base, "data": {**base["data"], "size": "SMALL"}}))
    assert decoded.size == "small"


def test_classify():
    assert classify(BusinessRuleViolation("no", ReasonCode.NO_DRONE_CAN_CARRY)).reason is ReasonCode.NO_DRONE_CAN_CARRY
    assert classify(TransientFailure("later")) is None
    assert classify(ConnectionError("broker down")) is None
    assert classify(KeyError("bug")) is None  # unknown: transient, the broker bounds retries


def test_deterministic_message_ids_fit_service_bus():
    assert message_id("PackageReady", "d-1") == "PackageReady:d-1"
    long_id = message_id("CancelPackage", "x" * 200, "y")
    assert len(long_id) == MAX_MESSAGE_ID and long_id == message_id("CancelPackage", "x" * 200, "y")
    assert long_id != message_id("CancelPackage", "x" * 200, "z")


def test_processed_messages_are_bounded():
    processed = ProcessedMessages(limit=3)
    for i in range(5):
        processed.add(f"m{i}")
    processed.add("m4")
    assert processed.ids == ["m2", "m3", "m4"] and "m1" not in processed


class _Consumer:
    """A consumer whose route does whatever the test says."""

    contracts = ContractRegistry(PackageReady)

    def __init__(self, behaviour) -> None:
        self.behaviour = behaviour
        self.handled: list = []
        self.compensated: list = []

    def handle(self, received) -> None:
        self.handled.append(received)
        self.behaviour()

    def on_permanent_failure(self, incoming, received, failure) -> None:
        self.compensated.append((incoming.delivery_id, received is not None, failure.reason))


def incoming(body: bytes, **kw) -> Incoming:
    defaults = dict(message_id="m-1", source="delivery-events", subject="PackageReady", session_id="d-1",
                    correlation_id="d-1", application_properties={"type": "PackageReady", "traceparent": "x"},
                    delivery_count=2)
    return Incoming(body=body, **{**defaults, **kw})


def test_a_good_message_is_routed_and_completed():
    consumer, publisher = _Consumer(lambda: None), RecordingPublisher(FixedClock(T0))
    consume(incoming(envelope_json(READY, "d-1", T0)), consumer, publisher)
    assert consumer.handled[0].payload == READY
    assert consumer.handled[0].cause.correlation_id == "d-1"
    assert publisher.dead_letters == [] and consumer.compensated == []


def test_a_permanent_failure_compensates_dead_letters_and_returns():
    def refuse() -> None:
        raise BusinessRuleViolation("too heavy", ReasonCode.WEIGHT_EXCEEDS_SIZE_LIMIT)

    consumer, publisher = _Consumer(refuse), RecordingPublisher(FixedClock(T0))
    message = incoming(envelope_json(READY, "d-1", T0))
    consume(message, consumer, publisher)  # returns: the host completes the original
    assert consumer.compensated == [("d-1", True, ReasonCode.WEIGHT_EXCEEDS_SIZE_LIMIT)]
    [letter] = publisher.dead_letters
    assert letter.incoming is message
    props = dead_letter_properties(letter, T0)
    assert props["DeadLetterReason"] == "WeightExceedsSizeLimit"
    assert props["DeadLetterErrorDescription"] == "too heavy"
    assert props["DeadLetterSource"] == "delivery-events"
    assert props["OriginalMessageId"] == "m-1" and props["OriginalDeliveryCount"] == 2
    assert props["type"] == "PackageReady"  # the original properties travel along
    assert props["FirstFailureAt"] == props["LastFailureAt"] == T0.isoformat()
    assert props["Compensated"] is True  # consume() ran the service's compensation first


def test_a_malformed_message_still_compensates_by_its_correlation_id():
    consumer, publisher = _Consumer(lambda: None), RecordingPublisher(FixedClock(T0))
    consume(incoming(b"{oops", session_id=None), consumer, publisher)
    assert consumer.handled == []
    assert consumer.compensated == [("d-1", False, ReasonCode.MALFORMED_MESSAGE)]
    assert publisher.dead_letters[0].reason == "MalformedMessage"


def test_a_malformed_message_with_an_unusable_id_is_only_dead_lettered():
    consumer, publisher = _Consumer(lambda: None), RecordingPublisher(FixedClock(T0))
    consume(incoming(b"{oops", session_id=None, correlation_id="bad/id#"), consumer, publisher)
    assert consumer.compensated == [(None, False, ReasonCode.MALFORMED_MESSAGE)]
    assert len(publisher.dead_letters) == 1


def test_a_session_that_does_not_match_the_correlation_id_is_malformed():
    consumer, publisher = _Consumer(lambda: None), RecordingPublisher(FixedClock(T0))
    consume(incoming(envelope_json(READY, "d-1", T0), session_id="d-2"), consumer, publisher)
    assert publisher.dead_letters[0].reason == "MalformedMessage"


def test_a_transient_failure_raises_for_redelivery_and_dead_letters_nothing():
    def flaky() -> None:
        raise ConnectionError("storage unavailable")

    consumer, publisher = _Consumer(flaky), RecordingPublisher(FixedClock(T0))
    with pytest.raises(ConnectionError):
        consume(incoming(envelope_json(READY, "d-1", T0)), consumer, publisher)
    assert publisher.dead_letters == [] and consumer.compensated == []


def test_a_compensation_that_fails_transiently_is_retried_whole():
    consumer, publisher = _Consumer(lambda: None), RecordingPublisher(FixedClock(T0))

    def broken(*args) -> None:
        raise ConnectionError("broker down")

    consumer.on_permanent_failure = broken  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        consume(incoming(b"{oops"), consumer, publisher)
    assert publisher.dead_letters == []  # not dead-lettered until the saga has been told
