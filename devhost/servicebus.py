"""Service Bus triggers: peek-lock receivers on the real ``azure-servicebus`` SDK (asyncio).

Contract, per ``serviceBusTrigger`` function (``queueName`` or ``topicName`` +
``subscriptionName``; ``connection`` names the app setting, default ``ServiceBus``):

* Non-session entities: one receiver link; up to ``maxConcurrentCalls`` messages are in
  flight at once (host.json ``extensions.serviceBus``, default 16 × CPU cores as in Azure).
* Session entities (``isSessionsEnabled``): ``maxConcurrentSessions`` workers (default 8),
  each accepting the next available session and pulling from it one message at a time, in
  order, until it has been empty for ``sessionIdleTimeout`` (devhost default 2 s), then
  releasing it and accepting another.
* Each message reaches the function as ``func.ServiceBusMessage`` with every property the
  azure-functions 1.26 constructor takes (a ``str``/``bytes`` annotation gets the body).
  ``cardinality="many"`` delivers a ``list`` of up to ``maxMessageBatchSize`` messages.
* Settlement by outcome, as the host does with ``autoCompleteMessages`` true: complete when
  the function (and its outputs) succeeded, abandon when it raised — the broker then
  redelivers and dead-letters after ``MaxDeliveryCount``. With ``autoCompleteMessages``
  false devhost settles nothing (the lock expires and the broker redelivers).
* Locks (message locks, or the session lock) are renewed while the function runs, up to
  ``maxAutoLockRenewalDuration`` (default 5 minutes), with the SDK's ``AutoLockRenewer``.
* A broken connection or a missing entity is logged and retried with backoff (1 s doubling
  to 30 s); a message that cannot be decoded is abandoned; nothing here stops the host.
* :meth:`ServiceBusListener.stop` stops receiving, lets running invocations finish and
  settle (bounded by the caller's timeout), then closes the links.
"""

from __future__ import annotations

import asyncio
import json
import logging
import typing
import uuid
from datetime import datetime, timedelta
from typing import Any

from azure.functions import meta
from azure.functions.servicebus import ServiceBusMessage as FunctionMessage
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusReceivedMessage
from azure.servicebus.aio import AutoLockRenewer, ServiceBusReceiver
from azure.servicebus.amqp import AmqpMessageBodyType
from azure.servicebus.exceptions import OperationTimeoutError

from .clients import Clients
from .invoke import InvocationFailed, Invoker
from .loader import FunctionEntry
from .settings import ServiceBusOptions

log = logging.getLogger("devhost.servicebus")

# How long one session worker waits in the broker for a session before asking again. Waiting
# costs nothing; asking again costs a new AMQP connection (the SDK opens one per receiver).
ACCEPT_WAIT_SECONDS = 30.0
# Until the first answer the listener is not known to be listening (the host reports Running
# only then), so the first ask is short: with no session waiting the broker answers after it.
FIRST_ACCEPT_WAIT_SECONDS = 2.0
POLL_SECONDS = 1.0  # how long one receive waits before the loop checks for shutdown


class Backoff:
    def __init__(self, first: float = 1.0, cap: float = 30.0) -> None:
        self._first, self._cap, self._next = first, cap, first

    def reset(self) -> None:
        self._next = self._first

    def next(self) -> float:
        delay, self._next = self._next, min(self._cap, self._next * 2)
        return delay


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _properties(message: ServiceBusReceivedMessage) -> dict[str, Any]:
    raw = message.application_properties or {}
    return {str(_text(k)): _text(v) for k, v in raw.items()}


def body_bytes(message: ServiceBusReceivedMessage) -> bytes:
    kind = message.body_type
    body = message.body
    if kind == AmqpMessageBodyType.DATA:
        return body if isinstance(body, bytes) else b"".join(body)
    if kind == AmqpMessageBodyType.SEQUENCE:
        return json.dumps(list(body), default=str).encode("utf-8")
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body, default=str).encode("utf-8")


def _delivery_count(message: ServiceBusReceivedMessage) -> int:
    # The AMQP header counts earlier deliveries (0 the first time); the .NET SDK the host uses
    # adds one for received messages, so functions see 1 on a first delivery in Azure.
    return (message.delivery_count or 0) + 1


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def to_function_message(message: ServiceBusReceivedMessage) -> FunctionMessage:
    """The ``func.ServiceBusMessage`` the Python worker would hand the function."""
    properties = _properties(message)
    state = message.state
    dead_letter_source = message.dead_letter_source
    metadata = {
        "MessageId": meta.Datum(message.message_id, "string"),
        "SequenceNumber": meta.Datum(message.sequence_number, "int"),
        "DeliveryCount": meta.Datum(_delivery_count(message), "int"),
        "SessionId": meta.Datum(message.session_id, "string"),
        "CorrelationId": meta.Datum(message.correlation_id, "string"),
        "ContentType": meta.Datum(message.content_type, "string"),
        "Label": meta.Datum(message.subject, "string"),
        "Subject": meta.Datum(message.subject, "string"),
        "ReplyTo": meta.Datum(message.reply_to, "string"),
        "To": meta.Datum(message.to, "string"),
        "LockToken": meta.Datum(str(message.lock_token) if message.lock_token else None, "string"),
        "EnqueuedTimeUtc": meta.Datum(_iso(message.enqueued_time_utc), "string"),
        "ExpiresAtUtc": meta.Datum(_iso(message.expires_at_utc), "string"),
        "LockedUntil": meta.Datum(_iso(message.locked_until_utc), "string"),
        "ApplicationProperties": meta.Datum(json.dumps(properties, default=str), "json"),
        "UserProperties": meta.Datum(json.dumps(properties, default=str), "json"),
    }
    return FunctionMessage(
        body=body_bytes(message),
        trigger_metadata={k: v for k, v in metadata.items() if v.value is not None},
        application_properties=properties,
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        dead_letter_error_description=message.dead_letter_error_description,
        dead_letter_reason=message.dead_letter_reason,
        dead_letter_source=dead_letter_source,
        delivery_count=_delivery_count(message),
        enqueued_sequence_number=message.enqueued_sequence_number,
        enqueued_time_utc=message.enqueued_time_utc,
        expires_at_utc=message.expires_at_utc,
        label=message.subject,
        locked_until=message.locked_until_utc,
        lock_token=str(message.lock_token) if message.lock_token else None,
        message_id=message.message_id or "",
        partition_key=message.partition_key,
        reply_to=message.reply_to,
        reply_to_session_id=message.reply_to_session_id,
        scheduled_enqueue_time_utc=message.scheduled_enqueue_time_utc,
        sequence_number=message.sequence_number,
        session_id=message.session_id,
        state=int(state.value) if state is not None else None,
        subject=message.subject,
        time_to_live=message.time_to_live,
        to=message.to,
        transaction_partition_key=None,
        user_properties=dict(properties),
    )


class ServiceBusListener:
    def __init__(self, entry: FunctionEntry, options: ServiceBusOptions, clients: Clients, invoker: Invoker,
                 connection_string: str) -> None:
        self.entry = entry
        self._options = options
        self._clients = clients
        self._invoker = invoker
        self._connection_string = connection_string
        trigger = entry.trigger
        self._queue = trigger.get("queueName")
        self._topic = trigger.get("topicName")
        self._subscription = trigger.get("subscriptionName")
        self._sessions = bool(trigger.get("isSessionsEnabled"))
        self._many = str(trigger.get("cardinality", "one")).lower() == "many"
        self.entity = self._queue or f"{self._topic}/Subscriptions/{self._subscription}"
        annotation = entry.annotations.get(trigger.name)
        self._annotation = typing.get_args(annotation)[0] if self._many and typing.get_args(annotation) else annotation
        self.running = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slot_free = asyncio.Event()
        self._busy_workers: set[int] = set()
        self._renewer: AutoLockRenewer | None = None
        self.last_error: str | None = None

    @property
    def description(self) -> str:
        kind = "session " if self._sessions else ""
        return f"serviceBusTrigger ({kind}{'queue ' + self._queue if self._queue else 'subscription ' + self.entity})"

    def start(self) -> None:
        self._renewer = AutoLockRenewer(max_lock_renewal_duration=self._options.max_auto_lock_renewal.total_seconds())
        if self._sessions:
            workers = self._options.max_concurrent_sessions
            self._tasks = [asyncio.create_task(self._session_worker(i)) for i in range(workers)]
        else:
            self._tasks = [asyncio.create_task(self._pump())]

    async def stop(self, timeout: float) -> None:
        self._stopping.set()
        self._slot_free.set()
        if self._sessions:
            for index, task in enumerate(self._tasks):
                if index not in self._busy_workers:
                    task.cancel()
        _, pending = await asyncio.wait(self._tasks, timeout=timeout) if self._tasks else (set(), set())
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
        if self._renewer is not None:
            await self._renewer.close()

    # ---------------------------------------------------------------------------------- plumbing

    def _receiver(self, **kwargs: Any) -> ServiceBusReceiver:
        client = self._clients.service_bus(self._connection_string)
        if self._queue:
            return client.get_queue_receiver(self._queue, prefetch_count=self._options.prefetch_count, **kwargs)
        return client.get_subscription_receiver(
            self._topic, self._subscription, prefetch_count=self._options.prefetch_count, **kwargs)

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    def _failed(self, what: str, exc: BaseException, delay: float) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.warning("Service Bus trigger %s (%s): %s failed: %s; retrying in %.0fs",
                    self.entry.name, self.entity, what, self.last_error, delay)

    def _value(self, messages: list[ServiceBusReceivedMessage]) -> Any:
        if self._many:
            return [self._convert(m) for m in messages]
        return self._convert(messages[0])

    def _convert(self, message: ServiceBusReceivedMessage) -> Any:
        if self._annotation is bytes:
            return body_bytes(message)
        if self._annotation is str:
            return body_bytes(message).decode("utf-8")
        return to_function_message(message)

    async def _run(self, receiver: ServiceBusReceiver, messages: list[ServiceBusReceivedMessage]) -> None:
        """Invoke the function for *messages* (one, or a batch) and settle them by outcome."""
        reason = f"New ServiceBus message detected on '{self.entity}'."
        try:
            value = self._value(messages)
        except Exception:
            log.exception("Service Bus trigger %s: cannot decode message %s; abandoning it",
                          self.entry.name, messages[0].message_id)
            succeeded = False
        else:
            try:
                await self._invoker.invoke(self.entry, value, reason)
                succeeded = True
            except InvocationFailed:
                succeeded = False
        if not self._options.auto_complete_messages:
            return
        for message in messages:
            try:
                if succeeded:
                    await receiver.complete_message(message)
                else:
                    await receiver.abandon_message(message)
            except Exception as exc:  # lock lost or link gone: the broker redelivers it
                log.warning("Service Bus trigger %s: could not %s message %s: %s", self.entry.name,
                            "complete" if succeeded else "abandon", message.message_id, exc)

    # ---------------------------------------------------------------------------------- non-session

    async def _pump(self) -> None:
        backoff = Backoff()
        limit = 1 if self._many else self._options.max_concurrent_calls
        while not self._stopping.is_set():
            try:
                async with self._receiver() as receiver:
                    self.running.set()
                    backoff.reset()
                    self.last_error = None
                    while not self._stopping.is_set():
                        free = limit - len(self._in_flight)
                        if free <= 0:
                            self._slot_free.clear()
                            await self._slot_free.wait()
                            continue
                        # One message per receive for single-message functions, as each of the
                        # host's concurrent receive calls takes one: the SDK holds a multi-message
                        # receive open ~200 ms after the first message to fill the batch, which
                        # would delay every hand-off by that much.
                        count = self._options.max_message_batch_size if self._many else 1
                        wait = POLL_SECONDS
                        messages = await receiver.receive_messages(max_message_count=count, max_wait_time=wait)
                        if not messages:
                            continue
                        batches = [messages] if self._many else [[m] for m in messages]
                        for batch in batches:
                            for message in batch:
                                self._register(receiver, message)
                            task = asyncio.create_task(self._run(receiver, batch))
                            self._in_flight.add(task)
                            task.add_done_callback(self._done)
                    # Shutdown: let running invocations finish and settle on this link.
                    if self._in_flight:
                        await asyncio.wait(set(self._in_flight))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = backoff.next()
                self._failed("receiving", exc, delay)
                await self._pause(delay)

    def _register(self, receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage) -> None:
        if self._renewer is None or self._options.max_auto_lock_renewal <= timedelta(0):
            return
        try:
            self._renewer.register(receiver, message)
        except Exception as exc:  # a renewer problem must not lose the message
            log.warning("Service Bus trigger %s: lock renewal not registered: %s", self.entry.name, exc)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slot_free.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("Service Bus trigger %s: unexpected error", self.entry.name, exc_info=task.exception())

    # ---------------------------------------------------------------------------------- sessions

    async def _session_worker(self, index: int) -> None:
        backoff = Backoff()
        idle = max(0.1, self._options.session_idle_timeout.total_seconds())
        while not self._stopping.is_set():
            try:
                wait = ACCEPT_WAIT_SECONDS if self.running.is_set() else FIRST_ACCEPT_WAIT_SECONDS
                receiver = self._receiver(session_id=NEXT_AVAILABLE_SESSION, max_wait_time=wait)
                async with receiver:
                    self.running.set()
                    backoff.reset()
                    self.last_error = None
                    session = receiver.session
                    # With no session to hand out the broker answers the attach without a lock
                    # and then detaches; the first receive below raises OperationTimeoutError.
                    if session.locked_until_utc is not None:
                        log.debug("Service Bus trigger %s: accepted session %s", self.entry.name, session.session_id)
                        if self._renewer is not None and self._options.max_auto_lock_renewal > timedelta(0):
                            self._renewer.register(receiver, session)
                    while not self._stopping.is_set():
                        count = self._options.max_message_batch_size if self._many else 1
                        messages = await receiver.receive_messages(max_message_count=count, max_wait_time=idle)
                        if not messages:
                            break  # idle: hand the session back and look for another
                        self._busy_workers.add(index)
                        try:
                            await self._run(receiver, messages)
                        finally:
                            self._busy_workers.discard(index)
            except asyncio.CancelledError:
                raise
            except OperationTimeoutError:
                self.running.set()  # the broker answered: no session is waiting
            except Exception as exc:
                delay = backoff.next()
                self._failed("accepting a session", exc, delay)
                await self._pause(delay)
