"""Conformance: the real azure-servicebus **aio** SDK against the emulator.

The async client has its own AMQP stack (pyamqp's aio transport), so the behaviours the
workloads rely on are checked through it as well.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import pytest
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import MessagingEntityNotFoundError


async def collect(receiver: Any, count: int, timeout: float = 15.0) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got.extend(await receiver.receive_messages(max_message_count=count - len(got), max_wait_time=1))
    return got


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_aio_send_batch_receive_complete(conn_str: str) -> None:
    async def scenario() -> None:
        async with ServiceBusClient.from_connection_string(conn_str) as client:
            async with client.get_queue_sender("aio-basic") as sender:
                batch = await sender.create_message_batch()
                for i in range(20):
                    batch.add_message(ServiceBusMessage(f"a{i}", application_properties={"i": i}))
                await sender.send_messages(batch)
            async with client.get_queue_receiver("aio-basic") as receiver:
                got = await collect(receiver, 20)
                assert [str(m) for m in got] == [f"a{i}" for i in range(20)]
                for m in got:
                    await receiver.complete_message(m)
                assert await collect(receiver, 1, timeout=1.5) == []

    run(scenario())


def test_aio_abandon_then_dead_letter_with_reason(conn_str: str) -> None:
    async def scenario() -> None:
        async with ServiceBusClient.from_connection_string(conn_str) as client:
            async with client.get_queue_sender("aio-basic") as sender:
                await sender.send_messages(ServiceBusMessage("aio-bad"))
            async with client.get_queue_receiver("aio-basic") as receiver:
                (msg,) = await collect(receiver, 1)
                await receiver.abandon_message(msg)
                (again,) = await collect(receiver, 1)
                assert again.delivery_count == 1
                await receiver.dead_letter_message(again, reason="Rule", error_description="broken")
            async with client.get_queue_receiver("aio-basic", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
                (dead,) = await collect(dlq, 1)
                assert (dead.dead_letter_reason, dead.dead_letter_error_description) == ("Rule", "broken")
                await dlq.complete_message(dead)

    run(scenario())


def test_aio_sessions_next_available_and_state(conn_str: str) -> None:
    async def scenario() -> None:
        async with ServiceBusClient.from_connection_string(conn_str) as client:
            async with client.get_queue_sender("sessions-aio") as sender:
                await sender.send_messages([ServiceBusMessage(f"s{i}", session_id="aio-1") for i in range(3)])
            async with client.get_queue_receiver("sessions-aio", session_id=NEXT_AVAILABLE_SESSION,
                                                 max_wait_time=5) as receiver:
                got = await collect(receiver, 3)
                assert [str(m) for m in got] == ["s0", "s1", "s2"]
                assert receiver.session.session_id == "aio-1"
                await receiver.session.set_state(b"joined")
                assert await receiver.session.get_state() == b"joined"
                await receiver.session.renew_lock()
                for m in got:
                    await receiver.complete_message(m)

    run(scenario())


def test_aio_defer_schedule_peek_and_renew(conn_str: str) -> None:
    async def scenario() -> None:
        async with ServiceBusClient.from_connection_string(conn_str) as client:
            async with client.get_queue_sender("aio-basic") as sender:
                await sender.send_messages(ServiceBusMessage("aio-defer"))
                (seq,) = await sender.schedule_messages(
                    ServiceBusMessage("aio-scheduled"), dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
            async with client.get_queue_receiver("aio-basic") as receiver:
                peeked = await receiver.peek_messages(max_message_count=10)
                assert {str(m) for m in peeked} >= {"aio-defer", "aio-scheduled"}
                (msg,) = await collect(receiver, 1)
                assert str(msg) == "aio-defer"
                await receiver.renew_message_lock(msg)
                await receiver.defer_message(msg)
                (deferred,) = await receiver.receive_deferred_messages([msg.sequence_number])
                await receiver.complete_message(deferred)
                (scheduled,) = await collect(receiver, 1, timeout=20)
                assert str(scheduled) == "aio-scheduled" and scheduled.sequence_number == seq
                await receiver.complete_message(scheduled)

    run(scenario())


def test_aio_receive_and_delete_on_topic_subscription(conn_str: str) -> None:
    async def scenario() -> None:
        async with ServiceBusClient.from_connection_string(conn_str) as client:
            async with client.get_subscription_receiver(
                    "fanout", "correlation", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as r:
                await collect(r, 100, timeout=1.5)
            async with client.get_topic_sender("fanout") as sender:
                await sender.send_messages(ServiceBusMessage("aio-corr", correlation_id="order-1",
                                                             subject="OrderPlaced",
                                                             application_properties={"color": "red"}))
            async with client.get_subscription_receiver(
                    "fanout", "correlation", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as r:
                assert [str(m) for m in await collect(r, 1)] == ["aio-corr"]

    run(scenario())


def test_aio_missing_entity(conn_str: str) -> None:
    async def scenario() -> None:
        async with ServiceBusClient.from_connection_string(conn_str) as client:
            async with client.get_queue_sender("missing-aio") as sender:
                await sender.send_messages(ServiceBusMessage("x"))

    with pytest.raises(MessagingEntityNotFoundError):
        run(scenario())
