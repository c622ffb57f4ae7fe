"""Service Bus semantics, independent of the wire: entities, locks, sessions, dead-lettering.

Everything here runs on the I/O loop thread of :mod:`.loop`; nothing is shared with other
threads, so there are no locks.  Every state change is written to the :class:`~.store.Store`
inside a transaction before the caller acknowledges the client.

Terms follow Azure's documentation: a *holder* is a queue or a subscription (an entity that
holds messages); its dead-letter queue is a holder too.  ``delivery_count`` is kept as AMQP
puts it on the wire, the number of *previous* deliveries (the SDKs add one where they show the
Service Bus value).
"""

from __future__ import annotations

import heapq
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from proton import symbol, timestamp

from . import codec
from .config import EntityConfig, NamespaceConfig, TopicConfig
from .filters import MessageView
from .store import MemoryStore, Store, StoredMessage

ACTIVE, DEFERRED, SCHEDULED = 0, 1, 2
DLQ_SUFFIX = "/$deadletterqueue"
NO_EXPIRY = None

# Condition symbols Service Bus uses; the SDK maps these to its exception types.
NOT_FOUND = "amqp:not-found"
NOT_ALLOWED = "amqp:not-allowed"
SIZE_EXCEEDED = "amqp:link:message-size-exceeded"
LOCK_LOST = "com.microsoft:message-lock-lost"
SESSION_LOCK_LOST = "com.microsoft:session-lock-lost"
SESSION_CANNOT_BE_LOCKED = "com.microsoft:session-cannot-be-locked"
MESSAGE_NOT_FOUND = "com.microsoft:message-not-found"
ARGUMENT_ERROR = "com.microsoft:argument-error"
TIMEOUT = "com.microsoft:timeout"


LOCK_TOKEN_ANNOTATION = symbol("x-opt-lock-token")
# Stored beside the message annotations (the store has no columns for them); never sent as such.
STORED_PRIORITY = symbol("x-emulator-priority")
STORED_DELIVERY_ANNOTATIONS = symbol("x-emulator-delivery-annotations")


def _stored_annotations(msg: "Msg") -> dict[Any, Any]:
    if msg.priority is None and not msg.delivery_annotations:
        return msg.annotations
    stored = dict(msg.annotations)
    if msg.priority is not None:
        stored[STORED_PRIORITY] = msg.priority
    if msg.delivery_annotations:
        stored[STORED_DELIVERY_ANNOTATIONS] = msg.delivery_annotations
    return stored


SWEEP_INTERVAL_MS = 1000


def now_ms() -> int:
    return int(time.time() * 1000)


class BrokerError(Exception):
    """A client request Service Bus would refuse; ``condition`` is the AMQP error symbol."""

    def __init__(self, condition: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description
        self.status = status


class Consumer(Protocol):
    """A receiving link as the broker sees it (implemented by the server)."""

    peek_lock: bool
    session_id: str | None

    def credit(self) -> int: ...
    def deliver(self, msg: "Msg", holder: "Holder", locked_until_ms: int | None) -> None: ...
    def session_lost(self) -> None: ...


@dataclass(eq=False)
class Msg:
    seq: int
    props_raw: bytes
    app_raw: bytes
    body_raw: bytes
    annotations: dict[Any, Any]
    message_id: str | None
    session_id: str | None
    enqueued_ms: int
    ttl_ms: int | None
    expires_ms: int | None
    state: int = ACTIVE
    scheduled_ms: int | None = None
    delivery_count: int = 0
    lock_token: uuid.UUID | None = None
    locked_until_ms: int | None = None
    locked_by: Any = None
    original_seq: int | None = None
    # What the sender put in sections the broker rewrites: they travel on to the receiver.
    priority: int | None = None
    delivery_annotations: dict[Any, Any] | None = None

    @property
    def size(self) -> int:
        return len(self.props_raw) + len(self.app_raw) + len(self.body_raw)

    def encode(self, locked_until_ms: int | None) -> bytes:
        """The message as a receiver gets it: our header and annotations, the sender's sections."""
        annotations = dict(self.annotations)
        annotations[symbol("x-opt-sequence-number")] = self.seq
        annotations[symbol("x-opt-enqueued-time")] = timestamp(self.enqueued_ms)
        if self.original_seq is not None and self.original_seq != self.seq:
            # As Service Bus: only a message that moved (dead-lettered, forwarded) names its first number.
            annotations[symbol("x-opt-enqueue-sequence-number")] = self.original_seq
        if locked_until_ms is not None:
            annotations[symbol("x-opt-locked-until")] = timestamp(locked_until_ms)
        if self.state != ACTIVE:
            annotations[symbol("x-opt-message-state")] = self.state
        if self.scheduled_ms is not None:
            annotations[symbol("x-opt-scheduled-enqueue-time")] = timestamp(self.scheduled_ms)
        delivery = self.delivery_annotations
        if locked_until_ms is not None and self.lock_token is not None:
            # Service Bus names the lock token in the delivery annotations as well as in the tag.
            delivery = dict(delivery or {})
            delivery[LOCK_TOKEN_ANNOTATION] = self.lock_token
        # Service Bus always sends delivery annotations, empty when there is nothing to say.
        return (codec.header_section(self.delivery_count, self.ttl_ms, priority=self.priority)
                + codec.delivery_annotations_section(delivery or {})
                + codec.annotations_section(annotations) + self.props_raw + self.app_raw + self.body_raw)

    def app_properties(self) -> dict[Any, Any]:
        if not self.app_raw:
            return {}
        return dict(codec.split_sections(self.app_raw)[0].value or {})

    def set_app_properties(self, values: dict[Any, Any]) -> None:
        self.app_raw = codec.app_properties_section(values)

    def properties(self) -> list[Any]:
        if not self.props_raw:
            return []
        return list(codec.split_sections(self.props_raw)[0].value or [])

    def copy(self) -> "Msg":
        return Msg(0, self.props_raw, self.app_raw, self.body_raw, dict(self.annotations), self.message_id,
                   self.session_id, self.enqueued_ms, self.ttl_ms, self.expires_ms, ACTIVE, self.scheduled_ms,
                   original_seq=self.original_seq, priority=self.priority,
                   delivery_annotations=self.delivery_annotations)


def message_view(msg: Msg) -> MessageView:
    """The properties SQL and correlation filters see, by their Service Bus names."""
    props = msg.properties()
    system: dict[str, Any] = {}

    def put(name: str, index: int) -> None:
        if len(props) > index and props[index] is not None:
            value = props[index]
            system[name] = str(value) if isinstance(value, (uuid.UUID,)) else value

    put("MessageId", codec.P_MESSAGE_ID)
    put("To", codec.P_TO)
    put("Label", codec.P_SUBJECT)
    put("ReplyTo", codec.P_REPLY_TO)
    put("CorrelationId", codec.P_CORRELATION_ID)
    put("ContentType", codec.P_CONTENT_TYPE)
    put("SessionId", codec.P_GROUP_ID)
    put("ReplyToSessionId", codec.P_REPLY_TO_GROUP_ID)
    if "Label" in system:
        system["Subject"] = system["Label"]
    system["Size"] = msg.size
    system["DeliveryCount"] = msg.delivery_count
    system["EnqueuedTimeUtc"] = msg.enqueued_ms
    if msg.ttl_ms is not None:
        system["TimeToLive"] = msg.ttl_ms
    if msg.scheduled_ms is not None:
        system["ScheduledEnqueueTimeUtc"] = msg.scheduled_ms
    pk = msg.annotations.get(symbol("x-opt-partition-key"))
    if pk is not None:
        system["PartitionKey"] = pk
    user = {str(k): v for k, v in msg.app_properties().items()}
    return MessageView(system=system, user=user)


_SYSTEM_INDEX = {"MessageId": codec.P_MESSAGE_ID, "To": codec.P_TO, "Label": codec.P_SUBJECT,
                 "Subject": codec.P_SUBJECT, "ReplyTo": codec.P_REPLY_TO,
                 "CorrelationId": codec.P_CORRELATION_ID, "ContentType": codec.P_CONTENT_TYPE,
                 "SessionId": codec.P_GROUP_ID, "ReplyToSessionId": codec.P_REPLY_TO_GROUP_ID}


def apply_view(msg: Msg, before: MessageView, after: MessageView) -> None:
    """Write back what a rule action changed in the view."""
    if after.user != before.user:
        msg.set_app_properties(dict(after.user))
    changed = {k: v for k, v in after.system.items() if before.system.get(k) != v and k in _SYSTEM_INDEX}
    if changed:
        props = msg.properties()
        props.extend([None] * (13 - len(props)))
        for name, value in changed.items():
            props[_SYSTEM_INDEX[name]] = value
        msg.props_raw = codec.encode_section(codec.PROPERTIES, props)


@dataclass
class SessionInfo:
    state: bytes | None = None
    state_updated_ms: int = 0  # when the state was last set: list_sessions(state_updated_after=...)
    holder: Any = None  # the Consumer holding the session lock
    locked_until_ms: int = 0
    ready: list[int] = field(default_factory=list)  # heap of sequence numbers


class Holder:
    """A queue, a subscription, or the dead-letter queue of either."""

    def __init__(self, broker: "Broker", path: str, display: str, cfg: EntityConfig, is_dlq: bool = False) -> None:
        self.broker = broker
        self.path = path
        self.display = display
        self.cfg = cfg
        self.is_dlq = is_dlq
        self.requires_session = cfg.requires_session and not is_dlq
        self.messages: dict[int, Msg] = {}
        self.ready: list[int] = []
        self.sessions: dict[str, SessionInfo] = {}
        # Sessions with a lock holder, and (in arrival order) free sessions that have messages
        # ready: next-available, pumping and timers touch these, never every session.
        self.held: dict[str, SessionInfo] = {}
        self.free_ready: dict[str, None] = {}
        # (expires_ms, seq): time-to-live is swept from this heap, not by scanning messages.
        self.expiries: list[tuple[int, int]] = []
        self.locks: dict[uuid.UUID, Msg] = {}
        self.scheduled: list[tuple[int, int]] = []
        self.consumers: list[Consumer] = []
        self.waiting: list[Callable[[], bool]] = []
        self.last_seq = 0
        self._rr = 0
        self.dlq: Holder | None = None
        if not is_dlq:
            self.dlq = Holder(broker, path + DLQ_SUFFIX, display + "/$DeadLetterQueue", cfg, is_dlq=True)

    @property
    def store(self) -> Store:
        return self.broker.store

    # -- intake ---------------------------------------------------------------------------
    def next_seq(self) -> int:
        self.last_seq += 1
        self.store.save_sequence(self.path, self.last_seq)
        return self.last_seq

    def accept(self, msg: Msg, now: int) -> None:
        """Take a message in (forwarding it on if this holder forwards)."""
        if self.cfg.forward_to and not self.is_dlq:
            self.broker.forward(msg, self.cfg.forward_to, now, self)
            return
        if self.requires_session and msg.session_id is None:
            # Azure drops such a copy for a subscription; a sender to a queue is refused earlier.
            return
        msg.seq = self.next_seq()
        if msg.original_seq is None:
            msg.original_seq = msg.seq
        msg.enqueued_ms = now
        ttl = min(msg.ttl_ms, self.cfg.default_ttl_ms) if msg.ttl_ms is not None else self.cfg.default_ttl_ms
        # Nothing expires in a dead-letter queue: it is where expired messages go.
        msg.expires_ms = now + ttl if ttl < self.broker.max_ttl_ms and not self.is_dlq else None
        msg.lock_token = None
        msg.locked_until_ms = None
        msg.locked_by = None
        if msg.scheduled_ms is not None and msg.scheduled_ms > now:
            msg.state = SCHEDULED
        else:
            msg.state = ACTIVE
        self.messages[msg.seq] = msg
        self.store.insert(self._stored(msg))
        self._track_expiry(msg)
        self._make_visible(msg)

    def _track_expiry(self, msg: Msg) -> None:
        if msg.expires_ms is not None:
            heapq.heappush(self.expiries, (msg.expires_ms, msg.seq))
            self.broker.sweep_at(msg.expires_ms)

    def _make_visible(self, msg: Msg) -> None:
        if msg.state == SCHEDULED:
            heapq.heappush(self.scheduled, (msg.scheduled_ms or 0, msg.seq))
            self.broker.wake_at(msg.scheduled_ms or 0)
        elif msg.state == ACTIVE and msg.lock_token is None:
            if self.requires_session:
                sid = msg.session_id or ""
                session = self.sessions.setdefault(sid, SessionInfo())
                heapq.heappush(session.ready, msg.seq)
                if session.holder is None:
                    self.free_ready[sid] = None
            else:
                heapq.heappush(self.ready, msg.seq)
            self.broker.mark_dirty(self)

    def _stored(self, msg: Msg) -> StoredMessage:
        return StoredMessage(
            entity=self.path, seq=msg.seq, state=msg.state, session_id=msg.session_id,
            message_id=None if msg.message_id is None else str(msg.message_id), enqueued_ms=msg.enqueued_ms,
            expires_ms=msg.expires_ms, scheduled_ms=msg.scheduled_ms, delivery_count=msg.delivery_count,
            locked_until_ms=msg.locked_until_ms, lock_token=msg.lock_token.bytes if msg.lock_token else None,
            ttl_ms=msg.ttl_ms, annotations=codec.encode_value(_stored_annotations(msg)), props=msg.props_raw,
            app=msg.app_raw, body=msg.body_raw, original_seq=msg.original_seq,
        )

    def restore(self, stored: StoredMessage, now: int) -> None:
        annotations = dict(codec.split_sections(b"\x00\x53\x72" + stored.annotations)[0].value or {})
        priority = annotations.pop(STORED_PRIORITY, None)
        delivery = annotations.pop(STORED_DELIVERY_ANNOTATIONS, None)
        msg = Msg(stored.seq, stored.props, stored.app, stored.body, annotations, stored.message_id,
                  stored.session_id, stored.enqueued_ms, stored.ttl_ms, stored.expires_ms, stored.state,
                  stored.scheduled_ms, stored.delivery_count, original_seq=stored.original_seq,
                  priority=None if priority is None else int(priority),
                  delivery_annotations=None if delivery is None else dict(delivery))
        self.last_seq = max(self.last_seq, stored.seq)
        self.messages[msg.seq] = msg
        self._track_expiry(msg)
        if stored.lock_token is not None:
            # The lock died with the process that granted it; as on expiry, the message comes back.
            self._count_failed_delivery(msg, now)
            if msg.seq not in self.messages:
                return
        if msg.state == DEFERRED:
            return
        self._make_visible(msg)

    # -- delivery -------------------------------------------------------------------------
    def pump(self, now: int) -> None:
        """Hand ready messages to consumers with credit, round robin."""
        if self.requires_session:
            for sid, session in list(self.held.items()):
                consumer = session.holder
                if consumer is not None:
                    self._pump_session(sid, session, consumer, now)
            self._serve_waiting()
            return
        consumers = [c for c in self.consumers if c.credit() > 0]
        while self.ready and consumers:
            progressed = False
            for consumer in list(consumers):
                if consumer.credit() <= 0:
                    consumers.remove(consumer)
                    continue
                msg = self._next_ready(self.ready, now)
                if msg is None:
                    return
                self._hand_over(msg, consumer, now)
                progressed = True
            if not progressed:
                break

    def _pump_session(self, sid: str, session: SessionInfo, consumer: Consumer, now: int) -> None:
        while session.ready and consumer.credit() > 0:
            msg = self._next_ready(session.ready, now)
            if msg is None:
                return
            self._hand_over(msg, consumer, now, session.locked_until_ms)

    def _next_ready(self, heap: list[int], now: int) -> Msg | None:
        while heap:
            seq = heapq.heappop(heap)
            msg = self.messages.get(seq)
            if msg is None or msg.state != ACTIVE or msg.lock_token is not None:
                continue
            if msg.expires_ms is not None and msg.expires_ms <= now:
                self.expire(msg, now)
                continue
            return msg
        return None

    def _hand_over(self, msg: Msg, consumer: Consumer, now: int, session_lock_ms: int | None = None) -> None:
        if consumer.peek_lock:
            msg.lock_token = uuid.uuid4()
            msg.locked_until_ms = session_lock_ms if session_lock_ms else now + self.cfg.lock_duration_ms
            msg.locked_by = consumer
            self.locks[msg.lock_token] = msg
            with self.store.transaction():
                self.store.update_lock(self.path, msg.seq, msg.delivery_count, msg.locked_until_ms,
                                       msg.lock_token.bytes)
            if not self.requires_session:
                self.broker.wake_at(msg.locked_until_ms)
            consumer.deliver(msg, self, msg.locked_until_ms)
        else:
            with self.store.transaction():
                self._remove(msg)
            consumer.deliver(msg, self, None)

    def _remove(self, msg: Msg) -> None:
        self.messages.pop(msg.seq, None)
        if msg.lock_token is not None:
            self.locks.pop(msg.lock_token, None)
        self.store.delete(self.path, msg.seq)

    # -- settlement -----------------------------------------------------------------------
    def locked(self, token: uuid.UUID, now: int) -> Msg:
        msg = self.locks.get(token)
        if msg is None or msg.locked_until_ms is None or (msg.locked_until_ms <= now and not self.requires_session):
            raise BrokerError(
                LOCK_LOST,
                "The lock supplied is invalid. Either the lock expired, or the message has already been removed "
                f"from the queue. Reference:{token}, Entity:{self.display}", 410)
        return msg

    def complete(self, token: uuid.UUID, now: int) -> None:
        msg = self.locked(token, now)
        with self.store.transaction():
            self._remove(msg)

    def abandon(self, token: uuid.UUID, now: int, properties_to_modify: dict[Any, Any] | None = None) -> None:
        msg = self.locked(token, now)
        with self.store.transaction():
            if properties_to_modify:
                app = msg.app_properties()
                app.update(properties_to_modify)
                msg.set_app_properties(app)
                self.store.insert(self._stored(msg))
            self._count_failed_delivery(msg, now)

    def release(self, token: uuid.UUID, now: int) -> None:
        """Give a message back without counting a delivery (AMQP released, or its link went away)."""
        msg = self.locks.get(token)
        if msg is None:
            return
        self._unlock(msg)
        with self.store.transaction():
            self.store.update_lock(self.path, msg.seq, msg.delivery_count, None, None)
        self._make_visible(msg)

    def defer(self, token: uuid.UUID, now: int) -> None:
        msg = self.locked(token, now)
        self._unlock(msg)
        msg.state = DEFERRED
        with self.store.transaction():
            self.store.update_lock(self.path, msg.seq, msg.delivery_count + 1, None, None)
            self.store.update_state(self.path, msg.seq, DEFERRED)
        msg.delivery_count += 1

    def dead_letter(self, token: uuid.UUID, now: int, reason: str | None, description: str | None,
                    properties_to_modify: dict[Any, Any] | None = None) -> None:
        msg = self.locked(token, now)
        self._unlock(msg)
        with self.store.transaction():
            self._dead_letter(msg, now, reason, description, properties_to_modify)

    def renew(self, token: uuid.UUID, now: int) -> int:
        msg = self.locked(token, now)
        msg.locked_until_ms = now + self.cfg.lock_duration_ms
        with self.store.transaction():
            self.store.update_lock(self.path, msg.seq, msg.delivery_count, msg.locked_until_ms,
                                   msg.lock_token.bytes if msg.lock_token else None)
        self.broker.wake_at(msg.locked_until_ms)
        return msg.locked_until_ms

    def _unlock(self, msg: Msg) -> None:
        if msg.lock_token is not None:
            self.locks.pop(msg.lock_token, None)
        msg.lock_token = None
        msg.locked_until_ms = None
        msg.locked_by = None

    def _count_failed_delivery(self, msg: Msg, now: int) -> None:
        """An abandon or a lost lock: one more delivery, and dead-letter past MaxDeliveryCount."""
        self._unlock(msg)
        msg.delivery_count += 1
        with self.store.transaction():
            if msg.delivery_count >= self.cfg.max_delivery_count and not self.is_dlq:
                self._dead_letter(msg, now, "MaxDeliveryCountExceeded",
                                  f"Message could not be consumed after {self.cfg.max_delivery_count} delivery "
                                  "attempts.")
                return
            self.store.update_lock(self.path, msg.seq, msg.delivery_count, None, None)
        self._make_visible(msg)

    def _dead_letter(self, msg: Msg, now: int, reason: str | None, description: str | None,
                     properties_to_modify: dict[Any, Any] | None = None) -> None:
        self._remove(msg)
        if self.is_dlq:
            return
        app = msg.app_properties()
        if properties_to_modify:
            app.update(properties_to_modify)
        if reason is not None:
            app["DeadLetterReason"] = reason
        if description is not None:
            app["DeadLetterErrorDescription"] = description
        dead = msg.copy()
        dead.set_app_properties(app)
        dead.delivery_count = msg.delivery_count
        dead.original_seq = msg.seq
        dead.scheduled_ms = None
        # Messages in a dead-letter queue never expire (Azure ignores TTL there).
        dead.ttl_ms = None
        target = self.cfg.forward_dead_lettered_to
        if target:
            dead.annotations[symbol("x-opt-deadletter-source")] = self.display
            self.broker.forward(dead, target, now, self)
        else:
            assert self.dlq is not None
            self.dlq.accept(dead, now)

    def expire(self, msg: Msg, now: int) -> None:
        with self.store.transaction():
            if self.cfg.dead_lettering_on_expiration and not self.is_dlq:
                self._dead_letter(msg, now, "TTLExpiredException", "The message expired and was dead lettered.")
            else:
                self._remove(msg)

    # -- timers ---------------------------------------------------------------------------
    def tick(self, now: int) -> None:
        while self.scheduled and self.scheduled[0][0] <= now:
            _, seq = heapq.heappop(self.scheduled)
            msg = self.messages.get(seq)
            if msg is None or msg.state != SCHEDULED:
                continue
            msg.state = ACTIVE
            # Azure enqueues a scheduled message when it falls due: that is its enqueued time, and
            # its time to live runs from there.
            activated = max(msg.scheduled_ms or now, msg.enqueued_ms)
            if msg.expires_ms is not None:
                msg.expires_ms += activated - msg.enqueued_ms
                self._track_expiry(msg)
            msg.enqueued_ms = activated
            with self.store.transaction():
                self.store.insert(self._stored(msg))
            self._make_visible(msg)
        if self.scheduled:
            self.broker.wake_at(self.scheduled[0][0])
        if self.requires_session:
            for session in list(self.held.values()):
                if session.holder is not None and session.locked_until_ms <= now:
                    consumer = session.holder
                    self.release_session(consumer, now, count_delivery=True)
                    consumer.session_lost()
        else:
            for msg in [m for m in self.locks.values() if m.locked_until_ms is not None and m.locked_until_ms <= now]:
                self._count_failed_delivery(msg, now)

    def sweep_expired(self, now: int) -> None:
        while self.expiries and self.expiries[0][0] <= now:
            _, seq = heapq.heappop(self.expiries)
            msg = self.messages.get(seq)
            if msg is None or msg.expires_ms is None or msg.expires_ms > now:
                continue
            if msg.state == ACTIVE and msg.lock_token is None:
                self.expire(msg, now)
            elif msg.state == ACTIVE:
                # A locked message does not expire under its receiver; look again after the lock.
                heapq.heappush(self.expiries, ((msg.locked_until_ms or now) + 1, seq))

    # -- consumers and sessions -----------------------------------------------------------
    def attach(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)

    def detach(self, consumer: Consumer, now: int) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)
        if self.requires_session:
            self.release_session(consumer, now, count_delivery=False)
        # Anything else the link held stays locked until its lock expires, as in Azure: a closed
        # or vanished receiver's messages come back after LockDuration, one delivery counted (the
        # SDK releases what it had buffered but not handed out before it detaches).
        self.broker.mark_dirty(self)

    def lock_session(self, consumer: Consumer, session_id: str | None, now: int) -> SessionInfo | None:
        """Lock a named session, or the next session with messages; None if none is free."""
        if session_id is None:
            for sid in list(self.free_ready):
                del self.free_ready[sid]
                candidate = self.sessions.get(sid)
                if candidate is not None and candidate.holder is None and self._has_ready(candidate, now):
                    session_id = sid
                    break
            else:
                return None
        session = self.sessions.setdefault(session_id, SessionInfo())
        if session.holder is not None and session.holder is not consumer:
            raise BrokerError(SESSION_CANNOT_BE_LOCKED,
                              f"The requested session '{session_id}' cannot be accepted. It may be locked by "
                              f"another receiver. Entity:{self.display}", 410)
        session.holder = consumer
        session.locked_until_ms = now + self.cfg.lock_duration_ms
        consumer.session_id = session_id
        self.held[session_id] = session
        self.free_ready.pop(session_id, None)
        self.broker.wake_at(session.locked_until_ms)
        return session

    def _has_ready(self, session: SessionInfo, now: int) -> bool:
        for seq in session.ready:
            msg = self.messages.get(seq)
            if msg is not None and msg.state == ACTIVE and msg.lock_token is None:
                return True
        return False

    def session_of(self, consumer: Consumer) -> SessionInfo:
        session = self.sessions.get(consumer.session_id or "")
        if session is None or session.holder is not consumer:
            raise BrokerError(SESSION_LOCK_LOST,
                              f"The session lock has expired on the MessageSession. Entity:{self.display}", 410)
        return session

    def renew_session(self, consumer: Consumer, now: int) -> int:
        session = self.session_of(consumer)
        session.locked_until_ms = now + self.cfg.lock_duration_ms
        for msg in self.locks.values():
            if msg.locked_by is consumer:
                msg.locked_until_ms = session.locked_until_ms
        self.broker.wake_at(session.locked_until_ms)
        return session.locked_until_ms

    def release_session(self, consumer: Consumer, now: int, count_delivery: bool) -> None:
        sid = consumer.session_id
        session = self.sessions.get(sid or "")
        if session is None or session.holder is not consumer:
            return
        session.holder = None
        self.held.pop(sid or "", None)
        for msg in [m for m in self.locks.values() if m.locked_by is consumer]:
            if count_delivery:
                self._count_failed_delivery(msg, now)
            elif msg.lock_token is not None:
                self.release(msg.lock_token, now)
        if self._has_ready(session, now):
            self.free_ready[sid or ""] = None
        elif session.state is None and not session.ready:
            # Nothing left to remember about it; without this, every session ever seen stays.
            self.sessions.pop(sid or "", None)
        self.broker.mark_dirty(self)

    def _serve_waiting(self) -> None:
        # Pending next-available receivers get a session as soon as one has messages.
        self.waiting = [try_lock for try_lock in self.waiting if not try_lock()]

    def set_session_state(self, consumer: Consumer, state: bytes | None, now: int) -> None:
        session = self.session_of(consumer)
        session.state = state
        session.state_updated_ms = now
        with self.store.transaction():
            self.store.set_session_state(self.path, consumer.session_id or "", state, now)

    def list_sessions(self, updated_after_ms: int | None) -> list[str]:
        """Session ids as get-message-sessions lists them: by default those with messages or a
        state; with ``updated_after_ms``, those whose state was set after that time."""
        if updated_after_ms is not None:
            return sorted(sid for sid, s in self.sessions.items() if s.state_updated_ms > updated_after_ms)
        return sorted(sid for sid, s in self.sessions.items() if s.ready or s.state is not None or s.holder is not None)

    # -- browse, defer, schedule ----------------------------------------------------------
    def peek(self, from_seq: int, count: int, session_id: str | None) -> list[Msg]:
        found: list[Msg] = []
        for seq in sorted(s for s in self.messages if s >= from_seq):
            msg = self.messages[seq]
            if session_id is not None and msg.session_id != session_id:
                continue
            found.append(msg)
            if len(found) >= count:
                break
        return found

    def take_deferred(self, seqs: Iterable[int], consumer: Consumer, peek_lock: bool, now: int,
                      session_id: str | None) -> list[tuple[Msg, int | None]]:
        taken: list[tuple[Msg, int | None]] = []
        for seq in seqs:
            msg = self.messages.get(int(seq))
            if msg is None or msg.state != DEFERRED or (session_id is not None and msg.session_id != session_id):
                raise BrokerError(MESSAGE_NOT_FOUND,
                                  f"Failed to lock one or more specified messages. The message is not found or "
                                  f"deferred. Sequence number: {seq}, Entity:{self.display}", 404)
        for seq in seqs:
            msg = self.messages[int(seq)]
            if peek_lock:
                msg.lock_token = uuid.uuid4()
                msg.locked_until_ms = now + self.cfg.lock_duration_ms
                msg.locked_by = consumer
                self.locks[msg.lock_token] = msg
                with self.store.transaction():
                    self.store.update_lock(self.path, msg.seq, msg.delivery_count, msg.locked_until_ms,
                                           msg.lock_token.bytes)
                self.broker.wake_at(msg.locked_until_ms)
                taken.append((msg, msg.locked_until_ms))
            else:
                with self.store.transaction():
                    self._remove(msg)
                taken.append((msg, None))
        return taken

    def cancel_scheduled(self, seqs: Iterable[int]) -> None:
        with self.store.transaction():
            for seq in seqs:
                msg = self.messages.get(int(seq))
                if msg is not None and msg.state == SCHEDULED:
                    self._remove(msg)


class Topic:
    """Fans messages out to subscriptions whose rules match; keeps scheduled messages itself."""

    def __init__(self, broker: "Broker", cfg: TopicConfig) -> None:
        self.broker = broker
        self.cfg = cfg
        self.path = cfg.name.lower()
        self.display = cfg.name
        self.subscriptions: dict[str, Holder] = {}
        for key, sub_cfg in cfg.subscriptions.items():
            path = f"{self.path}/subscriptions/{key}"
            self.subscriptions[key] = Holder(broker, path, f"{cfg.name}/Subscriptions/{sub_cfg.name}", sub_cfg)
        # Scheduling happens at the topic, so a scheduled message has one sequence number to cancel by.
        self.holding = Holder(broker, self.path, cfg.name,
                              EntityConfig(name=cfg.name, default_ttl_ms=cfg.default_ttl_ms), is_dlq=True)
        self.holding.accept = self._hold  # type: ignore[method-assign]
        self.holding._make_visible = self._release_when_due  # type: ignore[method-assign]

    def publish(self, msg: Msg, now: int) -> None:
        for sub in self.subscriptions.values():
            copy = None
            for rule in sub.cfg.rules:
                view = message_view(msg)
                try:
                    matched = rule.matches(view)
                except Exception:  # a filter that cannot evaluate does not match, as in Azure
                    matched = False
                if not matched:
                    continue
                copy = msg.copy()
                if rule.action is not None:
                    before = MessageView(system=dict(view.system), user=dict(view.user))
                    rule.action(view)
                    apply_view(copy, before, view)
                break
            if copy is not None:
                sub.accept(copy, now)

    def _hold(self, msg: Msg, now: int) -> None:
        Holder.accept(self.holding, msg, now)

    def _release_when_due(self, msg: Msg) -> None:
        if msg.state == SCHEDULED:
            heapq.heappush(self.holding.scheduled, (msg.scheduled_ms or 0, msg.seq))
            self.broker.wake_at(msg.scheduled_ms or 0)
            return
        # Due: leave the topic and fan out.
        with self.broker.store.transaction():
            self.holding._remove(msg)
            # The copies keep ScheduledEnqueueTimeUtc, as in Azure; being due, they are active at once.
            self.publish(msg.copy(), now_ms())


class Broker:
    """The namespace: entities by path, forwarding, duplicate detection and the timer wheel."""

    def __init__(self, config: NamespaceConfig, store: Store | None = None) -> None:
        from .config import MAX_TTL_MS

        self.config = config
        self.store: Store = store or MemoryStore()
        self.max_ttl_ms = MAX_TTL_MS
        self.max_message_bytes = config.max_message_bytes
        self.queues = {key: Holder(self, key, cfg.name, cfg) for key, cfg in config.queues.items()}
        self.topics = {key: Topic(self, cfg) for key, cfg in config.topics.items()}
        self._dirty: set[Holder] = set()
        self._wake: list[int] = []
        self._dups: dict[str, dict[str, int]] = {}
        # When sweep() next has something to do (a time to live or a duplicate-detection window
        # running out); None when nothing can expire, so an idle emulator never wakes for it.
        self._sweep_due: int | None = None
        self._last_sweep = 0
        self._restore()
        if any(self._dups.values()):
            self._sweep_due = now_ms()

    # -- lookup ---------------------------------------------------------------------------
    def holders(self) -> Iterable[Holder]:
        for q in self.queues.values():
            yield q
            assert q.dlq is not None
            yield q.dlq
        for t in self.topics.values():
            yield t.holding
            for s in t.subscriptions.values():
                yield s
                assert s.dlq is not None
                yield s.dlq

    def resolve_target(self, address: str) -> Holder | Topic:
        """The entity a sender may send to: a queue or a topic."""
        path = normalize(address)
        if path in self.queues:
            return self.queues[path]
        if path in self.topics:
            return self.topics[path]
        raise BrokerError(NOT_FOUND, _not_found(address, self.config.name), 404)

    def resolve_source(self, address: str) -> Holder:
        """The holder a receiver may receive from: a queue, a subscription or a dead-letter queue."""
        path = normalize(address)
        dlq = path.endswith(DLQ_SUFFIX)
        base = path[: -len(DLQ_SUFFIX)] if dlq else path
        holder: Holder | None = None
        if base in self.queues:
            holder = self.queues[base]
        elif "/subscriptions/" in base:
            topic, _, sub = base.partition("/subscriptions/")
            if topic in self.topics:
                holder = self.topics[topic].subscriptions.get(sub)
        if holder is None:
            raise BrokerError(NOT_FOUND, _not_found(address, self.config.name), 404)
        if dlq:
            assert holder.dlq is not None
            return holder.dlq
        return holder

    # -- sending --------------------------------------------------------------------------
    def send(self, entity: Holder | Topic, envelope: codec.Envelope, now: int,
             scheduled_ms: int | None = None) -> int | None:
        """Accept one message for ``entity``; returns the sequence number of a scheduled message."""
        if envelope.size > self.max_message_bytes:
            raise BrokerError(SIZE_EXCEEDED,
                              f"The received message (size {envelope.size} bytes) exceeds the limit "
                              f"({self.max_message_bytes} bytes) currently allowed on the link.")
        requires_session = isinstance(entity, Holder) and entity.requires_session
        if requires_session and envelope.session_id is None:
            raise BrokerError(NOT_ALLOWED,
                              "The SessionId was not set on a message, and it cannot be sent to the entity. "
                              "Entities that have session support enabled can only receive messages that have "
                              f"the SessionId set to a valid value. Entity:{entity.display}")
        annotations = dict(envelope.annotations)
        sched = annotations.pop(symbol("x-opt-scheduled-enqueue-time"), None)
        if scheduled_ms is None and sched is not None:
            scheduled_ms = int(sched)
        message_id = envelope.message_id
        if self._is_duplicate(entity, message_id, now):
            return None
        app_raw = envelope.app_raw
        decimals = codec.with_service_bus_decimals(envelope.app_properties)
        if decimals is not None:
            app_raw = codec.app_properties_section(decimals)
        msg = Msg(0, envelope.props_raw, app_raw, envelope.body_raw, annotations,
                  None if message_id is None else str(message_id), envelope.session_id, now, envelope.ttl_ms, None,
                  scheduled_ms=scheduled_ms, priority=envelope.priority,
                  delivery_annotations=envelope.delivery_annotations)
        if isinstance(entity, Topic):
            if scheduled_ms is not None and scheduled_ms > now:
                entity.holding.accept(msg, now)
                return msg.seq
            entity.publish(msg, now)
            return None
        entity.accept(msg, now)
        return msg.seq

    def _is_duplicate(self, entity: Holder | Topic, message_id: Any, now: int) -> bool:
        cfg = entity.cfg
        if message_id is None or not cfg.requires_duplicate_detection:
            return False
        seen = self._dups.setdefault(entity.path, {})
        key = str(message_id)
        first = seen.get(key)
        if first is not None and now - first < cfg.duplicate_window_ms:
            return True
        seen[key] = now
        self.store.record_duplicate(entity.path, key, now)
        self.sweep_at(now + cfg.duplicate_window_ms)
        return False

    def forward(self, msg: Msg, target: str, now: int, source: Holder) -> None:
        entity = self.resolve_target(target)
        if isinstance(entity, Topic):
            entity.publish(msg, now)
        else:
            entity.accept(msg, now)

    # -- scheduling of work ---------------------------------------------------------------
    def mark_dirty(self, holder: Holder) -> None:
        self._dirty.add(holder)

    def wake_at(self, ms: int) -> None:
        heapq.heappush(self._wake, ms)

    def sweep_at(self, ms: int) -> None:
        if self._sweep_due is None or ms < self._sweep_due:
            self._sweep_due = ms

    def next_wake(self) -> int | None:
        """When timed work is next due (epoch ms): a timer, or a sweep at most once a second."""
        due = self._wake[0] if self._wake else None
        if self._sweep_due is not None:
            sweep = max(self._sweep_due, self._last_sweep + SWEEP_INTERVAL_MS)
            due = sweep if due is None else min(due, sweep)
        return due

    def run_due(self, now: int) -> None:
        """Fire timers that are due, sweep if a sweep is due, and deliver whatever became ready."""
        if self._wake and self._wake[0] <= now:
            while self._wake and self._wake[0] <= now:
                heapq.heappop(self._wake)
            for holder in list(self.holders()):
                holder.tick(now)
        if self._sweep_due is not None and now >= max(self._sweep_due, self._last_sweep + SWEEP_INTERVAL_MS):
            self.sweep(now)
        self.pump(now)

    def pump(self, now: int) -> None:
        while self._dirty:
            holder = self._dirty.pop()
            holder.pump(now)

    def sweep(self, now: int) -> None:
        """Expire messages whose time to live has passed and trim duplicate-detection history."""
        self._last_sweep = now
        due: int | None = None
        for holder in list(self.holders()):
            holder.sweep_expired(now)
            if holder.expiries:
                due = holder.expiries[0][0] if due is None else min(due, holder.expiries[0][0])
        for path, seen in self._dups.items():
            entity = self.queues.get(path) or self.topics.get(path)
            if entity is None:
                continue
            window = entity.cfg.duplicate_window_ms
            stale = [k for k, t in seen.items() if now - t >= window]
            for k in stale:
                del seen[k]
            if stale:
                with self.store.transaction():
                    self.store.forget_duplicates(path, now - window)
            if seen:
                oldest = min(seen.values()) + window
                due = oldest if due is None else min(due, oldest)
        self._sweep_due = due

    def _restore(self) -> None:
        now = now_ms()
        by_path = {h.path: h for h in self.holders()}
        sequences = self.store.load_sequences()
        for holder in by_path.values():
            holder.last_seq = sequences.get(holder.path, 0)
        with self.store.transaction():
            for stored in self.store.load_messages():
                holder = by_path.get(stored.entity)
                if holder is not None:
                    holder.restore(stored, now)
        for path, sid, state, updated_ms in self.store.load_session_states():
            holder = by_path.get(path)
            if holder is not None:
                session = holder.sessions.setdefault(sid, SessionInfo())
                session.state, session.state_updated_ms = state, updated_ms
        for path, mid, seen in self.store.load_duplicates():
            self._dups.setdefault(path, {})[mid] = seen

    # -- entities at run time: the interface the administration API uses --------------------
    def add_queue(self, cfg: EntityConfig) -> Holder:
        key = cfg.name.lower()
        holder = Holder(self, key, cfg.name, cfg)
        self.queues[key] = holder
        self.config.queues[key] = cfg
        return holder

    def add_topic(self, cfg: TopicConfig) -> Topic:
        key = cfg.name.lower()
        topic = Topic(self, cfg)
        self.topics[key] = topic
        self.config.topics[key] = cfg
        return topic

    def add_subscription(self, topic: Topic, cfg: EntityConfig) -> Holder:
        key = cfg.name.lower()
        holder = Holder(self, f"{topic.path}/subscriptions/{key}", f"{topic.cfg.name}/Subscriptions/{cfg.name}", cfg)
        topic.subscriptions[key] = holder
        topic.cfg.subscriptions[key] = cfg
        return holder

    def reconfigure(self, entity: Holder | Topic, cfg: EntityConfig | TopicConfig) -> None:
        """New settings for a live entity; its messages, locks and links stay."""
        if isinstance(entity, Topic):
            assert isinstance(cfg, TopicConfig)
            cfg.subscriptions = entity.cfg.subscriptions
            entity.cfg = cfg
            entity.holding.cfg = EntityConfig(name=cfg.name, default_ttl_ms=cfg.default_ttl_ms)
            self.config.topics[entity.path] = cfg
            return
        assert isinstance(cfg, EntityConfig)
        entity.cfg = cfg
        if entity.dlq is not None:
            entity.dlq.cfg = cfg
        if "/subscriptions/" in entity.path:
            topic, _, key = entity.path.partition("/subscriptions/")
            self.config.topics[topic].subscriptions[key] = cfg
        else:
            self.config.queues[entity.path] = cfg
        self.mark_dirty(entity)

    def remove(self, entity: Holder | Topic) -> None:
        """Delete a queue, topic or subscription with everything it holds, in memory and on disk."""
        if isinstance(entity, Topic):
            holders = [entity.holding] + [h for sub in entity.subscriptions.values() for h in (sub, sub.dlq) if h]
            self.topics.pop(entity.path, None)
            self.config.topics.pop(entity.path, None)
        else:
            holders = [h for h in (entity, entity.dlq) if h is not None]
            if "/subscriptions/" in entity.path:
                topic_key, _, key = entity.path.partition("/subscriptions/")
                topic = self.topics.get(topic_key)
                if topic is not None:
                    topic.subscriptions.pop(key, None)
                    topic.cfg.subscriptions.pop(key, None)
            else:
                self.queues.pop(entity.path, None)
                self.config.queues.pop(entity.path, None)
        for holder in holders:
            holder.messages.clear()
            holder.locks.clear()
            holder.sessions.clear()
            self._dirty.discard(holder)
            self._dups.pop(holder.path, None)
        with self.store.transaction():
            self.store.purge_entities([h.path for h in holders])


def normalize(address: str) -> str:
    """Entity path from a link address (``amqps://host:port/Queue`` → ``queue``); names are case-insensitive."""
    path = address
    if "://" in path:
        path = path.split("://", 1)[1]
        path = path.split("/", 1)[1] if "/" in path else ""
    return path.strip("/").lower()


def _not_found(address: str, namespace: str) -> str:
    entity = normalize(address)
    return (f"The messaging entity 'sb://{namespace}.servicebus.windows.net/{entity}' could not be found. "
            "To know more visit https://aka.ms/sbResourceMgrExceptions.")
