"""Regressions for the causes Microsoft's own azure-servicebus tests found (issue 12, causes A-K).

`make conformance` runs Microsoft's suite itself; each test here pins one cause in a few
seconds, with the real SDK against the emulator, so `make test` keeps it fixed.  Each test owns
its queue (``suite-*`` in config.json).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.amqp import AmqpAnnotatedMessage, AmqpMessageBodyType
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


def test_c_deferred_messages_come_back_to_another_receiver_locked_and_can_be_dead_lettered(
        client: ServiceBusClient) -> None:
    with client.get_queue_sender("suite-c-deferred") as sender:
        sender.send_messages([ServiceBusMessage(f"deferred {i}") for i in range(3)])
    with client.get_queue_receiver("suite-c-deferred") as receiver:
        taken = receive(receiver, 3)
        for msg in taken:
            receiver.defer_message(msg)
    seqs = [msg.sequence_number for msg in taken]
    with client.get_queue_receiver("suite-c-deferred") as receiver:
        with pytest.raises(ServiceBusError):  # one of them is not deferred: the whole request fails
            receiver.receive_deferred_messages([*seqs, max(seqs) + 1000])
        deferred = receiver.receive_deferred_messages(seqs)
        assert sorted(str(msg) for msg in deferred) == [f"deferred {i}" for i in range(3)]
        assert all(msg.lock_token and msg.locked_until_utc for msg in deferred)
        *dead, done = deferred
        for msg in dead:
            receiver.dead_letter_message(msg, reason="suite-c", error_description="deferred, then dead-lettered")
        receiver.complete_message(done)
        with pytest.raises(ServiceBusError):  # completed: no longer there to receive
            receiver.receive_deferred_messages([done.sequence_number])
    with client.get_queue_receiver("suite-c-deferred", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        letters = receive(dlq, 2)
        assert sorted(str(msg) for msg in letters) == sorted(str(msg) for msg in dead)
        for letter in letters:
            assert letter.dead_letter_reason == "suite-c"
            assert letter.application_properties[b"DeadLetterReason"] == b"suite-c"
            dlq.complete_message(letter)


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


def test_b_a_session_filter_that_is_not_a_string_is_refused(client: ServiceBusClient) -> None:
    with pytest.raises(ServiceBusError):
        with client.get_queue_receiver("suite-b-sessions", session_id=1, max_wait_time=2):  # type: ignore[arg-type]
            pass


def test_h_a_batch_mixing_data_value_and_sequence_bodies_is_settled_and_kept(client: ServiceBusClient) -> None:
    # An amqp-value map with binary keys cannot be turned into Python objects; the broker must pass
    # bodies on as bytes, and answer the sender whatever happens (an unsettled transfer hangs it).
    value = AmqpAnnotatedMessage(value_body={b"key": [-123, b"data", False]}, application_properties={"n": 1})
    sequence = AmqpAnnotatedMessage(sequence_body=[b"message", 123.456, True], application_properties={"n": 2})
    data = AmqpAnnotatedMessage(data_body=[b"aa", b"bb"], application_properties={"n": 3})
    with client.get_queue_sender("suite-h-bodies") as sender:
        batch = sender.create_message_batch()
        for message in (value, sequence, data):
            batch.add_message(message)
        sender.send_messages(batch, timeout=20)
    with client.get_queue_receiver("suite-h-bodies") as receiver:
        got = {m.application_properties[b"n"]: m.raw_amqp_message for m in receive(receiver, 3)}
        assert got[1].body_type == AmqpMessageBodyType.VALUE and got[1].body == {b"key": [-123, b"data", False]}
        assert got[2].body_type == AmqpMessageBodyType.SEQUENCE and list(got[2].body) == [[b"message", 123.456, True]]
        assert got[3].body_type == AmqpMessageBodyType.DATA and list(got[3].body) == [b"aa", b"bb"]


def test_j_binary_annotation_values_survive_the_sections_decoded_after_them(client: ServiceBusClient) -> None:
    # proton returns binaries as views of its decode buffer; kept as such, the next section's
    # decode overwrote them (seen as a garbled partition key).
    sent = ServiceBusMessage("binary", message_id="j-1", subject="label", correlation_id="cid", to="to")
    sent.raw_amqp_message.annotations = {b"x-custom-binary": b"0123456789abcdef0123456789abcdef"}
    with client.get_queue_sender("suite-d-annotations") as sender:
        sender.send_messages(sent)
    with client.get_queue_receiver("suite-d-annotations") as receiver:
        (msg,) = receive(receiver, 1)
        assert msg.raw_amqp_message.annotations[b"x-custom-binary"] == b"0123456789abcdef0123456789abcdef"
        receiver.complete_message(msg)


def test_d_messages_are_framed_as_service_bus_frames_them(client: ServiceBusClient) -> None:
    # Microsoft's tests check the exact encoded size: no durable or first-acquirer flag and no
    # default priority in the header, empty delivery annotations when there is nothing to say, and
    # x-opt-enqueue-sequence-number only on a message that moved.
    with client.get_queue_sender("suite-d-annotations") as sender:
        sender.send_messages(ServiceBusMessage("plain"))
    with client.get_queue_receiver("suite-d-annotations", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as r:
        (msg,) = receive(r, 1)
        raw = msg.raw_amqp_message
        assert raw.delivery_annotations == {}
        assert (raw.header.durable, raw.header.first_acquirer, raw.header.priority) == (None, None, None)
        assert b"x-opt-enqueue-sequence-number" not in raw.annotations


def _queue_with_ten(client: ServiceBusClient, queue: str) -> list[int]:
    with client.get_queue_sender(queue) as sender:
        sender.send_messages([ServiceBusMessage(f"peek {i}") for i in range(10)])
    with client.get_queue_receiver(queue) as receiver:
        return [int(m.sequence_number) for m in receiver.peek_messages(max_message_count=10)]


def test_f_concurrent_management_requests_from_threads_are_all_answered(client: ServiceBusClient) -> None:
    # The SDK can give concurrent requests the same delivery-id; Service Bus answers them all, and
    # proton's engine closed the connection ("sequencing error") until the emulator renumbered them.
    seqs = _queue_with_ten(client, "suite-f-peek")
    assert len(seqs) == 10
    with client.get_queue_receiver("suite-f-peek") as receiver:

        def peek(seq: int) -> int:
            return int(receiver.peek_messages(max_message_count=1, sequence_number=seq)[0].sequence_number)

        for _ in range(3):  # threads interleave differently each time; one round may not collide
            with ThreadPoolExecutor(max_workers=10) as pool:
                assert list(pool.map(peek, seqs)) == seqs


def test_f_concurrent_management_requests_from_asyncio_are_all_answered(client: ServiceBusClient,
                                                                         conn_str: str) -> None:
    # Under asyncio.gather every request of the round goes out with the same delivery-id and tag.
    seqs = _queue_with_ten(client, "suite-f-peek-aio")

    async def peek_all_at_once() -> list[int]:
        async with AsyncServiceBusClient.from_connection_string(conn_str) as aio:
            async with aio.get_queue_receiver("suite-f-peek-aio") as receiver:

                async def peek(seq: int) -> int:
                    peeked = await receiver.peek_messages(max_message_count=1, sequence_number=seq)
                    return int(peeked[0].sequence_number)

                return list(await asyncio.gather(*(peek(seq) for seq in seqs)))

    assert asyncio.run(peek_all_at_once()) == seqs


def test_e_a_closed_receivers_messages_stay_locked_until_the_lock_expires(client: ServiceBusClient) -> None:
    # Azure keeps the locks of a receiver that closed without settling (the SDK itself says so when
    # it releases only what it had buffered); the message comes back after LockDuration (5 s here).
    with client.get_queue_sender("suite-e-locks") as sender:
        sender.send_messages(ServiceBusMessage("kept"))
    with client.get_queue_receiver("suite-e-locks", prefetch_count=0) as first:
        (taken,) = receive(first, 1)
    with client.get_queue_receiver("suite-e-locks") as second:
        (again,) = receive(second, 1, timeout=20)
        assert dt.datetime.now(dt.UTC) >= taken.locked_until_utc  # not handed out while still locked
        assert again.delivery_count == 1
        second.complete_message(again)


def test_list_sessions_state_updated_after_leaves_out_states_set_before(client: ServiceBusClient) -> None:
    def set_state(session_id: str) -> None:
        with client.get_queue_sender("suite-l-list-sessions") as sender:
            sender.send_messages(ServiceBusMessage("s", session_id=session_id))
        with client.get_queue_receiver("suite-l-list-sessions", session_id=session_id) as receiver:
            receiver.session.set_state(f"state of {session_id}")

    set_state("before")
    time.sleep(0.05)
    cutoff = dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    set_state("after")
    assert list(client.list_queue_sessions("suite-l-list-sessions", state_updated_after=cutoff)) == ["after"]
    # Without the filter: every session with messages or a state.
    assert sorted(client.list_queue_sessions("suite-l-list-sessions")) == ["after", "before"]


@pytest.mark.filterwarnings("ignore:The `message` property is deprecated:DeprecationWarning")
def test_received_and_deleted_messages_have_an_empty_delivery_tag(client: ServiceBusClient) -> None:
    # Service Bus gives a message with no lock an empty tag (the SDK reads the tag as the lock token);
    # Microsoft's back-compat test checks it through the message's legacy view.
    with client.get_queue_sender("suite-d-annotations") as sender:
        sender.send_messages(ServiceBusMessage("no lock"))
    with client.get_queue_receiver("suite-d-annotations", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as r:
        (msg,) = receive(r, 1)
        assert msg.message.delivery_tag is None


def test_decimal_application_properties_come_back_as_service_bus_writes_them(client: ServiceBusClient) -> None:
    # Service Bus keeps application properties as .NET values and writes decimals in its own layout,
    # which is the one the SDK reads; passed on as the sender encoded them, the SDK failed to read them.
    sent = ServiceBusMessage("decimal", application_properties={"price": Decimal("1.2345"), "n": 1})
    with client.get_queue_sender("suite-d-annotations") as sender:
        sender.send_messages(sent)
    with client.get_queue_receiver("suite-d-annotations", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as r:
        (msg,) = receive(r, 1)
        assert msg.application_properties == {b"price": Decimal("1.2345"), b"n": 1}
