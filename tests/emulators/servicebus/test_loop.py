"""The emulator's I/O loop (issue 15): no timer when nothing is due, and the administration API's
bridge onto the loop thread.  Broker and loop only, on a free port; the SDK-level behaviour over
this loop is what the rest of tests/emulators exercises."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from proton import Message

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
