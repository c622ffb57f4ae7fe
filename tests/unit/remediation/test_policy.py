"""The policy table, per reason code and message type; reading both roads a dead letter takes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from choreography.messaging import Incoming
from choreography.reason_codes import ReasonCode
from remediation.domain import Decision, Policy, decide, read

from .audit_contract import T0, record

POLICY = Policy(max_attempts=3, retry_base=timedelta(seconds=10), retry_max=timedelta(seconds=25))


@pytest.mark.parametrize("reason", ["MaxDeliveryCountExceeded", "TTLExpiredException", "MessageLockLost"])
def test_a_transient_failure_is_retried_with_a_growing_delay_then_parked(reason):
    verdicts = [decide(record(reason=reason, attempt=n), POLICY, compensation_declared=True) for n in range(4)]
    assert [v.decision for v in verdicts] == [Decision.RETRY] * 3 + [Decision.PARK]
    assert [v.attempt for v in verdicts[:3]] == [1, 2, 3]
    assert [v.delay for v in verdicts[:3]] == [timedelta(seconds=10), timedelta(seconds=20), timedelta(seconds=25)]
    assert "after 3 resubmissions" in verdicts[3].why


@pytest.mark.parametrize("reason", ["MalformedMessage", "UnknownMessageType", "UnknownSchemaVersion",
                                    "RetriesExhausted", "Unknown"])
@pytest.mark.parametrize("compensated", [True, False])
def test_an_unusable_message_is_parked_whatever_else_holds(reason, compensated):
    assert decide(record(reason=reason, compensated=compensated), POLICY, True).decision is Decision.PARK


@pytest.mark.parametrize("reason", [ReasonCode.WEIGHT_EXCEEDS_SIZE_LIMIT, ReasonCode.NO_DRONE_CAN_CARRY,
                                    ReasonCode.JOIN_TIMEOUT, "AC01"])
def test_a_business_failure_is_closed_when_compensated_compensated_when_declared_else_parked(reason):
    assert decide(record(reason=reason, compensated=True), POLICY, True).decision is Decision.CLOSE
    assert decide(record(reason=reason, compensated=False), POLICY, True).decision is Decision.COMPENSATE
    assert decide(record(reason=reason, compensated=False), POLICY, False).decision is Decision.PARK


def test_the_delay_never_exceeds_the_maximum():
    assert Policy(10, timedelta(seconds=30), timedelta(minutes=30)).delay(10) == timedelta(minutes=30)


def test_an_app_level_dead_letter_is_read_from_its_properties():
    incoming = Incoming(
        body=b'{"traceparent": "00-11111111111111111111111111111111-2222222222222222-01"}',
        message_id="deadletter:deliveries/subscriptions/package:m-1", source="deadletter",
        subject="DeliveryRequested", correlation_id="d-1", content_type="application/json",
        application_properties={"DeadLetterReason": "WeightExceedsSizeLimit", "DeadLetterErrorDescription": "too heavy",
                                "DeadLetterSource": "deliveries/subscriptions/package", "OriginalMessageId": "m-1",
                                "OriginalDeliveryCount": 2, "FirstFailureAt": T0.isoformat(),
                                "LastFailureAt": (T0 + timedelta(minutes=1)).isoformat(), "Compensated": True,
                                "traceparent": "00-99999999999999999999999999999999-2222222222222222-01"},
        enqueued_at=T0 + timedelta(minutes=2))
    got = read(incoming)
    assert (got.entity, got.subscription, got.reason, got.description) == (
        "deliveries/subscriptions/package", "package", "WeightExceedsSizeLimit", "too heavy")
    assert (got.original_message_id, got.correlation_id, got.delivery_count, got.compensated) == ("m-1", "d-1", 2, True)
    assert (got.first_failure_at, got.last_failure_at) == (T0, T0 + timedelta(minutes=1))
    # the envelope's trace context wins: the SDK may have rewritten the property with its own span
    assert got.traceparent == "00-11111111111111111111111111111111-2222222222222222-01"
    assert got.attempt == 0


def test_a_dead_letter_forwarded_by_service_bus_is_read_from_its_annotations_and_words():
    incoming = Incoming(
        body=b"not json", message_id="DeliveryRequested:d-2", source="deadletter", subject="DeliveryRequested",
        correlation_id="d-2", application_properties={
            "DeadLetterReason": "MaxDeliveryCountExceeded",
            "DeadLetterErrorDescription": "Message could not be consumed after 5 delivery attempts.",
            "RemediationAttempt": 2, "traceparent": "00-33333333333333333333333333333333-2222222222222222-01"},
        enqueued_at=T0, dead_letter_source="deliveries/Subscriptions/drone-scheduler")
    got = read(incoming)
    assert got.entity == "deliveries/subscriptions/drone-scheduler" and got.subscription == "drone-scheduler"
    assert got.delivery_count == 5 and got.attempt == 2 and not got.compensated
    assert got.first_failure_at == got.last_failure_at == T0
    assert got.original_message_id == "DeliveryRequested:d-2"
    assert got.traceparent == "00-33333333333333333333333333333333-2222222222222222-01"


def test_a_dead_letter_with_no_reason_at_all_is_parked():
    got = read(Incoming(body=b"", message_id="x", source="deadletter"))
    assert got.reason == "Unknown" and got.entity == "unknown"
    assert decide(got, POLICY, False).decision is Decision.PARK
