"""Regressions for the causes Microsoft's own azure-servicebus tests found (issue 12, causes A-K).

`make conformance` runs Microsoft's suite itself; each test here pins one cause in a few
seconds, with the real SDK against the emulator, so `make test` keeps it fixed.  Each test owns
its queue (``suite-*`` in config.json).
"""

from __future__ import annotations

import datetime as dt

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import OperationTimeoutError, ServiceBusError

from tests.emulators.servicebus.test_conformance import collect as receive

LOCK_TOKEN = b"x-opt-lock-token"


def test_a_scheduled_message_is_enqueued_when_it_falls_due(client: ServiceBusClient) -> None:
    scheduled = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)).replace(microsecond=0)
    with client.get_queue_sender("suite-a-scheduled") as sender:
        sender.schedule_messages(ServiceBusMessage("later"), scheduled)
    with client.get_queue_receiver("suite-a-scheduled") as receiver:
        (msg,) = receive(receiver, 1)
        assert msg.scheduled_enqueue_time_utc == scheduled
        assert msg.enqueued_time_utc >= scheduled
        receiver.complete_message(msg)


def test_b_next_available_session_with_none_to_give_refuses_the_open(client: ServiceBusClient) -> None:
    # The refusal must fail the open itself, not only a later receive (the attach carries a null source).
    with pytest.raises(OperationTimeoutError):
        with client.get_queue_receiver("suite-b-sessions", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=2):
            pass


def test_b_a_plain_receiver_on_a_session_queue_is_refused_at_open(client: ServiceBusClient) -> None:
    with pytest.raises(ServiceBusError):
        client.get_queue_receiver("suite-b-sessions", max_wait_time=2)._open_with_retry()


def test_d_received_messages_carry_the_lock_token_and_the_senders_sections(client: ServiceBusClient) -> None:
    sent = ServiceBusMessage("annotated")
    sent.raw_amqp_message.delivery_annotations = {b"from-sender": 3}
    sent.raw_amqp_message.header.priority = 5
    sent.raw_amqp_message.footer = {b"footer": 6}
    with client.get_queue_sender("suite-d-annotations") as sender:
        sender.send_messages(sent)
    with client.get_queue_receiver("suite-d-annotations") as receiver:
        (msg,) = receive(receiver, 1)
        annotations = msg.raw_amqp_message.delivery_annotations
        assert annotations[LOCK_TOKEN] == msg.lock_token
        assert annotations[b"from-sender"] == 3
        assert msg.raw_amqp_message.header.priority == 5
        assert msg.raw_amqp_message.footer == {b"footer": 6}
        receiver.complete_message(msg)
