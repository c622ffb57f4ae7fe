"""At ``--log-level info`` the emulator prints one line per session accept, the count the
drone-delivery benchmark reports (a session accept is no span of the SDK's)."""

from __future__ import annotations

from pathlib import Path

from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import OperationTimeoutError

from benchmarks.deliveries import SESSION_ACCEPT
from devstack.stack import ServiceBusEmulator

CONFIG = Path(__file__).with_name("config.json")


def test_one_line_per_session_accept_and_none_for_a_refused_one() -> None:
    with ServiceBusEmulator(CONFIG, log_level="info") as emulator:
        assert emulator.process is not None
        seen = emulator.process.lines_seen
        with ServiceBusClient.from_connection_string(emulator.connection_string, retry_total=0) as client:
            with client.get_queue_sender("sessions-next") as sender:
                sender.send_messages([ServiceBusMessage("a", session_id="s-1"),
                                      ServiceBusMessage("b", session_id="s-2")])
            for session in (NEXT_AVAILABLE_SESSION, "s-2"):
                with client.get_queue_receiver("sessions-next", session_id=session, max_wait_time=1) as receiver:
                    for message in receiver.receive_messages(max_message_count=1, max_wait_time=2):
                        receiver.complete_message(message)
            try:
                with client.get_queue_receiver("sessions-next", session_id=NEXT_AVAILABLE_SESSION,
                                               max_wait_time=1) as receiver:
                    receiver.receive_messages(max_wait_time=1)
            except OperationTimeoutError:
                pass  # no session left to accept: refused, so not counted
        accepted = [line for line in emulator.process.lines_after(seen) if SESSION_ACCEPT in line]
        assert [line.split("session ", 1)[1].split(" ")[0] for line in accepted] == ["s-1", "s-2"]
