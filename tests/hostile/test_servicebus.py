"""Hostile Service Bus traffic: bodies no consumer can read, sent with the real SDK to every entity
the app consumes, are each dead-lettered once with a reason (never retried until the broker gives
up); garbage on the emulator's socket leaves it serving real clients."""

from __future__ import annotations

import json
import socket
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from devstack.soak import peek_all

from .conftest import App, still_serving, wait_for


def _envelope(**overrides: Any) -> dict[str, Any]:
    base = {"type": "DeliveryRequested", "schemaVersion": 1, "messageId": "m", "correlationId": "hx-1",
            "causationId": "c", "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
            "occurredAt": "2026-11-22T09:00:00Z", "data": {"deliveryId": "hx-1"}}
    return {**base, **overrides}


BODIES: dict[str, bytes] = {
    "garbage bytes": bytes(range(256)) * 4,
    "not json": b"hello, broker",
    "json array": b"[1, 2, 3]",
    "empty object": b"{}",
    "unknown type": json.dumps(_envelope(type="Mystery")).encode(),
    "unknown schema version": json.dumps(_envelope(schemaVersion=99)).encode(),
    "deep nesting": b"[" * 32_000 + b"]" * 32_000,
    "huge int": b'{"type": ' + b"9" * 5000 + b"}",
    "lone surrogate": json.dumps(_envelope(correlationId="\ud800")).encode(),
    "hostile correlation id": json.dumps(_envelope(correlationId="a/b#c?")).encode(),
    "hostile delivery id in data": json.dumps(_envelope(data={"deliveryId": "x/../y"})).encode(),
    "data not an object": json.dumps(_envelope(data=[1])).encode(),
}
# (entity to send to, subject, the consumers that must each dead-letter it)
TARGETS = {
    "DeliveryRequested": ("deliveries", ("deliveries/subscriptions/package",
                                         "deliveries/subscriptions/drone-scheduler")),
    "CancelPackage": ("deliveries", ("deliveries/subscriptions/package-compensation",)),
    "ReleaseDrone": ("deliveries", ("deliveries/subscriptions/drone-release",)),
    "RetryDroneScheduling": ("deliveries", ("deliveries/subscriptions/drone-scheduler",)),
    "PackageReady": ("delivery-events", ("delivery-events",)),
    "PaymentFileValidated": ("payment-files-validated", ("payment-files-validated",)),
    "PaymentFileAdapted": ("payment-files-adapted", ("payment-files-adapted",)),
    "CompensatePaymentFile": ("payment-files-compensation", ("payment-files-compensation",)),
}
CASES = [(subject, body) for subject in TARGETS for body in BODIES]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


@pytest.fixture(scope="module")
def sent(app: App) -> Iterator[dict[tuple[str, str], str]]:
    """Every hostile body to every consumer, sent once; the message id of each."""
    ids: dict[tuple[str, str], str] = {}
    with ServiceBusClient.from_connection_string(app.stack.servicebus_connection) as client:
        for subject, body_name in CASES:
            entity, _ = TARGETS[subject]
            message_id = f"hx-{uuid.uuid4().hex[:16]}"
            session = f"hx-{uuid.uuid4().hex[:8]}" if entity == "delivery-events" else None
            message = ServiceBusMessage(BODIES[body_name], message_id=message_id, subject=subject,
                                        session_id=session, application_properties={"type": subject})
            sender = (client.get_topic_sender(entity) if entity == "deliveries" else client.get_queue_sender(entity))
            with sender:
                sender.send_messages(message)
            ids[(subject, body_name)] = message_id
    return ids


@pytest.fixture(scope="module")
def dead_letters(app: App, sent: dict[tuple[str, str], str]) -> dict[str, list[dict[str, str]]]:
    expected = sum(len(TARGETS[subject][1]) for subject, _ in CASES)

    def collected() -> dict[str, list[dict[str, str]]] | None:
        # every dead letter ends in remediation's audit, with the properties it arrived with
        by_original: dict[str, list[dict[str, str]]] = defaultdict(list)
        for entry in app.remediations():
            props = {k: _text(v) for k, v in entry.record.properties.items()}
            if props.get("OriginalMessageId", "").startswith("hx-"):
                by_original[props["OriginalMessageId"]].append({**props, "decision": entry.verdict.decision})
        return by_original if sum(map(len, by_original.values())) >= expected else None

    return wait_for(collected, f"{expected} dead letters of the hostile bodies", timeout=180)


@pytest.mark.parametrize(("subject", "body_name"), CASES, ids=[f"{s}-{b}" for s, b in CASES])
def test_a_body_no_consumer_can_read_is_dead_lettered_once_with_a_reason(
        sent: dict[tuple[str, str], str], dead_letters: dict[str, list[dict[str, str]]], subject: str,
        body_name: str) -> None:
    letters = dead_letters.get(sent[(subject, body_name)], [])
    sources = sorted(letter["DeadLetterSource"] for letter in letters)
    assert sources == sorted(TARGETS[subject][1]), letters
    for letter in letters:
        assert letter["DeadLetterReason"] in ("MalformedMessage", "UnknownMessageType", "UnknownSchemaVersion")
        assert letter["DeadLetterErrorDescription"] and letter["OriginalDeliveryCount"] == "1"
        assert letter["decision"] == "park"  # unreadable: remediation keeps it for a person


def test_no_hostile_body_was_retried_until_the_broker_gave_up(app: App, dead_letters: Any,
                                                             sent: dict[tuple[str, str], str]) -> None:
    ours = set(sent.values())
    exhausted = [e.record.original_message_id for e in app.remediations()
                 if e.record.reason == "MaxDeliveryCountExceeded" and e.record.original_message_id in ours]
    with ServiceBusClient.from_connection_string(app.stack.servicebus_connection) as client:
        stuck = [_text(m.message_id) for m in peek_all(client, "deadletter", dead_letter=True)]
    assert exhausted == [] and [m for m in stuck if m in ours] == []


def test_no_hostile_message_created_a_delivery(app: App, dead_letters: Any) -> None:
    code, body = app.status("hx-1")
    assert code == 404, body


# -- the emulator's socket -----------------------------------------------------------------------
AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"
SOCKET_CASES = {
    "nothing, then close": b"",
    "zeros": b"\x00" * 64,
    "http request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "wrong protocol version": b"AMQP\x00\x09\x09\x09",
    "tls header": b"AMQP\x02\x01\x00\x00",
    "sasl header then garbage": SASL_HEADER + b"\xde\xad\xbe\xef" * 16,
    "sasl header then a huge frame size": SASL_HEADER + b"\xff\xff\xff\xff\x02\x01\x00\x00",
    "amqp header then a tiny frame size": AMQP_HEADER + b"\x00\x00\x00\x02\x02\x00\x00\x00",
    "amqp header then a truncated frame": AMQP_HEADER + b"\x00\x00\x00\x40\x02\x00\x00\x00\x00S\x10",
    "amqp header then a frame of garbage": AMQP_HEADER + b"\x00\x00\x00\x10\x02\x00\x00\x00" + b"\xee" * 8,
    "random megabyte": uuid.uuid4().bytes * 65536,
    "header twice": AMQP_HEADER + AMQP_HEADER,
}


@pytest.mark.parametrize("name", list(SOCKET_CASES))
def test_garbage_on_the_socket_leaves_the_emulator_serving_real_clients(app: App, name: str) -> None:
    with socket.create_connection(("127.0.0.1", app.stack.ports.servicebus), timeout=10) as conn:
        try:
            conn.sendall(SOCKET_CASES[name])
            conn.settimeout(2)
            conn.recv(4096)  # whatever it answers (or a close)
        except OSError:
            pass  # refused mid-way, reset or silent: all fine, as long as others are served
    # A message scheduled for later: peekable, and no consumer of the app takes it meanwhile.
    probe = f"probe-{uuid.uuid4().hex[:12]}"
    with ServiceBusClient.from_connection_string(app.stack.servicebus_connection) as client:
        with client.get_queue_sender("deadletter") as sender:
            [sequence] = sender.schedule_messages(ServiceBusMessage(b"probe", message_id=probe),
                                                  datetime.now(UTC) + timedelta(hours=1))
            assert probe in {_text(m.message_id) for m in peek_all(client, "deadletter")}
            sender.cancel_scheduled_messages(sequence)


def test_after_the_service_bus_corpus_the_stack_still_ships(app: App, dead_letters: Any) -> None:
    still_serving(app)
