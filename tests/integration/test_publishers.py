"""The one publisher and the event publisher against the Service Bus and Event Grid emulators."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import ClientAuthenticationError

from choreography.entities import DEADLETTER_QUEUE, DELIVERIES_TOPIC, DELIVERY_EVENTS_QUEUE
from choreography.messaging import Cause, DeadLetter, Incoming, Outgoing, OutgoingEvent
from choreography.publishing import EventGridPublisher, ServiceBusPublisher
from choreography.tracing import new_traceparent, trace_id
from contracts.deliveries import PackageReady
from devstack.stack import EVENTGRID_KEY
from tests.support.waiting import wait_until
from tests.unit.delivery_app.samples import new_id, requested_outgoing


@pytest.fixture
def publisher(servicebus):
    publisher = ServiceBusPublisher(servicebus.connection_string)
    yield publisher
    publisher.close()


def ready(delivery_id: str, **kw) -> Outgoing:
    return Outgoing(DELIVERY_EVENTS_QUEUE, PackageReady(delivery_id=delivery_id, package_id="p", size="small",
                                                        weight=1), f"PackageReady:{delivery_id}", delivery_id,
                    session_id=delivery_id, **kw)


def test_a_topic_message_carries_the_envelope_and_reaches_the_subscriptions_by_label(publisher, mailbox):
    out = requested_outgoing(datetime.now(UTC))
    parent = new_traceparent()
    [envelope] = publisher.send([out], Cause("http:abc", parent))
    for subscription in ("deliveries/subscriptions/package", "deliveries/subscriptions/drone-scheduler"):
        message = mailbox.one(subscription, "DeliveryRequested", out.correlation_id)
        assert message.message_id == f"DeliveryRequested:{out.correlation_id}"
        assert message.correlation_id == out.correlation_id
        assert message.content_type == "application/json"
        props = message.application_properties
        assert props["type"] == "DeliveryRequested" and props["schemaVersion"] == 1
        assert props["correlationId"] == out.correlation_id and props["causationId"] == "http:abc"
        assert trace_id(props["traceparent"]) == trace_id(parent)
        assert props["occurredAt"].endswith("Z")
        body = json.loads(message.body)
        assert body["messageId"] == envelope.message_id and body["data"]["packageInfo"]["size"] == "small"


def test_session_messages_and_scheduled_timers(publisher, mailbox):
    delivery_id = new_id()
    at = datetime.now(UTC) + timedelta(seconds=1)
    publisher.send([ready(delivery_id, scheduled_at=at)], Cause("m", None))
    message = mailbox.one("delivery-events", "PackageReady", delivery_id, session=True)
    assert message.session_id == delivery_id
    assert abs(message.scheduled_enqueue_time_utc - at) < timedelta(milliseconds=1)
    assert message.received_at >= at  # never handed out before its time


def test_duplicate_message_ids_are_dropped_by_the_broker(publisher, mailbox):
    delivery_id = new_id()
    publisher.send([ready(delivery_id)], Cause("m-1", None))
    publisher.send([ready(delivery_id)], Cause("m-2", None))
    sentinel = mailbox.send_sentinel("delivery-events", session_id=delivery_id)
    arrived = mailbox.drain_until_sentinel("delivery-events", sentinel, session_id=delivery_id)
    assert [m.subject for m in arrived if m.delivery_id == delivery_id] == ["PackageReady"]
    mailbox.take("delivery-events", lambda m: m.delivery_id == delivery_id, session_id=delivery_id)


def test_concurrent_sends_from_many_threads_all_arrive(publisher, mailbox):
    ids = [new_id() for _ in range(12)]
    threads = [threading.Thread(target=publisher.send, args=([requested_outgoing(datetime.now(UTC),
                                                                                 deliveryId=i)], Cause(i, None)))
               for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wanted = set(ids)
    got = mailbox.take("deliveries/subscriptions/package", lambda m: m.delivery_id in wanted, count=len(ids))
    assert {m.delivery_id for m in got} == wanted


def test_dead_letter_copies_the_message_with_the_reason(publisher, mailbox):
    delivery_id = new_id()
    original = Incoming(body=b'{"broken": true', message_id=f"DeliveryRequested:{delivery_id}",
                        source="deliveries/subscriptions/package", subject="DeliveryRequested",
                        correlation_id=delivery_id, content_type="application/json",
                        application_properties={"type": "DeliveryRequested", "correlationId": delivery_id},
                        delivery_count=1)
    letter = DeadLetter(original, "MalformedMessage", "body is not JSON")
    publisher.dead_letter(letter)
    publisher.dead_letter(letter)  # a redelivered failure: dropped as a duplicate
    sentinel = mailbox.send_sentinel(DEADLETTER_QUEUE.name)
    arrived = [m for m in mailbox.drain_until_sentinel(DEADLETTER_QUEUE.name, sentinel)
               if m.correlation_id == delivery_id]
    [copy] = arrived
    assert copy.body == original.body and copy.subject == "DeliveryRequested"
    props = copy.application_properties
    assert props["DeadLetterReason"] == "MalformedMessage"
    assert props["DeadLetterErrorDescription"] == "body is not JSON"
    assert props["DeadLetterSource"] == "deliveries/subscriptions/package"
    assert props["OriginalMessageId"] == original.message_id and props["type"] == "DeliveryRequested"
    assert props["OriginalDeliveryCount"] == 1 and props["Compensated"] is True
    assert props["FirstFailureAt"] == props["LastFailureAt"]
    mailbox.take(DEADLETTER_QUEUE.name, lambda m: m.correlation_id == delivery_id)


def test_a_scheduled_retry_on_the_topic_reaches_only_the_scheduler(publisher, mailbox):
    from drone_scheduler.messages import RetryDroneScheduling

    delivery_id = new_id()
    retry = RetryDroneScheduling(delivery_id=delivery_id, weight=1, deadline=datetime.now(UTC) + timedelta(hours=1),
                                 attempt=1)
    publisher.send([Outgoing(DELIVERIES_TOPIC, retry, f"Retry:{delivery_id}", delivery_id,
                             scheduled_at=datetime.now(UTC) + timedelta(milliseconds=300))], Cause("m", None))
    mailbox.one("deliveries/subscriptions/drone-scheduler", "RetryDroneScheduling", delivery_id)
    sentinel = mailbox.send_sentinel("deliveries", subject="DeliveryRequested")
    package_side = mailbox.drain_until_sentinel("deliveries/subscriptions/package", sentinel)
    assert all(m.delivery_id != delivery_id for m in package_side)


def test_event_grid_publisher_sends_cloudevents(eventgrid):
    delivery_id = new_id()
    publisher = EventGridPublisher(eventgrid.topic_endpoint(), EVENTGRID_KEY)
    parent = new_traceparent()
    publisher.publish([OutgoingEvent(f"DeliveryShipped:{delivery_id}", "DeliveryShipped", f"deliveries/{delivery_id}",
                                     {"deliveryId": delivery_id, "status": "Shipped"}, delivery_id)],
                      Cause("m-1", parent))
    publisher.close()
    events = wait_until(lambda: [e for e in eventgrid.events(type="DeliveryShipped")
                                 if e["id"] == f"DeliveryShipped:{delivery_id}"], "the event")
    event = events[0]["event"]
    assert event["specversion"] == "1.0" and event["source"] == "/drone-delivery"
    assert event["subject"] == f"deliveries/{delivery_id}"
    assert event["data"] == {"deliveryId": delivery_id, "status": "Shipped"}
    assert trace_id(event["traceparent"]) == trace_id(parent)
    assert event["correlationid"] == delivery_id and event["causationid"] == "m-1"


def test_event_grid_publisher_with_a_wrong_key_fails_loudly(eventgrid):
    publisher = EventGridPublisher(eventgrid.topic_endpoint(), "wrong-key")
    with pytest.raises(ClientAuthenticationError):
        publisher.publish([OutgoingEvent("x", "DeliveryShipped", "deliveries/x", {"deliveryId": "x"}, "x")],
                          Cause("m", None))
    publisher.close()
