"""The AMQP 1.0 side of the emulator: proton's engine speaking the Service Bus dialect.

One :class:`AmqpServer` handles the proton events of every connection, on the thread of the
:class:`~.loop.IoLoop` that drives proton's engine.  It maps AMQP onto the
:class:`~.broker.Broker`:

* attach to ``$cbs`` → claims-based security: every ``put-token`` is accepted (status 202);
* attach a sending link to a queue or topic → messages (and 0x80013700 batches) are stored,
  then the transfer is settled ``accepted``; refusals come back ``rejected`` with the
  condition Service Bus uses;
* attach a receiving link to a queue, subscription or ``/$DeadLetterQueue`` → messages flow
  as credit allows; in peek-lock the delivery tag is the lock token, and every settlement is
  echoed back settled with the outcome applied, as the SDKs require;
* a ``com.microsoft:session-filter`` on the source locks a named session or the next available
  one; the attach is answered only when a session is locked (or on timeout);
* ``ENTITY/$management`` request/response links → the ``com.microsoft:*`` operations.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from cproton_ffi import ffi as _ffi
from cproton_ffi import lib as _lib
from proton import (
    Array,
    Condition,
    Data,
    Delivery,
    Described,
    Endpoint,
    Link,
    Message,
    Terminus,
    symbol,
    timestamp,
)

from . import codec
from .broker import ARGUMENT_ERROR, NOT_ALLOWED, TIMEOUT, Broker, BrokerError, Holder, Msg, Topic, now_ms

log = logging.getLogger("emulators.servicebus")

SESSION_FILTER = symbol("com.microsoft:session-filter")
LOCKED_UNTIL_UTC = symbol("com.microsoft:locked-until-utc")
LINK_TIMEOUT = symbol("com.microsoft:timeout")
DATETIMEOFFSET_EPOCH = 621355968000000000  # .NET ticks at the Unix epoch
INCOMING_CREDIT = 1000
# Timed broker work (lock and session-lock expiry, scheduled messages, sweeps) runs this long after
# it falls due, as it did on the 20 ms tick this emulator had before it slept while idle.  A lock
# that lapses at the very moment its receiver's own wait ends (a 5 s session lock read for 5 s, in
# Microsoft's receive-and-delete session test) is not taken from under it by a few milliseconds;
# Service Bus's own expiry is no more punctual than that.
TIMER_LATENESS_MS = 20
DEFAULT_SESSION_WAIT_MS = 65_000
DATETIME_MAX_MS = 253402300800000  # .NET DateTime.MaxValue as the SDKs encode it


def _ticks(ms: int) -> int:
    return DATETIMEOFFSET_EPOCH + ms * 10_000


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8")
    return str(value)


class OutLink:
    """A link the broker sends on: a receiver client's link to a holder."""

    def __init__(self, server: "AmqpServer", link: Link, holder: Holder) -> None:
        self.server = server
        self.link = link
        self.holder = holder
        self.peek_lock = link.remote_snd_settle_mode != Link.SND_SETTLED
        self.session_id: str | None = None
        self.unsettled: dict[bytes, uuid.UUID] = {}
        self.closed = False

    def credit(self) -> int:
        return 0 if self.closed else self.link.credit

    def deliver(self, msg: Msg, holder: Holder, locked_until_ms: int | None) -> None:
        if msg.lock_token is not None and self.peek_lock:
            tag = msg.lock_token.bytes_le
            self.unsettled[tag] = msg.lock_token
        else:
            # As Service Bus: a message received and deleted has no lock, so its tag (which the
            # SDKs read as the lock token) is empty.
            tag = b""
        delivery = self.link.delivery(tag)
        self.link.stream(msg.encode(locked_until_ms))
        self.link.advance()
        if not self.peek_lock:
            delivery.settle()

    def session_lost(self) -> None:
        if not self.closed:
            self.closed = True
            self.server.close_link(self.link, "com.microsoft:session-lock-lost",
                                   "The session lock has expired on the MessageSession. Accept a new "
                                   f"MessageSession. Entity:{self.holder.display}")


class AmqpServer:
    """The ``on_*`` methods are called by the loop for proton's events of the same name."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        # The IoLoop's call_later, given by whoever builds both (__main__).
        self.call_later: Callable[[float, Callable[[], None]], None] | None = None

    # -- what the loop asks of its handler ------------------------------------------------
    @staticmethod
    def configure_transport(transport: Any) -> None:
        sasl = transport.sasl()
        sasl.allow_insecure_mechs = True
        sasl.allowed_mechs("ANONYMOUS PLAIN EXTERNAL")

    def after_events(self) -> None:
        # Flow and dispositions only mark holders dirty; one pump per round of events hands out
        # what they made deliverable, in as few transfers' worth of Python as possible.
        try:
            self.broker.pump(now_ms())
        except Exception:  # one holder's failure must not stop the emulator
            log.exception("delivering failed")

    def next_due(self) -> int | None:
        due = self.broker.next_wake()
        return None if due is None else due + TIMER_LATENESS_MS

    def run_due(self, now: int) -> None:
        try:
            self.broker.run_due(now)
        except Exception:  # never let one bad timer stop the emulator
            log.exception("timer work failed")

    def on_connection_remote_open(self, event: Any) -> None:
        conn = event.connection
        conn.container = "servicebus-emulator"
        conn.out_links = []
        conn.open()

    def on_session_remote_open(self, event: Any) -> None:
        event.session.open()

    def on_connection_remote_close(self, event: Any) -> None:
        self._forget_connection(event.connection)
        event.connection.close()

    def on_transport_error(self, event: Any) -> None:
        # A peer that breaks the protocol loses its own connection only; say why, for diagnosis.
        condition = event.transport.condition
        log.warning("connection closed on a transport error: %s: %s",
                    condition.name if condition else "unknown", condition.description if condition else "")

    def on_transport_closed(self, event: Any) -> None:
        conn = event.connection
        if conn is not None:
            self._forget_connection(conn)
            conn.free()

    def on_session_remote_close(self, event: Any) -> None:
        event.session.close()

    def on_link_remote_close(self, event: Any) -> None:
        link = event.link
        self._forget_link(link)
        if link.state & Endpoint.LOCAL_ACTIVE:
            link.close()

    def _forget_connection(self, conn: Any) -> None:
        for out in list(getattr(conn, "out_links", []) or []):
            self._detach_consumer(out)
        conn.out_links = []
        # A receiver still waiting for a session must not be handed one after its client is gone.
        for waiter in getattr(conn, "waiters", None) or []:
            waiter["done"] = True
        conn.waiters = []

    def _forget_link(self, link: Link) -> None:
        out = getattr(link, "out", None)
        if out is not None:
            self._detach_consumer(out)
        waiter = getattr(link, "waiter", None)
        if waiter is not None:
            waiter["done"] = True

    def _detach_consumer(self, out: OutLink) -> None:
        if out.closed and out not in out.holder.consumers and out.session_id is None:
            return
        out.closed = True
        try:
            out.holder.detach(out, now_ms())
        except Exception:
            log.exception("detach failed")
        self.broker.pump(now_ms())

    def close_link(self, link: Link, condition: Any, description: str) -> None:
        if link.state & Endpoint.LOCAL_UNINIT:
            link.open()
        link.condition = _condition(str(condition), description)
        link.close()

    # -- attach ---------------------------------------------------------------------------
    def on_link_remote_open(self, event: Any) -> None:
        link = event.link
        try:
            if link.is_receiver:
                self._attach_incoming(link)
            else:
                self._attach_outgoing(link)
        except BrokerError as exc:
            # As Service Bus does: answer the attach with a null terminus, then detach with the error.
            self._null_termini(link)
            self.close_link(link, exc.condition, exc.description)
        except Exception as exc:
            log.exception("attach failed")
            self._null_termini(link)
            self.close_link(link, "amqp:internal-error", str(exc))

    @staticmethod
    def _null_termini(link: Link) -> None:
        link.source.type = Terminus.UNSPECIFIED
        link.target.type = Terminus.UNSPECIFIED

    @staticmethod
    def _mirror_termini(link: Link) -> None:
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)

    def _attach_incoming(self, link: Link) -> None:
        address = link.remote_target.address or ""
        if address == "$cbs" or address.endswith("$management"):
            link.kind = "request"
        else:
            link.entity = self.broker.resolve_target(address)
            link.kind = "send"
        self._mirror_termini(link)
        if link.kind == "send":
            link.max_message_size = self.broker.max_message_bytes
        link.open()
        link.flow(INCOMING_CREDIT)

    def _attach_outgoing(self, link: Link) -> None:
        address = link.remote_source.address or ""
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        if address == "$cbs" or address.endswith("$management"):
            self._mirror_termini(link)
            link.kind = "reply"
            link.reply_address = address
            link.open()
            return
        holder = self.broker.resolve_source(address)
        filters = _filter_map(link.remote_source.filter)
        wants_session = SESSION_FILTER in filters
        if holder.requires_session and not wants_session:
            raise BrokerError(NOT_ALLOWED,
                              "It is not possible for an entity that requires sessions to create a non-sessionful "
                              f"message receiver. Entity:{holder.display}")
        if wants_session and not holder.requires_session:
            raise BrokerError(NOT_ALLOWED,
                              "It is not possible for an entity that does not require sessions to create a "
                              f"sessionful message receiver. Entity:{holder.display}")
        self._mirror_termini(link)
        out = OutLink(self, link, holder)
        link.kind = "receive"
        conn = link.connection
        if not hasattr(conn, "out_links") or conn.out_links is None:
            conn.out_links = []
        if not wants_session:
            link.out = out
            conn.out_links.append(out)
            holder.attach(out)
            link.open()
            self.broker.mark_dirty(holder)
            self.broker.pump(now_ms())
            return
        requested_value = filters.get(SESSION_FILTER)
        if requested_value is not None and not isinstance(requested_value, str):
            # Service Bus session ids are strings; a filter of any other type names no session.
            raise BrokerError(ARGUMENT_ERROR, f"The session filter must be a string, not {requested_value!r}. "
                                              f"Entity:{holder.display}")
        requested = _text(requested_value)
        session = holder.lock_session(out, requested, now_ms())
        if session is not None:
            self._open_session_link(link, out, holder, session.locked_until_ms)
            return
        # Next-available with nothing to hand out: answer the attach once a session has messages.
        timeout_ms = _link_timeout(link) or DEFAULT_SESSION_WAIT_MS
        waiter: dict[str, Any] = {"done": False}
        link.waiter = waiter
        if getattr(conn, "waiters", None) is None:
            conn.waiters = []
        conn.waiters.append(waiter)

        def try_lock() -> bool:
            if waiter["done"]:
                return True
            got = holder.lock_session(out, None, now_ms())
            if got is None:
                return False
            waiter["done"] = True
            self._open_session_link(link, out, holder, got.locked_until_ms)
            return True

        holder.waiting.append(try_lock)

        def give_up() -> None:
            if waiter["done"]:
                return
            waiter["done"] = True
            # A refusal: the attach goes back with a null source, so the SDK raises instead of
            # opening a receiver on no session.
            self._null_termini(link)
            self.close_link(link, TIMEOUT, "The operation did not complete within the allotted timeout of "
                                           f"{timeout_ms / 1000:.3f} seconds. No session is available to accept.")

        assert self.call_later is not None
        self.call_later(timeout_ms / 1000, give_up)

    def _open_session_link(self, link: Link, out: OutLink, holder: Holder, locked_until_ms: int) -> None:
        # One line per session accept at --log-level info: what the drone-delivery benchmark counts.
        log.info("session %s of %s locked by a receiver", out.session_id, holder.display)
        link.out = out
        link.connection.out_links.append(out)
        holder.attach(out)
        link.source.filter.clear()
        link.source.filter.put_object({SESSION_FILTER: out.session_id})
        link.properties = {LOCKED_UNTIL_UTC: _ticks(locked_until_ms)}
        link.open()
        self.broker.mark_dirty(holder)
        self.broker.pump(now_ms())

    # -- flow and transfers ---------------------------------------------------------------
    def on_link_flow(self, event: Any) -> None:
        link = event.link
        out = getattr(link, "out", None)
        if out is not None:
            self.broker.mark_dirty(out.holder)
            if link.drain_mode:
                # Drain: deliver what there is before the rest of the credit is spent.
                self.broker.pump(now_ms())
                link.drained()

    def on_delivery(self, event: Any) -> None:
        delivery = event.delivery
        link = delivery.link
        try:
            if link.is_receiver:
                self._incoming_transfer(link, delivery)
            else:
                self._outgoing_disposition(link, delivery)
        except Exception:
            log.exception("delivery handling failed")

    def _incoming_transfer(self, link: Link, delivery: Delivery) -> None:
        if delivery.aborted:
            delivery.settle()
            return
        if not delivery.readable or delivery.partial:
            return
        data = link.recv(delivery.pending)
        link.advance()
        if link.credit < INCOMING_CREDIT // 2:
            link.flow(INCOMING_CREDIT - link.credit)
        kind = getattr(link, "kind", None)
        if kind == "request":
            delivery.update(Delivery.ACCEPTED)
            delivery.settle()
            self._handle_request(link, data)
            return
        try:
            self._store_transfer(link.entity, data)
        except BrokerError as exc:
            delivery.local.condition = _condition(exc.condition, exc.description)
            delivery.update(Delivery.REJECTED)
            delivery.settle()
            return
        except codec.DecodeError as exc:
            delivery.local.condition = _condition("amqp:decode-error", str(exc))
            delivery.update(Delivery.REJECTED)
            delivery.settle()
            return
        except Exception as exc:
            # Whatever went wrong, the sender gets an answer: an unsettled transfer hangs its send.
            log.exception("storing a transfer failed")
            delivery.local.condition = _condition("amqp:internal-error", f"{type(exc).__name__}: {exc}")
            delivery.update(Delivery.REJECTED)
            delivery.settle()
            return
        delivery.update(Delivery.ACCEPTED)
        delivery.settle()

    def _store_transfer(self, entity: Holder | Topic, data: bytes) -> None:
        envelope = codec.parse_message(data)
        inner = codec.unpack_batch(envelope)
        envelopes = [envelope] if inner is None else [codec.parse_message(raw) for raw in inner]
        now = now_ms()
        # All of a batch or none of it: validate first, then store in one transaction.
        for env in envelopes:
            self._check_sendable(entity, env)
        with self.broker.store.transaction():
            for env in envelopes:
                self.broker.send(entity, env, now)

    def _check_sendable(self, entity: Holder | Topic, env: codec.Envelope) -> None:
        if env.size > self.broker.max_message_bytes:
            raise BrokerError("amqp:link:message-size-exceeded",
                              f"The received message (size {env.size} bytes) exceeds the limit "
                              f"({self.broker.max_message_bytes} bytes) currently allowed on the link.")
        if isinstance(entity, Holder) and entity.requires_session and env.session_id is None:
            self.broker.send(entity, env, 0)  # refuses it with the Service Bus error, storing nothing

    def _outgoing_disposition(self, link: Link, delivery: Delivery) -> None:
        out: OutLink | None = getattr(link, "out", None)
        if out is None or not delivery.updated:
            if delivery.remote_state and not delivery.settled:
                delivery.settle()
            return
        tag = _raw_tag(delivery)
        token = out.unsettled.pop(tag, None)
        state = delivery.remote_state
        if token is None:
            delivery.settle()
            return
        now = now_ms()
        holder = out.holder
        remote = delivery.remote
        try:
            if state == Delivery.ACCEPTED:
                holder.complete(token, now)
            elif state == Delivery.RELEASED:
                holder.release(token, now)
            elif state == Delivery.MODIFIED:
                annotations = _plain_map(remote.annotations) if remote.annotations else None
                if remote.undeliverable:
                    holder.defer(token, now)
                elif remote.failed:
                    holder.abandon(token, now, annotations)
                else:
                    holder.release(token, now)
            elif state == Delivery.REJECTED:
                reason, description = _dead_letter_details(remote.condition)
                holder.dead_letter(token, now, reason, description)
            else:
                holder.release(token, now)
        except BrokerError as exc:
            delivery.local.condition = _condition(exc.condition, exc.description)
            delivery.update(Delivery.REJECTED)
            delivery.settle()
            return
        if state == Delivery.MODIFIED:
            delivery.local.failed = remote.failed
            delivery.local.undeliverable = remote.undeliverable
        if state in (Delivery.ACCEPTED, Delivery.MODIFIED, Delivery.REJECTED, Delivery.RELEASED):
            delivery.update(state)
        delivery.settle()

    # -- management and CBS ---------------------------------------------------------------
    def _handle_request(self, link: Link, data: bytes) -> None:
        request = Message()
        request.decode(data)
        address = link.remote_target.address or ""
        props = request.properties or {}
        operation = _text(props.get("operation"))
        reply_to = request.reply_to or address
        if address == "$cbs":
            status, description, body, condition = 202, "Accepted", None, None
        else:
            entity_address = address[: -len("/$management")] if address.endswith("/$management") else address
            try:
                status, body = self._management(link, entity_address, operation or "", request.body or {}, props)
                description, condition = "OK" if status == 200 else "No Content", None
            except BrokerError as exc:
                status, description, body, condition = exc.status, exc.description, None, exc.condition
            except Exception as exc:
                log.exception("management operation %s failed", operation)
                status, description, body, condition = 500, f"{type(exc).__name__}: {exc}", None, \
                    "com.microsoft:internal-error"
        self._reply(link, reply_to, request, status, description, body, condition, cbs=address == "$cbs")

    def _reply(self, link: Link, reply_to: str, request: Message, status: int, description: str, body: Any,
               condition: str | None, cbs: bool) -> None:
        reply_link = None
        for candidate in _links(link.session):
            if getattr(candidate, "kind", None) == "reply" and candidate.reply_address in (
                    reply_to, link.remote_target.address):
                reply_link = candidate
                if candidate.reply_address == reply_to:
                    break
        if reply_link is None:
            for candidate in _links(link.connection):
                if getattr(candidate, "kind", None) == "reply" and candidate.reply_address == reply_to:
                    reply_link = candidate
                    break
        if reply_link is None:
            log.warning("no reply link for %s", reply_to)
            return
        properties: dict[Any, Any] = (
            {"status-code": status, "status-description": description} if cbs
            else {"statusCode": status, "statusDescription": description}
        )
        if condition:
            properties["errorCondition"] = symbol(condition)
        response = Message(body=body, properties=properties)
        response.correlation_id = request.id
        response.to = reply_to
        delivery = reply_link.delivery(uuid.uuid4().bytes)
        reply_link.stream(response.encode())
        reply_link.advance()
        delivery.settle()

    def _management(self, link: Link, address: str, operation: str, body: dict[Any, Any],
                    props: dict[Any, Any]) -> tuple[int, Any]:
        now = now_ms()
        op = operation.removeprefix("com.microsoft:")
        body = {str(k): v for k, v in (body or {}).items()}
        if op in ("schedule-message", "cancel-scheduled-message"):
            entity = self.broker.resolve_target(address)
            if op == "cancel-scheduled-message":
                seqs = [int(s) for s in _elements(body.get("sequence-numbers"))]
                holder = entity.holding if isinstance(entity, Topic) else entity
                with self.broker.store.transaction():
                    holder.cancel_scheduled(seqs)
                return 200, {}
            numbers: list[int] = []
            with self.broker.store.transaction():
                for item in body.get("messages") or []:
                    item = {str(k): v for k, v in item.items()}
                    envelope = codec.parse_message(bytes(item["message"]))
                    self._check_sendable(entity, envelope)
                    sched = envelope.annotations.get(symbol("x-opt-scheduled-enqueue-time"))
                    seq = self.broker.send(entity, envelope, now, scheduled_ms=int(sched) if sched else now)
                    numbers.append(seq if seq is not None else 0)
            return 200, {"sequence-numbers": Array(Data.NULL, Data.LONG, *numbers)}
        holder = self.broker.resolve_source(address)
        associated = _text(props.get("associated-link-name"))
        consumer = self._consumer(link, associated, holder)
        session_id = _text(body.get("session-id"))
        if op == "renew-lock":
            tokens = [_uuid(t) for t in _elements(body.get("lock-tokens"))]
            expirations = [timestamp(holder.renew(t, now)) for t in tokens]
            return 200, {"expirations": Array(Data.NULL, Data.TIMESTAMP, *expirations)}
        if op == "update-disposition":
            status = _text(body.get("disposition-status"))
            tokens = [_uuid(t) for t in _elements(body.get("lock-tokens"))]
            modify = body.get("properties-to-modify")
            modify = _plain_map(modify) if modify else None
            for token in tokens:
                if status == "completed":
                    holder.complete(token, now)
                elif status == "abandoned":
                    holder.abandon(token, now, modify)
                elif status == "defered":
                    holder.defer(token, now)
                elif status == "suspended":
                    holder.dead_letter(token, now, _text(body.get("deadletter-reason")),
                                       _text(body.get("deadletter-description")), modify)
                else:
                    raise BrokerError(ARGUMENT_ERROR, f"Unknown disposition status {status!r}.")
            return 200, {}
        if op == "peek-message":
            start = int(body.get("from-sequence-number") or 1)
            count = int(body.get("message-count") or 1)
            found = holder.peek(start, count, session_id)
            if not found:
                return 204, {}
            return 200, {"messages": [{"message": m.encode(None)} for m in found]}
        if op == "receive-by-sequence-number":
            seqs = [int(s) for s in _elements(body.get("sequence-numbers"))]
            peek_lock = int(body.get("receiver-settle-mode") or 0) == 1
            taken = holder.take_deferred(seqs, consumer, peek_lock, now, session_id)
            messages = []
            for msg, locked_until in taken:
                entry: dict[str, Any] = {"message": msg.encode(locked_until)}
                if msg.lock_token is not None:
                    entry["lock-token"] = msg.lock_token
                messages.append(entry)
            return 200, {"messages": messages}
        if op in ("get-session-state", "set-session-state", "renew-session-lock"):
            owner = self._session_owner(link, holder, session_id)
            if op == "get-session-state":
                session = holder.session_of(owner)
                return 200, {"session-state": session.state}
            if op == "set-session-state":
                state = body.get("session-state")
                holder.set_session_state(owner, None if state is None else bytes(state), now)
                return 200, {}
            expiration = holder.renew_session(owner, now)
            return 200, {"expiration": timestamp(expiration)}
        if op == "get-message-sessions":
            since = body.get("last-updated-time")
            # The SDKs ask for the default listing with .NET's DateTime.MaxValue as the time.
            ids = holder.list_sessions(None if since is None or int(since) >= DATETIME_MAX_MS else int(since))
            skip = int(body.get("skip") or 0)
            top = int(body.get("top") or len(ids) or 1)
            page = ids[skip:skip + top]
            if not page:
                return 204, {}
            return 200, {"skip": skip + len(page), "sessions-ids": page}
        raise BrokerError("amqp:not-implemented", f"The operation {operation!r} is not supported by the emulator.",
                          501)

    def _consumer(self, link: Link, name: str | None, holder: Holder) -> Any:
        for out in getattr(link.connection, "out_links", []) or []:
            if out.holder is holder and (name is None or out.link.name == name):
                return out
        return None

    def _session_owner(self, link: Link, holder: Holder, session_id: str | None) -> Any:
        session = holder.sessions.get(session_id or "")
        owner = session.holder if session else None
        if owner is None or owner.link.connection != link.connection:
            raise BrokerError("com.microsoft:session-lock-lost",
                              f"The session lock has expired on the MessageSession. Entity:{holder.display}", 410)
        return owner


def _condition(name: str, description: str) -> Condition:
    # Service Bus always sends an info map (with a tracking id); the Python SDK indexes into the
    # error's fields and stalls on a rejection whose info is absent.
    return Condition(name, description, {symbol("com.microsoft:tracking-id"): str(uuid.uuid4())})


def _raw_tag(delivery: Delivery) -> bytes:
    # proton's Delivery.tag decodes the tag as UTF-8; our tags are lock tokens, i.e. binary.
    raw = _lib.pn_delivery_tag(delivery._impl)
    return bytes(_ffi.unpack(raw.start, raw.size))


def _links(endpoint: Any) -> list[Link]:
    conn = endpoint.connection if hasattr(endpoint, "connection") else endpoint
    found = []
    link = conn.link_head(0)
    while link:
        if endpoint is conn or link.session == endpoint:
            found.append(link)
        link = link.next(0)
    return found


def _filter_map(data: Data) -> dict[Any, Any]:
    data.rewind()
    if not data.next():
        return {}
    value = data.get_object()
    if not isinstance(value, dict):
        return {}
    plain = {}
    for key, item in value.items():
        plain[symbol(str(key))] = item.value if isinstance(item, Described) else item
    return plain


def _link_timeout(link: Link) -> int | None:
    props = link.remote_properties or {}
    value = props.get(LINK_TIMEOUT)
    return int(value) if value is not None else None


def _elements(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, Array):
        return list(value.elements)
    return list(value)


def _uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, (bytes, bytearray)) and len(value) == 16:
        return uuid.UUID(bytes=bytes(value))
    return uuid.UUID(str(value))


def _plain_map(value: Any) -> dict[Any, Any]:
    return {str(k): v for k, v in dict(value).items()}


def _dead_letter_details(condition: Condition | None) -> tuple[str | None, str | None]:
    if condition is None:
        return None, None
    info = condition.info or {}
    info = {str(k): v for k, v in dict(info).items()} if isinstance(info, dict) else {}
    reason = _text(info.get("DeadLetterReason"))
    description = _text(info.get("DeadLetterErrorDescription")) or condition.description
    return reason, description


__all__ = ["AmqpServer"]
