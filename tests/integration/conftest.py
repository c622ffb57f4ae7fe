"""Real Azurite, Service Bus emulator and Event Grid emulator, started as subprocesses once per
session, and helpers to drive the app's handlers with real trigger objects.

Nothing here mocks an Azure SDK client: adapters talk to the emulators through the SDKs. Every
wait polls against a generous deadline; no test asserts how long something took.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from azure.functions.servicebus import ServiceBusMessage as ServiceBusTrigger
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.exceptions import OperationTimeoutError

from choreography.runtime import reset_runtime
from devstack.stack import EVENTGRID_KEY, Azurite, EventGridEmulator, ServiceBusEmulator
from tests.support.waiting import DEADLINE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as running:
        yield running


@pytest.fixture(scope="session")
def servicebus() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator(ROOT / "emulators" / "servicebus" / "config.json") as running:
        yield running


@pytest.fixture(scope="session")
def eventgrid() -> Iterator[EventGridEmulator]:
    with EventGridEmulator() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def tables(azurite: Azurite) -> Iterator[TableServiceClient]:
    with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        yield service


@pytest.fixture
def fresh_table(tables: TableServiceClient) -> Callable[[], Any]:
    """A new, empty table with a unique name."""

    def make() -> Any:
        return tables.create_table(f"t{uuid.uuid4().hex[:20]}")

    return make


@pytest.fixture(scope="session")
def sb_client(servicebus: ServiceBusEmulator) -> Iterator[ServiceBusClient]:
    with ServiceBusClient.from_connection_string(servicebus.connection_string) as client:
        yield client


APP_SETTINGS = {
    # A flight that takes (a little) time: its timer is a hop of its own to drive; the e2e tests
    # run with 0, where the join ships at once.
    "FLIGHT_TIME_SECONDS": "0.2",
    "JOIN_TIMEOUT_SECONDS": "2",
    "DRONE_RETRY_BASE_SECONDS": "0.2",
    "DRONE_RETRY_MAX_SECONDS": "1",
    "REMEDIATION_MAX_ATTEMPTS": "2",
    "REMEDIATION_RETRY_BASE_SECONDS": "1",
}


@pytest.fixture(scope="session")
def app_settings(azurite: Azurite, servicebus: ServiceBusEmulator, eventgrid: EventGridEmulator) -> dict[str, str]:
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "ServiceBusConnection": servicebus.connection_string,
        "EventGridTopicEndpoint": eventgrid.topic_endpoint(),
        "EventGridTopicKey": EVENTGRID_KEY,
        "PaymentsEventGridTopicEndpoint": eventgrid.topic_endpoint("payments"),
        "PaymentsEventGridTopicKey": EVENTGRID_KEY,
        **APP_SETTINGS,
    }


@pytest.fixture(scope="session")
def app(app_settings: dict[str, str]) -> Iterator[dict[str, str]]:
    """The app's settings in the environment, as the host provides them; the app builds its
    runtime (clients, services) from them on first use, once for the session like a worker."""
    patch = pytest.MonkeyPatch()
    for name, value in app_settings.items():
        patch.setenv(name, value)
    reset_runtime()
    yield app_settings
    reset_runtime()
    patch.undo()


# -- Service Bus: a mailbox over the emulator's entities ---------------------------------------
@dataclass
class Received:
    """What a receiver got, kept after completing it so the test can feed it to a handler."""

    body: bytes
    message_id: str
    subject: str | None
    session_id: str | None
    correlation_id: str | None
    content_type: str | None
    application_properties: dict[str, Any]
    scheduled_enqueue_time_utc: Any
    enqueued_time_utc: Any
    received_at: datetime
    dead_letter_source: str | None = None  # set by Service Bus on a dead letter it forwarded

    @classmethod
    def of(cls, message: ServiceBusReceivedMessage) -> Received:
        return cls(
            body=b"".join(message.body),
            message_id=str(message.message_id),
            subject=message.subject,
            session_id=message.session_id,
            correlation_id=message.correlation_id,
            content_type=message.content_type,
            application_properties={_text(k): _text(v) for k, v in (message.application_properties or {}).items()},
            scheduled_enqueue_time_utc=message.scheduled_enqueue_time_utc,
            enqueued_time_utc=message.enqueued_time_utc,
            received_at=datetime.now(UTC),
            dead_letter_source=message.dead_letter_source,
        )

    def trigger(self, delivery_count: int = 1) -> ServiceBusTrigger:
        """The trigger object the Functions host would hand the function for this message."""
        return ServiceBusTrigger(
            body=self.body, application_properties=dict(self.application_properties),
            content_type=self.content_type, correlation_id=self.correlation_id, delivery_count=delivery_count,
            label=self.subject, subject=self.subject, message_id=self.message_id, session_id=self.session_id,
            enqueued_time_utc=self.enqueued_time_utc, lock_token=str(uuid.uuid4()),
            user_properties=dict(self.application_properties), dead_letter_source=self.dead_letter_source)

    @property
    def delivery_id(self) -> str | None:
        return self.session_id or self.correlation_id


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


class Mailbox:
    """Receives (and completes) from an entity, keeping every message until a test takes it, so
    messages for other deliveries are never lost to the test that drained them."""

    def __init__(self, client: ServiceBusClient) -> None:
        self.client = client
        self.kept: dict[str, list[Received]] = {}
        self.lock = threading.Lock()
        self.receivers: dict[str, Any] = {}  # open receivers by entity (and session)
        self.senders: dict[str, Any] = {}

    def _pull(self, entity: str, session_id: str | None) -> None:
        key = f"{entity}|{session_id or ''}"
        receiver = self.receivers.get(key)
        if receiver is None:
            if session_id is not None:
                self._forget_old_sessions()
                try:
                    receiver = self.client.get_queue_receiver(entity, session_id=session_id, max_wait_time=1)
                    receiver.__enter__()
                except OperationTimeoutError:
                    return
            elif "/subscriptions/" in entity:
                topic, subscription = entity.split("/subscriptions/")
                receiver = self.client.get_subscription_receiver(topic, subscription)
            else:
                receiver = self.client.get_queue_receiver(entity)
            self.receivers[key] = receiver
        self._receive(receiver, entity)

    def release_session(self, entity: str, session_id: str) -> None:
        """Close our receiver on a session, so another receiver can lock it."""
        receiver = self.receivers.pop(f"{entity}|{session_id}", None)
        if receiver is not None:
            receiver.close()

    def _forget_old_sessions(self, keep: int = 8) -> None:
        """Session receivers hold the session lock and a connection: keep only the recent ones."""
        sessions = [key for key in self.receivers if not key.endswith("|")]
        for key in sessions[: max(0, len(sessions) - keep)]:
            self.receivers.pop(key).close()

    def _receive(self, receiver: Any, entity: str) -> None:
        try:
            messages = receiver.receive_messages(max_message_count=50, max_wait_time=0.5)
        except OperationTimeoutError:
            return  # the link was still opening: the caller polls again
        for message in messages:
            receiver.complete_message(message)
            with self.lock:
                self.kept.setdefault(f"{entity}|{message.session_id or ''}", []).append(Received.of(message))

    def close(self) -> None:
        closing = [threading.Thread(target=link.close) for link in [*self.receivers.values(), *self.senders.values()]]
        for thread in closing:
            thread.start()
        for thread in closing:
            thread.join()

    def _find(self, entity: str, session_id: str | None, predicate: Callable[[Received], bool]) -> list[Received]:
        with self.lock:
            return [m for key, messages in self.kept.items() if key.split("|")[0] == entity
                    and (session_id is None or key.split("|")[1] == session_id) for m in messages if predicate(m)]

    def take(self, entity: str, predicate: Callable[[Received], bool], session_id: str | None = None,
             count: int = 1, timeout: float = DEADLINE) -> list[Received]:
        """Wait for ``count`` messages on ``entity`` matching ``predicate``; remove and return them."""
        deadline = time.monotonic() + timeout
        while True:
            found = self._find(entity, session_id, predicate)
            if len(found) >= count:
                with self.lock:
                    for message in found[:count]:
                        for messages in self.kept.values():
                            if message in messages:
                                messages.remove(message)
                return found[:count]
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {count} message(s) on {entity} "
                                     f"(found {len(found)}); kept: {self.summary(entity)}")
            self._pull(entity, session_id)

    def one(self, entity: str, subject: str, delivery_id: str, session: bool = False,
            timeout: float = DEADLINE) -> Received:
        [message] = self.take(entity, lambda m: m.subject == subject and m.delivery_id == delivery_id,
                              session_id=delivery_id if session else None, timeout=timeout)
        return message

    def drain_until_sentinel(self, entity: str, sentinel_id: str, session_id: str | None = None) -> list[Received]:
        """Everything on ``entity`` up to a sentinel sent after the messages of interest: FIFO makes
        'nothing else arrived' checkable without waiting for a time to pass."""
        self.take(entity, lambda m: m.message_id == sentinel_id, session_id=session_id)
        with self.lock:
            return [m for key, messages in self.kept.items() if key.split("|")[0] == entity for m in messages]

    def summary(self, entity: str) -> list[tuple[str | None, str | None]]:
        with self.lock:
            return [(m.subject, m.delivery_id) for key, ms in self.kept.items() if key.startswith(entity) for m in ms]

    def send_sentinel(self, entity: str, subject: str = "Sentinel", session_id: str | None = None) -> str:
        """A marker message; on the topic, ``subject`` must be a label the subscription routes."""
        sentinel = f"sentinel-{uuid.uuid4().hex}"
        message = ServiceBusMessage(b"{}", message_id=sentinel, subject=subject, session_id=session_id,
                                    correlation_id=session_id)
        sender = self.senders.get(entity)
        if sender is None:
            sender = (self.client.get_topic_sender(entity) if entity == "deliveries"
                      else self.client.get_queue_sender(entity))
            self.senders[entity] = sender
        sender.send_messages(message)
        return sentinel


@pytest.fixture(scope="session")
def mailbox(sb_client: ServiceBusClient) -> Iterator[Mailbox]:
    box = Mailbox(sb_client)
    yield box
    box.close()


@pytest.fixture
def hops(mailbox: Mailbox, eventgrid: EventGridEmulator) -> Any:
    from .hops import Hops

    return Hops(mailbox, eventgrid)
