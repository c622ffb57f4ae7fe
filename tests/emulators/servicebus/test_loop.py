"""The emulator's I/O loop (issue 15): no timer when nothing is due, the administration API's
bridge onto the loop thread, and connection churn through the SDK.  The rest of the SDK-level
behaviour over this loop is what the other tests in tests/emulators exercise."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from pathlib import Path

from azure.servicebus import ServiceBusClient, ServiceBusMessage
from proton import Message

from devstack.stack import ServiceBusEmulator
from emulators.servicebus import codec
from emulators.servicebus.broker import SWEEP_INTERVAL_MS, Broker
from emulators.servicebus.config import load_config
from emulators.servicebus.loop import IoLoop, LoopBridge
from emulators.servicebus.server import AmqpServer

CONFIG = Path(__file__).with_name("config.json")


def broker() -> Broker:
    return Broker(load_config(CONFIG))


def envelope(message_id: str | None = None) -> codec.Envelope:
    return codec.parse_message(Message(body="x", id=message_id).encode())


def test_an_idle_broker_has_nothing_due() -> None:
    b = broker()
    b.send(b.resolve_target("basic"), envelope(), 1_000_000)
    assert b.next_wake() is None


def test_a_time_to_live_makes_a_sweep_due_when_it_runs_out() -> None:
    b = broker()
    now = 1_000_000
    b.send(b.resolve_target("ttl-drop"), envelope(), now)  # the queue's TTL is 1 s
    assert b.next_wake() == now + 1000
    b.run_due(now + 1000)
    assert b.resolve_source("ttl-drop").messages == {}
    assert b.next_wake() is None


def test_sweeps_come_no_closer_than_the_sweep_interval() -> None:
    b = broker()
    now = 1_000_000
    b.sweep(now)
    b.send(b.resolve_target("ttl-drop"), envelope(), now - 900)  # runs out 100 ms after the sweep
    assert b.next_wake() == now + SWEEP_INTERVAL_MS


def test_a_duplicate_detection_window_makes_a_sweep_due_when_it_closes() -> None:
    b = broker()
    now = 1_000_000
    queue = b.resolve_target("dedup")
    b.send(queue, envelope("m-1"), now)
    window = queue.cfg.duplicate_window_ms
    assert b.next_wake() == now + window
    b.run_due(now + window)
    assert b.next_wake() is None
    b.send(queue, envelope("m-1"), now + window)  # accepted again: the window has closed
    assert len(b.resolve_source("dedup").messages) == 2


def test_the_bridge_runs_calls_on_the_loop_thread_and_stop_ends_the_loop() -> None:
    bridge = LoopBridge()
    loop = IoLoop(AmqpServer(broker()), "127.0.0.1", 0, bridge)
    runner = threading.Thread(target=loop.run)
    runner.start()
    try:
        assert bridge.call(threading.get_ident, timeout=10) == runner.ident
        with socket.create_connection(("127.0.0.1", loop.port), timeout=10) as sock:
            sock.sendall(b"AMQP\x00\x01\x00\x00")  # an AMQP header: proton answers with its own
            assert sock.recv(8) == b"AMQP\x00\x01\x00\x00"
    finally:
        loop.stop()
        runner.join(10)
        bridge.close()
    assert not runner.is_alive()


def test_connections_opened_and_closed_side_by_side_leave_the_emulator_serving() -> None:
    # Connection churn as devhost makes it (a client per call, links closed with the connection):
    # every closed transport is released by the loop while the others keep going.
    failures: list[BaseException] = []

    def churn(worker: int, emulator: ServiceBusEmulator) -> None:
        for round_ in range(4):
            try:
                with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
                    with client.get_queue_sender("basic") as sender:
                        sender.send_messages(ServiceBusMessage(f"{worker}-{round_}"))
                        sender.schedule_messages(ServiceBusMessage("later"), dt.datetime.now(dt.UTC))
                    with client.get_queue_receiver("sessions", session_id=f"churn-{worker}-{round_}",
                                                   max_wait_time=1) as receiver:
                        receiver.receive_messages(1, max_wait_time=0.2)
            except BaseException as exc:
                failures.append(exc)

    with ServiceBusEmulator(CONFIG) as emulator:
        workers = [threading.Thread(target=churn, args=(n, emulator)) for n in range(6)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert failures == []
        assert emulator.process is not None and emulator.process.proc is not None
        assert emulator.process.proc.poll() is None
        with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
            with client.get_queue_sender("renew") as sender:
                sender.send_messages(ServiceBusMessage("still here"))
            with client.get_queue_receiver("renew", max_wait_time=5) as receiver:
                (msg,) = receiver.receive_messages(1, max_wait_time=5)
                assert str(msg) == "still here"
                receiver.complete_message(msg)
