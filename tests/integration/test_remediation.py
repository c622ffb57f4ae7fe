"""Remediation against the real emulators: every kind of dead letter reaches ``deadletter`` with
what remediation needs; a resubmission reaches only the subscription that failed; retry with
backoff, the attempt cap, park, compensation and a duplicate dead letter, through the real
handler and Table ``remediations`` in Azurite."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from choreography.entities import REMEDIATIONS_TABLE
from choreography.messaging import Resubmission
from choreography.publishing import ServiceBusPublisher
from choreography.runtime import runtime
from remediation.adapters import TableAuditLog
from remediation.domain import Decision, Outcome
from remediation.handlers import remediation_on_dead_letter
from tests.support.waiting import DEADLINE, wait_until
from tests.unit.remediation.audit_contract import check_audit_log

from .conftest import Mailbox
from .hops import DEADLETTER, DRONE_RELEASE, DRONE_SCHEDULER, EVENTS, PACKAGE

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def publisher(servicebus):
    publisher = ServiceBusPublisher(servicebus.connection_string)
    yield publisher
    publisher.close()


def new_id() -> str:
    return f"rem-{uuid.uuid4().hex[:12]}"


def request(delivery_id: str, **properties: object) -> ServiceBusMessage:
    body = json.dumps({"type": "DeliveryRequested", "correlationId": delivery_id, "traceparent": TRACE}).encode()
    return ServiceBusMessage(body, message_id=f"DeliveryRequested:{delivery_id}", subject="DeliveryRequested",
                             correlation_id=delivery_id, content_type="application/json",
                             application_properties={"type": "DeliveryRequested", **properties})


def audit(tables) -> TableAuditLog:
    return TableAuditLog(tables.create_table_if_not_exists(REMEDIATIONS_TABLE))


def test_the_table_audit_log_keeps_the_contract(fresh_table):
    check_audit_log(TableAuditLog(fresh_table()))


def test_a_resubmission_reaches_only_the_subscription_that_failed(publisher, mailbox: Mailbox):
    delivery_id = new_id()
    publisher.resubmit(Resubmission(
        entity=PACKAGE, body=b'{"resubmitted": true}', message_id=f"resubmit:1:{delivery_id}",
        subject="DeliveryRequested", correlation_id=delivery_id, session_id=None, content_type="application/json",
        application_properties={"RemediationAttempt": 1}))
    [copy] = mailbox.take(PACKAGE, lambda m: m.correlation_id == delivery_id)
    assert copy.body == b'{"resubmitted": true}' and copy.application_properties["ResubmitTo"] == "package"
    # drone-scheduler routes the same label, yet never sees the copy: everything it got before a
    # sentinel sent afterwards holds nothing of this delivery
    sentinel = mailbox.send_sentinel("deliveries", subject="DeliveryRequested")
    seen = mailbox.drain_until_sentinel(DRONE_SCHEDULER, sentinel)
    assert [m for m in seen if m.correlation_id == delivery_id] == []
    mailbox.take(PACKAGE, lambda m: m.message_id == sentinel)


def test_a_resubmission_to_the_session_queue_keeps_its_session(publisher, mailbox: Mailbox):
    delivery_id = new_id()
    publisher.resubmit(Resubmission(
        entity=EVENTS, body=b"{}", message_id=f"resubmit:1:{delivery_id}", subject="PackageReady",
        correlation_id=delivery_id, session_id=delivery_id, content_type="application/json",
        application_properties={}))
    [copy] = mailbox.take(EVENTS, lambda m: True, session_id=delivery_id)
    assert copy.session_id == delivery_id and "ResubmitTo" not in copy.application_properties


def test_a_message_past_max_delivery_count_reaches_deadletter_with_its_source(sb_client: ServiceBusClient,
                                                                             mailbox: Mailbox):
    delivery_id = new_id()
    with sb_client.get_topic_sender("deliveries") as sender:
        sender.send_messages(request(delivery_id))
    abandoned = 0
    with sb_client.get_subscription_receiver("deliveries", "package", max_wait_time=1) as receiver:
        deadline = time.monotonic() + DEADLINE
        while abandoned < 5 and time.monotonic() < deadline:
            for message in receiver.receive_messages(max_message_count=10, max_wait_time=1):
                if message.correlation_id == delivery_id:
                    receiver.abandon_message(message)  # what the host does when the function raises
                    abandoned += 1
                else:
                    receiver.complete_message(message)
    assert abandoned == 5
    [dead] = mailbox.take(DEADLETTER, lambda m: m.correlation_id == delivery_id)
    assert dead.application_properties["DeadLetterReason"] == "MaxDeliveryCountExceeded"
    assert dead.dead_letter_source and dead.dead_letter_source.lower() == PACKAGE.lower()
    assert dead.message_id == f"DeliveryRequested:{delivery_id}"
    mailbox.take(DRONE_SCHEDULER, lambda m: m.correlation_id == delivery_id)  # tidy: its other copy


def test_an_expired_message_reaches_deadletter_with_its_source(sb_client: ServiceBusClient, mailbox: Mailbox):
    delivery_id = new_id()
    message = ServiceBusMessage(b"{}", message_id=f"ReleaseDrone:{delivery_id}", subject="ReleaseDrone",
                                correlation_id=delivery_id, time_to_live=timedelta(milliseconds=300))
    with sb_client.get_topic_sender("deliveries") as sender:
        sender.send_messages(message)
    # nobody reads drone-release here: the message expires there and is forwarded
    [dead] = mailbox.take(DEADLETTER, lambda m: m.correlation_id == delivery_id)
    assert dead.application_properties["DeadLetterReason"] == "TTLExpiredException"
    assert dead.dead_letter_source and dead.dead_letter_source.lower() == DRONE_RELEASE.lower()


@pytest.mark.usefixtures("app")
def test_remediation_retries_where_it_failed_with_backoff_then_parks(sb_client, mailbox: Mailbox, tables,
                                                                    eventgrid):
    delivery_id = new_id()
    first_failure = datetime.now(UTC)
    with sb_client.get_queue_sender(DEADLETTER) as sender:  # as Service Bus forwards it
        sender.send_messages(request(delivery_id, DeadLetterReason="MaxDeliveryCountExceeded",
                                     DeadLetterErrorDescription="Message could not be consumed after 5 delivery "
                                                                "attempts.",
                                     DeadLetterSource=PACKAGE))
    [dead] = mailbox.take(DEADLETTER, lambda m: m.correlation_id == delivery_id)
    remediation_on_dead_letter(dead.trigger())
    remediation_on_dead_letter(dead.trigger())  # the same dead letter again: one decision, one copy

    entry = audit(tables).get(dead.message_id)
    assert entry is not None and entry.verdict.decision is Decision.RETRY and entry.outcome is Outcome.DONE
    record = entry.record
    assert (record.entity, record.reason, record.correlation_id, record.delivery_count, record.traceparent) == (
        PACKAGE, "MaxDeliveryCountExceeded", delivery_id, 5, TRACE)
    assert record.original_message_id == f"DeliveryRequested:{delivery_id}"
    assert record.first_failure_at is not None and record.first_failure_at >= first_failure - timedelta(seconds=5)

    [copy] = mailbox.take(PACKAGE, lambda m: m.correlation_id == delivery_id)  # scheduled: 1 s later
    assert copy.application_properties["RemediationAttempt"] == 1
    assert copy.application_properties["ResubmitTo"] == "package"
    assert copy.body == dead.body and copy.message_id == f"resubmit:1:DeliveryRequested:{delivery_id}"
    assert copy.enqueued_time_utc >= dead.enqueued_time_utc + timedelta(seconds=1) - timedelta(milliseconds=50)

    # the copy fails again, twice: the second time is past REMEDIATION_MAX_ATTEMPTS=2 and parked
    for attempt, decision in ((1, Decision.RETRY), (2, Decision.PARK)):
        again = replace(copy, application_properties={
            **copy.application_properties, "DeadLetterReason": "MaxDeliveryCountExceeded",
            "DeadLetterSource": PACKAGE, "RemediationAttempt": attempt}, message_id=f"dl-{attempt}-{delivery_id}")
        remediation_on_dead_letter(again.trigger())
        got = audit(tables).get(again.message_id)
        assert got is not None and got.verdict.decision is decision, got
        assert got.record.first_failure_at == record.first_failure_at  # carried by the copies
    [parked] = wait_until(lambda: [e for e in eventgrid.events("deliveries", type="MessageParked")
                                   if delivery_id in json.dumps(e)], "the MessageParked event")
    assert delivery_id in json.dumps(parked)
    runtime().close()


@pytest.mark.usefixtures("app")
def test_an_uncompensated_business_failure_is_compensated_by_its_owners_declaration(sb_client, mailbox: Mailbox,
                                                                                   tables):
    delivery_id = new_id()
    with sb_client.get_queue_sender(DEADLETTER) as sender:
        sender.send_messages(request(delivery_id, DeadLetterReason="NoDroneCanCarryWeight",
                                     DeadLetterErrorDescription="no drone carries 500 kg",
                                     DeadLetterSource=DRONE_SCHEDULER))
    [dead] = mailbox.take(DEADLETTER, lambda m: m.correlation_id == delivery_id)
    remediation_on_dead_letter(dead.trigger())
    [unavailable] = mailbox.take(EVENTS, lambda m: m.subject == "DroneUnavailable", session_id=delivery_id)
    assert json.loads(unavailable.body)["data"]["reason"] == "NoDroneCanCarryWeight"
    assert unavailable.message_id == f"DroneUnavailable:{delivery_id}"
    entry = audit(tables).get(dead.message_id)
    assert entry is not None and entry.verdict.decision is Decision.COMPENSATE
