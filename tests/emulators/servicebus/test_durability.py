"""Durability: SIGKILL the emulator mid-stream; nothing it acknowledged may be lost.

Acknowledged means the SDK's send returned (the broker settled the transfer ``accepted``) or
a settlement was confirmed.  Locks held at the crash die with the process: those messages come
back with their delivery count raised, and session state survives.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceiveMode

from devstack.stack import ServiceBusEmulator

CONFIG = Path(__file__).with_name("config.json")


def collect(receiver: Any, count: int, timeout: float = 30.0) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got.extend(receiver.receive_messages(max_message_count=min(100, count - len(got)), max_wait_time=1))
    return got


def drain_all(receiver: Any, at_least: int, timeout: float = 60.0) -> list[Any]:
    """Everything in the queue: at least ``at_least`` messages, then until a receive comes back empty."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = receiver.receive_messages(max_message_count=100, max_wait_time=1)
        got.extend(batch)
        if not batch and len(got) >= at_least:
            break
    return got


def test_sigkill_mid_stream_loses_no_acknowledged_message(tmp_path: Path) -> None:
    emulator = ServiceBusEmulator(CONFIG, data_dir=tmp_path / "sb").start()
    acknowledged: list[str] = []
    stop = threading.Event()

    def produce() -> None:
        # Keep sending until the broker dies under us; only sends that returned count.
        with ServiceBusClient.from_connection_string(emulator.connection_string, retry_total=0) as client:
            with client.get_queue_sender("basic") as sender:
                i = 0
                while not stop.is_set():
                    batch = [ServiceBusMessage(f"m{i + k}", message_id=f"m{i + k}") for k in range(10)]
                    try:
                        sender.send_messages(batch)
                    except Exception:
                        return
                    acknowledged.extend(f"m{i + k}" for k in range(10))
                    i += 10

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    emulator.kill()  # SIGKILL while the producer is still sending
    stop.set()
    producer.join(30)
    assert len(acknowledged) >= 300

    emulator.start()
    try:
        with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
            with client.get_queue_receiver("basic", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as r:
                received = [str(m) for m in drain_all(r, at_least=len(acknowledged))]
        missing = set(acknowledged) - set(received)
        assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:5]}"
        # At most the one in-flight batch was stored without its acknowledgement reaching us.
        assert len(received) - len(acknowledged) <= 10
    finally:
        emulator.stop()


def test_locks_held_at_crash_are_redelivered_and_session_state_survives(tmp_path: Path) -> None:
    emulator = ServiceBusEmulator(CONFIG, data_dir=tmp_path / "sb").start()
    try:
        with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
            with client.get_queue_sender("settle") as sender:
                sender.send_messages([ServiceBusMessage(f"locked{i}") for i in range(3)] +
                                     [ServiceBusMessage("done")])
            with client.get_queue_sender("sessions-state") as sender:
                sender.send_messages(ServiceBusMessage("s", session_id="crash"))
            before_state = dt.datetime.now(dt.UTC) - dt.timedelta(milliseconds=1)
            with client.get_queue_receiver("sessions-state", session_id="crash") as r:
                r.session.set_state(b"step-1")
            after_state = dt.datetime.now(dt.UTC)
            receiver = client.get_queue_receiver("settle", prefetch_count=0)
            receiver.__enter__()
            got = collect(receiver, 4)
            done = [m for m in got if str(m) == "done"]
            receiver.complete_message(done[0])
            emulator.kill()  # three messages are locked, unsettled, when the broker dies
        emulator.start()
        with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
            with client.get_queue_receiver("settle") as r:
                back = collect(r, 3)
                assert sorted(str(m) for m in back) == ["locked0", "locked1", "locked2"]
                assert all(m.delivery_count == 1 for m in back)
                for m in back:
                    r.complete_message(m)
                assert collect(r, 1, timeout=1.5) == []
            # ... and so does when it was set, which list_sessions(state_updated_after=...) filters by.
            assert "crash" in client.list_queue_sessions("sessions-state", state_updated_after=before_state)
            assert "crash" not in client.list_queue_sessions("sessions-state", state_updated_after=after_state)
            with client.get_queue_receiver("sessions-state", session_id="crash") as r:
                assert r.session.get_state() == b"step-1"
                (s,) = collect(r, 1)
                r.complete_message(s)
    finally:
        emulator.stop()


def test_sigterm_stops_cleanly_and_restart_keeps_messages(tmp_path: Path) -> None:
    emulator = ServiceBusEmulator(CONFIG, data_dir=tmp_path / "sb").start()
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        with client.get_queue_sender("basic") as sender:
            sender.send_messages(ServiceBusMessage("kept"))
    assert emulator.stop() == 0
    emulator.start()
    try:
        with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
            with client.get_queue_receiver("basic", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as r:
                assert [str(m) for m in collect(r, 1)] == ["kept"]
    finally:
        emulator.stop()


def test_a_data_directory_from_before_session_state_times_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    from emulators.servicebus.store import SqliteStore

    old = sqlite3.connect(tmp_path / "servicebus.db")
    old.execute("CREATE TABLE session_states (entity TEXT NOT NULL, session_id TEXT NOT NULL, state BLOB NOT NULL, "
                "PRIMARY KEY (entity, session_id))")
    old.execute("INSERT INTO session_states VALUES ('q', 'kept', x'01')")
    old.commit()
    old.close()
    store = SqliteStore(tmp_path)
    try:
        store.set_session_state("q", "new", b"\x02", 1234)
        assert sorted(store.load_session_states()) == [("q", "kept", b"\x01", 0), ("q", "new", b"\x02", 1234)]
    finally:
        store.close()
