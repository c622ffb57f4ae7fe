"""Service Bus triggers against the emulator through the real SDK: settlement by outcome,
redelivery and dead-lettering, sessions in order, topic subscriptions, batches."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue

from devstack.stack import DevHost, ServiceBusEmulator

from .conftest import Records
from .support import wait_until


@pytest.fixture
def sb(servicebus: ServiceBusEmulator, devhost: DevHost) -> Iterator[ServiceBusClient]:
    with ServiceBusClient.from_connection_string(servicebus.connection_string) as client:
        yield client


def body(tag: str, **extra: object) -> str:
    return json.dumps({"tag": tag, **extra})


def dead_letters(sb: ServiceBusClient, queue: str, message_id: str) -> list:
    found = []
    with sb.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=1) as receiver:
        for message in receiver.receive_messages(max_message_count=50, max_wait_time=1):
            if message.message_id == message_id:
                found.append(message)
                receiver.complete_message(message)
            else:
                receiver.abandon_message(message)
    return found


def test_message_reaches_the_function_with_its_properties_and_is_completed(
        sb: ServiceBusClient, records: Records, tag: str) -> None:
    message_id = f"m-{uuid.uuid4()}"
    with sb.get_queue_sender("orders") as sender:
        sender.send_messages(ServiceBusMessage(
            body(tag), message_id=message_id, correlation_id="corr-1", subject="OrderPlaced",
            content_type="application/json", application_properties={"region": "eu", "priority": 5},
        ))
    [seen] = records.wait(tag, 1, "sb_orders")
    assert seen["message_id"] == message_id
    assert json.loads(seen["body"]) == {"tag": tag}
    assert seen["correlation_id"] == "corr-1"
    assert seen["subject"] == seen["label"] == "OrderPlaced"
    assert seen["content_type"] == "application/json"
    assert seen["application_properties"] == {"region": "eu", "priority": 5}
    assert seen["delivery_count"] == 1  # as the .NET SDK behind the host reports a first delivery
    assert seen["sequence_number"] > 0 and seen["enqueued_time_utc"] and seen["lock_token"]
    # Completed: nothing comes back, nothing was dead-lettered.
    with sb.get_queue_receiver("orders", max_wait_time=1) as receiver:
        leftovers = [m for m in receiver.peek_messages(max_message_count=50) if m.message_id == message_id]
    assert leftovers == []
    assert dead_letters(sb, "orders", message_id) == []
    assert len(records.all(tag, "sb_orders")) == 1


def test_exception_abandons_so_it_is_redelivered_then_dead_lettered(
        sb: ServiceBusClient, records: Records, tag: str) -> None:
    message_id = f"m-{uuid.uuid4()}"
    with sb.get_queue_sender("orders") as sender:
        sender.send_messages(ServiceBusMessage(body(tag, fail=True), message_id=message_id))
    # The test queue has MaxDeliveryCount 3: three tries, then the dead-letter queue.
    seen = records.wait(tag, 3, "sb_orders")
    assert [s["delivery_count"] for s in seen] == [1, 2, 3]
    [dead] = wait_until(lambda: dead_letters(sb, "orders", message_id), "the message in the dead-letter queue")
    assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
    assert len(records.all(tag, "sb_orders")) == 3


def test_session_messages_are_processed_in_order_per_session(
        sb: ServiceBusClient, records: Records, tag: str) -> None:
    sessions = [f"{tag}-a", f"{tag}-b", f"{tag}-c"]
    with sb.get_queue_sender("sessions") as sender:
        # Interleaved, one by one, so the order within each session is the order sent.
        for n in range(5):
            for session in sessions:
                sender.send_messages(ServiceBusMessage(body(tag, n=n), session_id=session))
    seen = records.wait(tag, 15, "sb_sessions")
    for session in sessions:
        order = [json.loads(s["body"])["n"] for s in seen if s["session_id"] == session]
        assert order == [0, 1, 2, 3, 4], f"session {session} ran out of order: {order}"


def test_topic_subscription_trigger(sb: ServiceBusClient, records: Records, tag: str) -> None:
    with sb.get_topic_sender("events") as sender:
        sender.send_messages(ServiceBusMessage(body(tag), message_id=f"e-{tag}"))
    [seen] = records.wait(tag, 1, "sb_events")
    assert seen["message_id"] == f"e-{tag}"


def test_cardinality_many_delivers_a_list(sb: ServiceBusClient, records: Records, tag: str) -> None:
    with sb.get_queue_sender("batch") as sender:
        sender.send_messages([ServiceBusMessage(body(tag, n=n)) for n in range(6)])
    seen = records.wait(tag, 6, "sb_batch")
    assert sorted(json.loads(s["body"])["n"] for s in seen) == list(range(6))
    assert max(s["batch_size"] for s in seen) > 1  # at least one invocation got several messages
