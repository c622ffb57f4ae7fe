"""The fleet seeding command, and the transient-failure path through the real broker."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from azure.servicebus import ServiceBusClient

from choreography.runtime import reset_runtime
from drone_scheduler.adapters import TableDroneFleet
from drone_scheduler.domain import default_fleet

from .conftest import DEADLINE, ROOT, Mailbox, Received
from .hops import DEADLETTER, EVENTS, Hops, set_fleet


def seed(connection: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "drone_scheduler.seed", "--connection", connection,
                           "--table", "seedtest", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_seeding_is_idempotent_and_keeps_assignments(azurite, tables):
    first = seed(azurite.connection_string)
    assert "5 drones (5 added)" in first and "drone-05 60 kg" in first
    fleet = TableDroneFleet(tables.get_table_client("seedtest"))
    assert fleet.try_assign(fleet.drones()[0], "d-busy", None) is not None
    again = seed(azurite.connection_string)
    assert "5 drones (0 added)" in again and "(busy)" in again
    seed(azurite.connection_string, "--reset")
    assert all(d.is_free for d in fleet.drones()) and fleet.booking("d-busy") is None
    assert "12 drones (7 added)" in seed(azurite.connection_string, "--fleet-size", "12")


@pytest.mark.usefixtures("app")
def test_a_transient_failure_is_redelivered_by_the_broker_then_dead_lettered_by_it(
        hops: Hops, mailbox: Mailbox, tables, sb_client: ServiceBusClient, monkeypatch: pytest.MonkeyPatch):
    """What the Functions host does with a function that raises: abandon. Service Bus redelivers
    and, after MaxDeliveryCount (5), dead-letters the message itself: MaxDeliveryCountExceeded."""
    set_fleet(tables, default_fleet())
    delivery_id = hops.submit()
    hops.package(delivery_id)
    hops.drone(delivery_id)
    hops.outcome(delivery_id, "PackageReady")
    hops.outcome(delivery_id, "DroneScheduled")  # joined: the flight timer is on the session now
    mailbox.release_session(EVENTS, delivery_id)
    monkeypatch.setenv("EventGridTopicKey", "a-wrong-key")  # every attempt to announce the shipment fails
    reset_runtime()
    attempts: list[int] = []
    try:
        with sb_client.get_queue_receiver(EVENTS, session_id=delivery_id, max_wait_time=2) as receiver:
            deadline = time.monotonic() + DEADLINE
            while len(attempts) < 5 and time.monotonic() < deadline:
                for message in receiver.receive_messages(max_message_count=1, max_wait_time=1):
                    if message.subject != "DeliveryInTransitTimer":
                        receiver.complete_message(message)
                        continue
                    # The SDK counts previous deliveries; the host hands the function Service Bus's
                    # 1-based DeliveryCount.
                    delivery_count = (message.delivery_count or 0) + 1
                    try:
                        hops.deliver(Received.of(message), delivery_count=delivery_count)
                    except Exception:  # noqa: BLE001 - the host abandons on any exception
                        attempts.append(delivery_count)
                        receiver.abandon_message(message)
                    else:
                        receiver.complete_message(message)
    finally:
        monkeypatch.undo()
        reset_runtime()
    assert attempts == [1, 2, 3, 4, 5]
    # The change was saved once with its effects (the outbox); the announcement that kept failing
    # is still owed there, for the next reader of the record to send.
    assert hops.status(delivery_id)["status"] == "Shipped"
    # The queue forwards its dead letters to the one place every dead letter goes.
    [dead] = mailbox.take(DEADLETTER, lambda m: m.session_id == delivery_id)
    assert dead.subject == "DeliveryInTransitTimer"
    props = dead.application_properties
    assert props["DeadLetterReason"] == "MaxDeliveryCountExceeded"
    assert "after 5 delivery attempts" in props["DeadLetterErrorDescription"]
    assert dead.dead_letter_source == EVENTS
    assert json.loads(dead.body)["correlationId"] == delivery_id
