"""The emulator's I/O loop: proton's engine (``Connection``, ``Transport``, ``Collector``) on a selector.

proton stays the AMQP engine: it parses and writes every frame, runs SASL and keeps each link's
state.  What this replaces is proton's Python reactor (``proton.reactor.Container``), whose
per-event handler chain, per-selectable bookkeeping and quiesce events cost about three times the
emulator's own work per frame, and which woke every 20 ms when idle.  Here:

* one ``selectors`` loop owns the sockets; bytes read go straight into the connection's
  ``Transport`` (through the delivery-id repair of :mod:`.inbound`), output is written after a
  whole batch of events has been handled, so one ``send`` carries many frames;
* the events of every connection come from one ``Collector``; only the kinds the
  :class:`~.server.AmqpServer` handles are wrapped as Python objects, the rest are dropped after a
  look at which transport has output;
* the broker pumps once per batch, not once per disposition or flow;
* the loop sleeps until something is due (a broker timer, a link's session wait, a connection's
  idle-timeout heartbeat) or a socket or the administration API's bridge wakes it.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import logging
import os
import queue
import selectors
import socket
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from cproton import (
    PN_TRANSPORT,
    addressof,
    isnull,
    pn_collector_peek,
    pn_collector_pop,
    pn_event_transport,
    pn_event_type,
)
from proton import Collector, Connection, Event, EventType, Transport

from .broker import now_ms
from .inbound import repair_delivery_ids

log = logging.getLogger("emulators.servicebus")

_READ_CHUNK = 64 * 1024


class LoopBridge:
    """Runs callables on the loop's thread (where the broker lives) for other threads: the
    administration API's request threads.  :meth:`call` blocks the caller until the loop has run it."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()

    def fileno(self) -> int:
        return self._read_fd

    def wake(self) -> None:
        try:
            os.write(self._write_fd, b"!")
        except BlockingIOError:  # the pipe is full of wake-ups already
            pass

    def call(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        future: Future[Any] = Future()
        self._jobs.put((fn, future))
        self.wake()
        return future.result(timeout)

    def run_pending(self) -> None:
        try:
            while os.read(self._read_fd, 512):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                fn, future = self._jobs.get_nowait()
            except queue.Empty:
                break
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

    def close(self) -> None:
        os.close(self._read_fd)
        os.close(self._write_fd)


class _Peer:
    """One accepted socket and the proton transport and connection bound to it."""

    __slots__ = ("connection", "deadline", "events", "sock", "transport")

    def __init__(self, sock: socket.socket, transport: Transport, connection: Connection) -> None:
        self.sock = sock
        self.transport = transport
        self.connection = connection
        self.deadline = 0.0  # when the transport wants tick() again (idle-timeout), 0 for never
        self.events = 0  # the selector events it is registered for


class IoLoop:
    """Serves AMQP on a listening socket with ``handler``'s ``on_*`` methods for proton's events.

    ``handler`` also provides ``configure_transport(transport)`` (SASL), ``after_events()`` (work
    batched until the events of one round are handled), ``next_due()`` (when its timed work is
    next due, epoch ms, or None) and ``run_due(now_ms)``.  The administration API's bridge runs its
    jobs on this thread, between rounds."""

    def __init__(self, handler: Any, host: str, port: int, bridge: LoopBridge | None = None) -> None:
        self.handler = handler
        self.bridge = bridge
        self.collector = Collector()
        self.selector = selectors.DefaultSelector()
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]  # --host ::1 too
        self.listener = socket.create_server((host, port), family=family, backlog=128)
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, self._accept)
        if bridge is not None:
            self.selector.register(bridge.fileno(), selectors.EVENT_READ, lambda _mask: bridge.run_pending())
        self.peers: dict[int, _Peer] = {}  # by the address of the pn_transport_t
        self._dirty: set[_Peer] = set()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._stopping = False
        self._dispatch: dict[int, Callable[[Any], None]] = {
            number: getattr(handler, kind.method)
            for number, kind in EventType.TYPES.items() if hasattr(handler, kind.method)
        }

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    # -- for the handler ------------------------------------------------------------------
    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay_s, next(self._timer_seq), fn))

    def stop(self) -> None:
        """Safe from a signal handler: the loop ends after its current round."""
        self._stopping = True
        if self.bridge is not None:
            self.bridge.wake()

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self._stopping:
                for key, mask in self.selector.select(self._timeout()):
                    key.data(mask)
                self._run_timers()
                self._settle_round()
        finally:
            for peer in list(self.peers.values()):
                self._drop(peer)
            self.selector.close()
            self.listener.close()

    def _timeout(self) -> float | None:
        now = time.monotonic()
        deadlines = [t for t in (peer.deadline for peer in self.peers.values()) if t]
        if self._timers:
            deadlines.append(self._timers[0][0])
        due_ms = self.handler.next_due()
        if due_ms is not None:
            deadlines.append(now + max(0, due_ms - now_ms()) / 1000)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, fn = heapq.heappop(self._timers)
            try:
                fn()
            except Exception:
                log.exception("scheduled callback failed")
        due_ms = self.handler.next_due()
        if due_ms is not None and due_ms <= now_ms():
            self.handler.run_due(now_ms())
        for peer in list(self.peers.values()):
            if peer.deadline and peer.deadline <= now:
                self._tick(peer, now)

    def _tick(self, peer: _Peer, now: float) -> None:
        try:
            peer.deadline = peer.transport.tick(now)
        except Exception:
            log.exception("transport tick failed")
            peer.deadline = 0.0
        self._dirty.add(peer)

    def _settle_round(self) -> None:
        """Handle every event, let the broker do the work they left, and write what is pending."""
        self._drain_events()
        self.handler.after_events()
        self._drain_events()
        while self._dirty:
            peer = self._dirty.pop()
            self._flush(peer)

    def _drain_events(self) -> None:
        collector = self.collector._impl
        dispatch = self._dispatch
        while True:
            impl = pn_collector_peek(collector)
            if isnull(impl):
                return
            number = pn_event_type(impl)
            if number == PN_TRANSPORT:  # the transport has output to write
                peer = self.peers.get(addressof(pn_event_transport(impl)))
                if peer is not None:
                    self._dirty.add(peer)
            method = dispatch.get(number)
            if method is not None:
                try:
                    method(Event.wrap(impl))
                except Exception:  # one bad event must not stop the emulator
                    log.exception("handling %s failed", EventType.TYPES[number])
            pn_collector_pop(collector)

    # -- sockets --------------------------------------------------------------------------
    def _accept(self, _mask: int) -> None:
        while True:
            try:
                sock, _address = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # Out of descriptors and the like: refuse this one, keep serving the others.
                log.warning("accept failed: %s", exc)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            transport = Transport(Transport.SERVER)
            self.handler.configure_transport(transport)
            connection = Connection()
            connection.collect(self.collector)
            transport.bind(connection)
            repair_delivery_ids(transport)
            peer = _Peer(sock, transport, connection)
            self.peers[addressof(transport._impl)] = peer
            peer.events = selectors.EVENT_READ
            self.selector.register(sock, peer.events, lambda mask, p=peer: self._io(p, mask))
            self._dirty.add(peer)

    def _io(self, peer: _Peer, mask: int) -> None:
        if mask & selectors.EVENT_READ:
            self._read(peer)
        if mask & selectors.EVENT_WRITE:
            self._dirty.add(peer)

    def _read(self, peer: _Peer) -> None:
        transport = peer.transport
        self._dirty.add(peer)
        capacity = transport.capacity()
        if capacity <= 0:
            return
        try:
            data = peer.sock.recv(min(capacity, _READ_CHUNK))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.debug("recv failed: %s", exc)
            transport.close_tail()
            return
        if not data:
            transport.close_tail()
            return
        try:
            transport.push(data)
        except Exception as exc:  # proton refused the bytes: it has closed the transport already
            log.debug("push failed: %s", exc)
            transport.close_tail()
            return
        if not peer.deadline:
            self._tick(peer, time.monotonic())

    def _flush(self, peer: _Peer) -> None:
        transport = peer.transport
        pending = transport.pending()
        while pending > 0:
            try:
                sent = peer.sock.send(transport.peek(pending))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                    log.debug("send failed: %s", exc)
                transport.close_head()
                pending = transport.pending()
                break
            transport.pop(sent)
            pending = transport.pending()
        capacity = transport.capacity()
        if pending < 0 and capacity < 0:
            # Both directions are finished: proton has said all it will (the transport-closed
            # event has been handled in this round), so the socket goes.
            self._drain_events()
            self._drop(peer)
            return
        events = (selectors.EVENT_READ if capacity > 0 else 0) | (selectors.EVENT_WRITE if pending > 0 else 0)
        if events != peer.events:
            if events == 0:
                self.selector.unregister(peer.sock)
            elif peer.events == 0:
                self.selector.register(peer.sock, events, lambda mask, p=peer: self._io(p, mask))
            else:
                self.selector.modify(peer.sock, events, lambda mask, p=peer: self._io(p, mask))
            peer.events = events

    def _drop(self, peer: _Peer) -> None:
        self.peers.pop(addressof(peer.transport._impl), None)
        self._dirty.discard(peer)
        if peer.events:
            self.selector.unregister(peer.sock)
            peer.events = 0
        try:
            peer.sock.close()
        except OSError:
            pass
        # As proton's reactor does once a transport has closed: the connection (which the handler
        # has freed) must not be left pointing at it.
        peer.transport.unbind()
        # The repair's push refers back to its transport; without that cycle the transport is
        # released here, on this thread, not by a garbage collection in an administration thread
        # while this one is inside proton.
        peer.transport.__dict__.pop("push", None)


__all__ = ["IoLoop", "LoopBridge"]
