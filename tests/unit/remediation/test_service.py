"""The remediation use case on in-memory ports: each decision carried out once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from choreography.clock import FixedClock
from choreography.messaging import Incoming, Resubmission
from remediation.domain import Decision, Outcome, Policy
from remediation.service import Remediation
from tests.unit.delivery_app.fakes import RecordingEventPublisher, RecordingPublisher

from .audit_contract import T0, check_audit_log
from .fakes import InMemoryAuditLog

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class RecordingResubmitter:
    def __init__(self) -> None:
        self.copies: list[Resubmission] = []
        self.fail = False

    def resubmit(self, copy: Resubmission) -> None:
        if self.fail:
            raise ConnectionError("the bus went away")
        self.copies.append(copy)


class World:
    def __init__(self) -> None:
        self.clock = FixedClock(T0)
        self.audit = InMemoryAuditLog()
        self.resubmitter = RecordingResubmitter()
        self.publisher = RecordingPublisher(self.clock)
        self.deliveries = RecordingEventPublisher()
        self.payments = RecordingEventPublisher()
        self.remediation = Remediation(self.audit, self.resubmitter, self.publisher, self.deliveries, self.payments,
                                       self.clock, Policy(2, timedelta(seconds=5), timedelta(minutes=1)))


@pytest.fixture
def world() -> World:
    return World()


def dead_letter(message_id: str = "DeliveryRequested:d-1", reason: str = "MaxDeliveryCountExceeded",
                source: str = "deliveries/Subscriptions/package", **props: object) -> Incoming:
    return Incoming(body=b'{"traceparent": "' + TRACE.encode() + b'"}', message_id=message_id, source="deadletter",
                    subject="DeliveryRequested", correlation_id="d-1", content_type="application/json",
                    application_properties={"DeadLetterReason": reason, "type": "DeliveryRequested",
                                            "DeadLetterErrorDescription": "Message could not be consumed after 5 "
                                                                          "delivery attempts.", **props},
                    enqueued_at=T0, dead_letter_source=source)


def test_the_fake_audit_log_keeps_the_contract():
    check_audit_log(InMemoryAuditLog())


def test_a_transient_dead_letter_goes_back_to_its_subscription_only_later_counted(world):
    entry = world.remediation.handle(dead_letter())
    assert entry.verdict.decision is Decision.RETRY and entry.outcome is Outcome.DONE
    [copy] = world.resubmitter.copies
    assert copy.destination == ("deliveries", "package")
    assert copy.scheduled_at == T0 + timedelta(seconds=5)
    assert copy.message_id == "resubmit:1:DeliveryRequested:d-1"  # new: the original id is a duplicate
    assert copy.body == dead_letter().body and copy.traceparent == TRACE
    assert copy.application_properties["RemediationAttempt"] == 1
    assert copy.application_properties["OriginalMessageId"] == "DeliveryRequested:d-1"
    assert "DeadLetterReason" not in copy.application_properties


def test_the_second_failure_of_a_copy_waits_twice_as_long_and_the_third_is_parked(world):
    world.remediation.handle(dead_letter("resubmit:1:DeliveryRequested:d-1", RemediationAttempt=1,
                                         OriginalMessageId="DeliveryRequested:d-1"))
    assert world.resubmitter.copies[-1].scheduled_at == T0 + timedelta(seconds=10)
    assert world.resubmitter.copies[-1].message_id == "resubmit:2:DeliveryRequested:d-1"
    parked = world.remediation.handle(dead_letter("resubmit:2:DeliveryRequested:d-1", RemediationAttempt=2,
                                                  OriginalMessageId="DeliveryRequested:d-1"))
    assert parked.verdict.decision is Decision.PARK
    [event] = world.deliveries.published
    assert event.type == "MessageParked" and event.data["originalMessageId"] == "DeliveryRequested:d-1"
    assert event.data["entity"] == "deliveries/subscriptions/package" and world.payments.published == []


def test_the_same_dead_letter_twice_is_decided_and_acted_on_once(world):
    world.remediation.handle(dead_letter())
    again = world.remediation.handle(dead_letter())
    assert again.outcome is Outcome.DONE and len(world.resubmitter.copies) == 1


def test_a_crash_between_decision_and_act_finishes_the_same_decision_on_redelivery(world):
    world.resubmitter.fail = True
    with pytest.raises(ConnectionError):
        world.remediation.handle(dead_letter())
    entry = world.audit.get("DeliveryRequested:d-1")
    assert entry is not None and entry.outcome is Outcome.PENDING
    world.resubmitter.fail = False
    world.clock.advance(300)  # the decision (and its delay) was taken before
    world.remediation.handle(dead_letter())
    [copy] = world.resubmitter.copies
    assert copy.message_id == "resubmit:1:DeliveryRequested:d-1"


def test_an_uncompensated_business_failure_gets_its_owners_compensation(world):
    world.remediation.handle(dead_letter(reason="WeightExceedsSizeLimit", source="deliveries/subscriptions/package"))
    [sent] = world.publisher.sent
    assert sent.envelope.type == "PackageRejected" and sent.message.message_id == "PackageRejected:d-1"
    assert sent.message.session_id == "d-1" and sent.envelope.data["reason"] == "WeightExceedsSizeLimit"
    assert sent.envelope.traceparent.split("-")[1] == TRACE.split("-")[1]  # in the delivery's trace


def test_a_compensated_business_failure_is_only_recorded(world):
    entry = world.remediation.handle(dead_letter(reason="WeightExceedsSizeLimit", Compensated=True))
    assert entry.verdict.decision is Decision.CLOSE
    assert world.publisher.sent == [] and world.resubmitter.copies == [] and world.deliveries.published == []


def test_a_payment_dead_letter_is_parked_on_the_payments_topic(world):
    world.remediation.handle(dead_letter(reason="MalformedMessage", source="payment-files-adapted"))
    assert [e.type for e in world.payments.published] == ["MessageParked"] and world.deliveries.published == []
