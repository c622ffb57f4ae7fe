"""Conformance: the real azure-servicebus SDK (sync) against the emulator, one behaviour per test.

Each test owns its entities (see config.json beside this file), so tests do not see each
other's messages.  Waits poll with generous deadlines; nothing asserts on how long things take.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import pytest
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.exceptions import (
    MessageAlreadySettled,
    MessageLockLostError,
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
    OperationTimeoutError,
    ServiceBusError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)


def collect(receiver: Any, count: int, timeout: float = 15.0) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got.extend(receiver.receive_messages(max_message_count=count - len(got), max_wait_time=1))
    return got


def drain(client: ServiceBusClient, **where: Any) -> int:
    with client.get_queue_receiver(**where, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE,
                                   max_wait_time=1) if "queue_name" in where else \
            client.get_subscription_receiver(**where, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE,
                                             max_wait_time=1) as r:
        return len(collect(r, 10_000, timeout=1.5))


def body(msg: Any) -> str:
    return str(msg)


# -- sending and receiving -------------------------------------------------------------------

def test_send_and_receive_single_message_with_properties(client: ServiceBusClient) -> None:
    with client.get_queue_sender("basic") as sender:
        sender.send_messages(ServiceBusMessage(
            "hello", message_id="m-1", correlation_id="c-1", subject="greeting", content_type="text/plain",
            application_properties={"tenant": "acme", "count": 3, "ok": True}, reply_to="replies", to="someone"))
    with client.get_queue_receiver("basic") as receiver:
        (msg,) = collect(receiver, 1)
        assert body(msg) == "hello"
        assert (msg.message_id, msg.correlation_id, msg.subject) == ("m-1", "c-1", "greeting")
        assert msg.content_type == "text/plain" and msg.reply_to == "replies" and msg.to == "someone"
        assert msg.application_properties == {b"tenant": b"acme", b"count": 3, b"ok": True}
        assert msg.sequence_number >= 1
        assert msg.delivery_count == 0
        assert msg.enqueued_time_utc is not None
        assert msg.locked_until_utc > dt.datetime.now(dt.UTC)
        assert msg.lock_token is not None
        receiver.complete_message(msg)
        assert collect(receiver, 1, timeout=1.5) == []


def test_batch_send_keeps_order_and_sequence_numbers(client: ServiceBusClient) -> None:
    with client.get_queue_sender("batch") as sender:
        batch = sender.create_message_batch()
        for i in range(50):
            batch.add_message(ServiceBusMessage(f"b{i}", message_id=f"b{i}"))
        sender.send_messages(batch)
        sender.send_messages([ServiceBusMessage(f"l{i}") for i in range(5)])
    with client.get_queue_receiver("batch", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver:
        got = collect(receiver, 55)
    assert [body(m) for m in got] == [f"b{i}" for i in range(50)] + [f"l{i}" for i in range(5)]
    seqs = [m.sequence_number for m in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == 55


def test_receive_and_delete_removes_on_delivery(client: ServiceBusClient) -> None:
    with client.get_queue_sender("receive-delete") as sender:
        sender.send_messages([ServiceBusMessage("r1"), ServiceBusMessage("r2")])
    with client.get_queue_receiver("receive-delete", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as r:
        got = collect(r, 2)
        assert [body(m) for m in got] == ["r1", "r2"]
        with pytest.raises(ValueError, match=r"(?i)receive_and_delete|settle"):
            r.complete_message(got[0])
    with client.get_queue_receiver("receive-delete") as r:
        assert collect(r, 1, timeout=1.5) == []


def test_binary_body_passes_through_unchanged(client: ServiceBusClient) -> None:
    payload = bytes(range(256)) * 4
    with client.get_queue_sender("basic") as sender:
        sender.send_messages(ServiceBusMessage(payload))
    with client.get_queue_receiver("basic", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as r:
        (msg,) = collect(r, 1)
    assert b"".join(msg.body) == payload


# -- settlement ------------------------------------------------------------------------------

def test_abandon_redelivers_with_delivery_count_plus_one(client: ServiceBusClient) -> None:
    with client.get_queue_sender("settle") as sender:
        sender.send_messages(ServiceBusMessage("abandon-me"))
    with client.get_queue_receiver("settle") as r:
        (first,) = collect(r, 1)
        r.abandon_message(first)
        (again,) = collect(r, 1)
        assert again.sequence_number == first.sequence_number
        assert again.delivery_count == first.delivery_count + 1
        r.complete_message(again)


def test_stale_lock_raises_message_lock_lost(client: ServiceBusClient) -> None:
    with client.get_queue_sender("lock-expiry") as sender:
        sender.send_messages(ServiceBusMessage("slow"))
    with client.get_queue_receiver("lock-expiry", prefetch_count=0) as r:
        (msg,) = collect(r, 1)
        time.sleep(2.5)  # the queue's LockDuration is 1 s
        with pytest.raises(MessageLockLostError):
            r.complete_message(msg)
    with client.get_queue_receiver("lock-expiry") as r:
        (again,) = collect(r, 1)
        assert body(again) == "slow" and again.delivery_count >= 1
        r.complete_message(again)


def test_lock_expiry_redelivers_with_incremented_count(client: ServiceBusClient) -> None:
    with client.get_queue_sender("lock-expiry") as sender:
        sender.send_messages(ServiceBusMessage("expire-lock"))
    with client.get_queue_receiver("lock-expiry") as r:
        (msg,) = collect(r, 1)
        assert msg.delivery_count == 0
        (again,) = collect(r, 1, timeout=20)
        assert again.sequence_number == msg.sequence_number and again.delivery_count == 1
        r.complete_message(again)


def test_renew_lock_extends_it(client: ServiceBusClient) -> None:
    with client.get_queue_sender("renew") as sender:
        sender.send_messages(ServiceBusMessage("keep"))
    with client.get_queue_receiver("renew") as r:
        (msg,) = collect(r, 1)
        before = msg.locked_until_utc
        for _ in range(3):  # 3 s in all, past the 2 s lock, renewed every second
            time.sleep(1)
            r.renew_message_lock(msg)
        assert msg.locked_until_utc > before
        r.complete_message(msg)


def test_max_delivery_count_dead_letters(client: ServiceBusClient) -> None:
    with client.get_queue_sender("max-delivery") as sender:
        sender.send_messages(ServiceBusMessage("poison"))
    with client.get_queue_receiver("max-delivery") as r:
        for _ in range(2):
            (msg,) = collect(r, 1)
            r.abandon_message(msg)
        assert collect(r, 1, timeout=1.5) == []
    with client.get_queue_receiver("max-delivery", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        (dead,) = collect(dlq, 1)
        assert body(dead) == "poison"
        assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
        assert dead.dead_letter_error_description
        dlq.complete_message(dead)


def test_explicit_dead_letter_with_reason_and_description(client: ServiceBusClient) -> None:
    with client.get_queue_sender("settle") as sender:
        sender.send_messages(ServiceBusMessage("bad", application_properties={"keep": "me"}))
    with client.get_queue_receiver("settle") as r:
        (msg,) = collect(r, 1)
        r.dead_letter_message(msg, reason="ValidationFailed", error_description="weight must be positive")
    with client.get_queue_receiver("settle", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        (dead,) = collect(dlq, 1)
        assert dead.dead_letter_reason == "ValidationFailed"
        assert dead.dead_letter_error_description == "weight must be positive"
        assert dead.application_properties[b"keep"] == b"me"
        dlq.complete_message(dead)


def test_settling_twice_is_refused(client: ServiceBusClient) -> None:
    with client.get_queue_sender("settle") as sender:
        sender.send_messages(ServiceBusMessage("once"))
    with client.get_queue_receiver("settle") as r:
        (msg,) = collect(r, 1)
        r.complete_message(msg)
        with pytest.raises(MessageAlreadySettled):
            r.complete_message(msg)


def test_settlement_through_management_link_by_lock_token(client: ServiceBusClient) -> None:
    """A message received on one link can be completed after that link is gone, by lock token."""
    with client.get_queue_sender("settle") as sender:
        sender.send_messages(ServiceBusMessage("via-mgmt"))
    receiver = client.get_queue_receiver("settle")
    with receiver:
        (msg,) = collect(receiver, 1)
        receiver._settle_message_via_mgmt_link("completed", [msg.lock_token])  # the SDK's own fallback path
    with client.get_queue_receiver("settle") as r:
        assert collect(r, 1, timeout=1.5) == []


# -- defer, schedule, peek -------------------------------------------------------------------

def test_defer_and_receive_deferred_by_sequence_number(client: ServiceBusClient) -> None:
    with client.get_queue_sender("defer") as sender:
        sender.send_messages([ServiceBusMessage("later"), ServiceBusMessage("now")])
    with client.get_queue_receiver("defer") as r:
        later, now = collect(r, 2)
        r.defer_message(later)
        r.complete_message(now)
        assert collect(r, 1, timeout=1.5) == []
        (deferred,) = r.receive_deferred_messages([later.sequence_number])
        assert body(deferred) == "later"
        r.complete_message(deferred)
        with pytest.raises(ServiceBusError):
            r.receive_deferred_messages([later.sequence_number])


def test_scheduled_message_appears_at_its_time(client: ServiceBusClient) -> None:
    now = dt.datetime.now(dt.UTC)
    with client.get_queue_sender("schedule") as sender:
        (far,) = sender.schedule_messages(ServiceBusMessage("far"), now + dt.timedelta(minutes=10))
        (soon,) = sender.schedule_messages(ServiceBusMessage("tick"), now + dt.timedelta(seconds=1))
        assert 0 < far < soon
    with client.get_queue_receiver("schedule") as r:
        peeked = r.peek_messages(max_message_count=5, sequence_number=far)
        assert peeked[0].state.name == "SCHEDULED" and peeked[0].scheduled_enqueue_time_utc is not None
        (msg,) = collect(r, 1, timeout=20)
        assert body(msg) == "tick"
        r.complete_message(msg)
        assert collect(r, 1, timeout=1.5) == []  # "far" is not due for minutes
    with client.get_queue_sender("schedule") as sender:
        sender.cancel_scheduled_messages(far)


def test_cancel_scheduled_message(client: ServiceBusClient) -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    with client.get_queue_sender("schedule") as sender:
        seqs = sender.schedule_messages([ServiceBusMessage("x"), ServiceBusMessage("y")], when)
        sender.cancel_scheduled_messages(seqs)
    time.sleep(2.5)
    with client.get_queue_receiver("schedule") as r:
        assert collect(r, 1, timeout=1.5) == []


def test_scheduled_enqueue_time_on_a_plain_send(client: ServiceBusClient) -> None:
    msg = ServiceBusMessage("plain-scheduled")
    msg.scheduled_enqueue_time_utc = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    with client.get_queue_sender("schedule") as sender:
        sender.send_messages(msg)
    with client.get_queue_receiver("schedule") as r:
        (got,) = collect(r, 1, timeout=20)
        assert body(got) == "plain-scheduled"
        r.complete_message(got)


def test_peek_does_not_lock_or_count(client: ServiceBusClient) -> None:
    with client.get_queue_sender("peek") as sender:
        sender.send_messages([ServiceBusMessage(f"p{i}") for i in range(3)])
    with client.get_queue_receiver("peek") as r:
        peeked = r.peek_messages(max_message_count=10)
        assert [body(m) for m in peeked] == ["p0", "p1", "p2"]
        with pytest.raises(ValueError, match=r"(?i)peek|settle"):
            r.complete_message(peeked[0])
        got = collect(r, 3)
        assert [m.delivery_count for m in got] == [0, 0, 0]
        for m in got:
            r.complete_message(m)
        assert r.peek_messages(max_message_count=10, sequence_number=1) == []


# -- time to live and duplicate detection ----------------------------------------------------

def test_expired_message_is_dead_lettered_with_ttl_reason(client: ServiceBusClient) -> None:
    with client.get_queue_sender("ttl-dlq") as sender:
        sender.send_messages(ServiceBusMessage("stale"))
    time.sleep(1.5)
    with client.get_queue_receiver("ttl-dlq") as r:
        assert collect(r, 1, timeout=1.5) == []
    with client.get_queue_receiver("ttl-dlq", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        (dead,) = collect(dlq, 1)
        assert dead.dead_letter_reason == "TTLExpiredException"
        dlq.complete_message(dead)


def test_expired_message_without_dead_lettering_is_dropped(client: ServiceBusClient) -> None:
    with client.get_queue_sender("ttl-drop") as sender:
        sender.send_messages(ServiceBusMessage("gone"))
    time.sleep(1.5)
    with client.get_queue_receiver("ttl-drop") as r:
        assert collect(r, 1, timeout=1.5) == []
    with client.get_queue_receiver("ttl-drop", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        assert collect(dlq, 1, timeout=1.5) == []


def test_message_ttl_lower_than_entity_default_wins(client: ServiceBusClient) -> None:
    with client.get_queue_sender("ttl-message") as sender:
        sender.send_messages(ServiceBusMessage("short", time_to_live=dt.timedelta(seconds=1)))
        sender.send_messages(ServiceBusMessage("long"))
    time.sleep(1.5)
    with client.get_queue_receiver("ttl-message") as r:
        (msg,) = collect(r, 1)
        assert body(msg) == "long"
        r.complete_message(msg)
    with client.get_queue_receiver("ttl-message", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        (dead,) = collect(dlq, 1)
        assert body(dead) == "short" and dead.dead_letter_reason == "TTLExpiredException"
        dlq.complete_message(dead)


def test_duplicate_detection_drops_repeated_message_id(client: ServiceBusClient) -> None:
    mid = str(uuid.uuid4())
    with client.get_queue_sender("dedup") as sender:
        sender.send_messages(ServiceBusMessage("first", message_id=mid))
        sender.send_messages(ServiceBusMessage("second", message_id=mid))
        sender.send_messages(ServiceBusMessage("other", message_id=mid + "-x"))
    with client.get_queue_receiver("dedup", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as r:
        got = collect(r, 3, timeout=2)
    assert [body(m) for m in got] == ["first", "other"]


# -- sessions --------------------------------------------------------------------------------

def test_message_without_session_id_is_rejected_by_session_queue(client: ServiceBusClient) -> None:
    with client.get_queue_sender("sessions") as sender:
        with pytest.raises(ServiceBusError) as info:
            sender.send_messages(ServiceBusMessage("no-session"))
    assert "SessionId" in str(info.value)


def test_named_session_is_fifo_and_exclusive(client: ServiceBusClient) -> None:
    with client.get_queue_sender("sessions") as sender:
        sender.send_messages([ServiceBusMessage(f"a{i}", session_id="A") for i in range(5)])
        sender.send_messages([ServiceBusMessage("b0", session_id="B")])
    with client.get_queue_receiver("sessions", session_id="A") as r:
        got = collect(r, 5)
        assert [body(m) for m in got] == [f"a{i}" for i in range(5)]
        assert all(m.session_id == "A" for m in got)
        with pytest.raises(SessionCannotBeLockedError):
            with client.get_queue_receiver("sessions", session_id="A") as other:
                other.receive_messages(max_wait_time=1)
        for m in got:
            r.complete_message(m)
    with client.get_queue_receiver("sessions", session_id="B") as r:
        (b,) = collect(r, 1)
        r.complete_message(b)


def test_next_available_session_picks_one_with_messages(client: ServiceBusClient) -> None:
    with client.get_queue_sender("sessions-next") as sender:
        sender.send_messages([ServiceBusMessage("n1", session_id="S1"), ServiceBusMessage("n2", session_id="S2")])
    seen = set()
    for _ in range(2):
        with client.get_queue_receiver("sessions-next", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=5) as r:
            (msg,) = collect(r, 1)
            assert r.session.session_id == msg.session_id
            seen.add(msg.session_id)
            r.complete_message(msg)
    assert seen == {"S1", "S2"}


def test_next_available_session_times_out_when_none(client: ServiceBusClient) -> None:
    with pytest.raises(OperationTimeoutError):
        with client.get_queue_receiver("sessions-next", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=2) as r:
            r.receive_messages(max_wait_time=1)


def test_session_state_get_and_set(client: ServiceBusClient) -> None:
    with client.get_queue_sender("sessions-state") as sender:
        sender.send_messages(ServiceBusMessage("s", session_id="st"))
    with client.get_queue_receiver("sessions-state", session_id="st") as r:
        assert r.session.get_state() is None
        r.session.set_state(b'{"step": 2}')
        assert r.session.get_state() == b'{"step": 2}'
        (msg,) = collect(r, 1)
        r.complete_message(msg)
    with client.get_queue_receiver("sessions-state", session_id="st") as r:
        assert r.session.get_state() == b'{"step": 2}'
        r.session.set_state(None)
        assert r.session.get_state() is None


def test_session_lock_renew_and_expiry(client: ServiceBusClient) -> None:
    with client.get_queue_sender("sessions-lock") as sender:
        sender.send_messages(ServiceBusMessage("held", session_id="L"))
    with client.get_queue_receiver("sessions-lock", session_id="L") as r:
        first = r.session.locked_until_utc
        time.sleep(0.5)
        r.session.renew_lock()
        assert r.session.locked_until_utc > first
        (msg,) = collect(r, 1)
        time.sleep(2.5)  # LockDuration is 1 s
        with pytest.raises((SessionLockLostError, MessageLockLostError, ServiceBusError)):
            r.complete_message(msg)
    with client.get_queue_receiver("sessions-lock", session_id="L") as r:
        (again,) = collect(r, 1)
        assert again.delivery_count == 1
        r.complete_message(again)


def test_session_messages_of_a_closed_receiver_come_back(client: ServiceBusClient) -> None:
    with client.get_queue_sender("sessions") as sender:
        sender.send_messages(ServiceBusMessage("return", session_id="R"))
    with client.get_queue_receiver("sessions", session_id="R") as r:
        collect(r, 1)
    with client.get_queue_receiver("sessions", session_id="R") as r:
        (msg,) = collect(r, 1)
        assert body(msg) == "return"
        r.complete_message(msg)


def test_list_sessions_on_topic_subscription(client: ServiceBusClient) -> None:
    with client.get_topic_sender("session-topic") as sender:
        sender.send_messages(ServiceBusMessage("t", session_id="topic-session"))
    with client.get_subscription_receiver("session-topic", "sessions", session_id=NEXT_AVAILABLE_SESSION,
                                          max_wait_time=5) as r:
        (msg,) = collect(r, 1)
        assert msg.session_id == "topic-session"
        r.complete_message(msg)


# -- topics and filters ----------------------------------------------------------------------

def _publish(client: ServiceBusClient, *messages: ServiceBusMessage) -> None:
    with client.get_topic_sender("fanout") as sender:
        sender.send_messages(list(messages))


def _bodies(client: ServiceBusClient, subscription: str) -> list[str]:
    with client.get_subscription_receiver("fanout", subscription,
                                          receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as r:
        return [body(m) for m in collect(r, 100, timeout=1.5)]


def test_topic_filters_route_copies(client: ServiceBusClient) -> None:
    for sub in ("all", "correlation", "sql-compare", "sql-like", "sql-action"):
        _bodies(client, sub)
    _publish(
        client,
        ServiceBusMessage("corr", correlation_id="order-1", subject="OrderPlaced",
                          application_properties={"color": "red", "region": "eu"}),
        ServiceBusMessage("corr-wrong-color", correlation_id="order-1", subject="OrderPlaced",
                          application_properties={"color": "blue", "region": "eu"}),
        ServiceBusMessage("high-eu", subject="x", application_properties={"priority": 9, "region": "eu"}),
        ServiceBusMessage("low-eu", subject="x", application_properties={"priority": 1, "region": "eu"}),
        ServiceBusMessage("high-asia", subject="x", application_properties={"priority": 9, "region": "asia"}),
        ServiceBusMessage("like", subject="order-created", application_properties={"region": "eu"}),
        ServiceBusMessage("no-region", subject="zzz"),
    )
    assert sorted(_bodies(client, "all")) == sorted(["corr", "corr-wrong-color", "high-eu", "low-eu", "high-asia",
                                                     "like", "no-region"])
    assert _bodies(client, "correlation") == ["corr"]
    assert _bodies(client, "sql-compare") == ["high-eu"]
    assert sorted(_bodies(client, "sql-like")) == ["like", "no-region"]


def test_rule_action_sets_properties_on_the_copy(client: ServiceBusClient) -> None:
    _bodies(client, "sql-action")
    _publish(client, ServiceBusMessage("tag-me", subject="original", application_properties={"kind": "tagged"}))
    with client.get_subscription_receiver("fanout", "sql-action",
                                          receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as r:
        (msg,) = collect(r, 1)
    assert msg.application_properties[b"routed"] == b"yes"
    assert msg.subject == "rewritten"
    with client.get_subscription_receiver("fanout", "all",
                                          receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as r:
        (plain,) = [m for m in collect(r, 10, timeout=1.5) if body(m) == "tag-me"]
    assert b"routed" not in plain.application_properties and plain.subject == "original"


def test_topic_duplicate_detection(client: ServiceBusClient) -> None:
    _bodies(client, "all")
    mid = str(uuid.uuid4())
    _publish(client, ServiceBusMessage("once", message_id=mid))
    _publish(client, ServiceBusMessage("twice", message_id=mid))
    assert _bodies(client, "all") == ["once"]


def test_scheduled_message_on_topic_fans_out_when_due(client: ServiceBusClient) -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    with client.get_topic_sender("scheduled-topic") as sender:
        (seq,) = sender.schedule_messages(ServiceBusMessage("due"), when)
        cancelled = sender.schedule_messages(ServiceBusMessage("never"), when)
        sender.cancel_scheduled_messages(cancelled)
        assert seq > 0
    with client.get_subscription_receiver("scheduled-topic", "only") as r:
        (msg,) = collect(r, 1, timeout=20)
        assert body(msg) == "due" and msg.scheduled_enqueue_time_utc is not None
        r.complete_message(msg)
        assert collect(r, 1, timeout=1.5) == []


# -- forwarding ------------------------------------------------------------------------------

def test_forward_to_moves_messages_to_target(client: ServiceBusClient) -> None:
    drain(client, queue_name="forward-target")
    with client.get_queue_sender("forward-source") as sender:
        sender.send_messages(ServiceBusMessage("fwd"))
    _publish(client, ServiceBusMessage("from-topic", application_properties={"forward": True}))
    with client.get_queue_receiver("forward-target", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as r:
        assert sorted(body(m) for m in collect(r, 2)) == ["from-topic", "fwd"]
    with client.get_queue_receiver("forward-source") as r:
        assert collect(r, 1, timeout=1) == []


def test_forward_dead_lettered_messages(client: ServiceBusClient) -> None:
    with client.get_queue_sender("forward-dl-source") as sender:
        sender.send_messages(ServiceBusMessage("dl-forward"))
    with client.get_queue_receiver("forward-dl-source") as r:
        (msg,) = collect(r, 1)
        r.dead_letter_message(msg, reason="Nope", error_description="forward me")
    with client.get_queue_receiver("forward-dl-target") as r:
        (fwd,) = collect(r, 1)
        assert body(fwd) == "dl-forward" and fwd.dead_letter_reason == "Nope"
        assert fwd.dead_letter_source == "forward-dl-source"
        r.complete_message(fwd)


# -- errors and faults -----------------------------------------------------------------------

def test_missing_entity_raises_entity_not_found(client: ServiceBusClient) -> None:
    with pytest.raises(MessagingEntityNotFoundError) as info:
        with client.get_queue_sender("no-such-queue") as sender:
            sender.send_messages(ServiceBusMessage("x"))
    assert "no-such-queue" in str(info.value)
    with pytest.raises(MessagingEntityNotFoundError):
        with client.get_queue_receiver("no-such-queue") as r:
            r.receive_messages(max_wait_time=1)


def test_oversized_message_is_refused(client: ServiceBusClient) -> None:
    with client.get_queue_sender("size") as sender:
        with pytest.raises(MessageSizeExceededError):
            sender.send_messages(ServiceBusMessage(b"x" * (300 * 1024)))
        sender.send_messages(ServiceBusMessage(b"y" * (200 * 1024)))
    with client.get_queue_receiver("size", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as r:
        (msg,) = collect(r, 1)
        assert len(b"".join(msg.body)) == 200 * 1024


def test_locks_of_a_vanished_client_hold_until_they_expire(emulator: Any, conn_str: str) -> None:
    # As in Azure: the message is not handed to anyone else while its lock lasts (LockDuration 3 s),
    # then it comes back with the lost delivery counted.
    with ServiceBusClient.from_connection_string(conn_str) as c, c.get_queue_sender("disconnect") as sender:
        sender.send_messages(ServiceBusMessage("orphan"))
    doomed = ServiceBusClient.from_connection_string(conn_str)
    receiver = doomed.get_queue_receiver("disconnect", prefetch_count=0)
    receiver.__enter__()
    (first,) = collect(receiver, 1)
    # Cut the socket without any AMQP goodbye, as a crashed process would.
    receiver._handler._connection._transport.sock.close()
    with ServiceBusClient.from_connection_string(conn_str) as c, c.get_queue_receiver("disconnect") as r:
        (again,) = collect(r, 1, timeout=20)
        assert dt.datetime.now(dt.UTC) >= first.locked_until_utc  # not handed out while still locked
        assert body(again) == "orphan"
        assert again.delivery_count == 1
        assert again.enqueued_time_utc == first.enqueued_time_utc
        r.complete_message(again)


def test_garbage_on_the_socket_does_not_disturb_other_clients(emulator: Any, client: ServiceBusClient) -> None:
    import socket

    for junk in (b"GET / HTTP/1.1\r\n\r\n", b"AMQP\x00\x01\x00\x00" + b"\xff" * 64, b""):
        with socket.create_connection(("127.0.0.1", emulator.port), timeout=5) as s:
            s.sendall(junk)
            try:
                s.recv(64)
            except OSError:
                pass
    with client.get_queue_sender("basic") as sender:
        sender.send_messages(ServiceBusMessage("still-alive"))
    with client.get_queue_receiver("basic", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as r:
        assert [body(m) for m in collect(r, 1)] == ["still-alive"]
    assert emulator.process is not None and emulator.process.running


def test_a_vanished_next_available_waiter_is_never_handed_a_session(emulator: Any, conn_str: str) -> None:
    import subprocess
    import sys

    waiter = subprocess.Popen([sys.executable, "-c", (
        "import sys\n"
        "from azure.servicebus import ServiceBusClient, NEXT_AVAILABLE_SESSION\n"
        "c = ServiceBusClient.from_connection_string(sys.argv[1])\n"
        "r = c.get_queue_receiver('sessions-next', session_id=NEXT_AVAILABLE_SESSION, max_wait_time=60)\n"
        "r.__enter__()\n"), conn_str])
    try:
        time.sleep(3)  # its attach is now parked at the broker, waiting for a session
    finally:
        waiter.kill()  # gone without detaching, as a crashed process goes
        waiter.wait(10)
    with ServiceBusClient.from_connection_string(conn_str) as client:
        with client.get_queue_sender("sessions-next") as sender:
            sender.send_messages(ServiceBusMessage("after-crash", session_id="after-crash"))
        with client.get_queue_receiver("sessions-next", session_id="after-crash") as r:
            (msg,) = collect(r, 1)
            r.complete_message(msg)
