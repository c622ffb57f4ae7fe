"""Client bytes on their way into proton: delivery-ids renumbered as the session expects them.

The azure-servicebus SDK (pyamqp, 7.15.0) numbers a session's transfers without a lock: when
several management requests go out at once on one receiver (``peek_messages`` from threads, or
under ``asyncio.gather``), each reads the session's next delivery-id before any of them moves it
on, so they all carry the same delivery-id (and delivery tag); the counter then moves on once per
transfer, so the ids after them are right again.  Service Bus answers every request.  proton's
engine refuses the second transfer ("sequencing error, expected delivery-id N, got M") and closes
the connection.  proton stays the engine: this only rewrites the delivery-id of a transfer whose
id is not the one proton expects, before proton reads the frame.  Frames are found by their size
field and every performative is read and written with proton's own codec; nothing else changes.

Only the ids of the client's transfers change; what proton later says about a renumbered delivery
(its disposition) carries proton's number.  The SDK matches a management reply by correlation id,
not by delivery-id, so a management request is answered whatever its number.
"""

from __future__ import annotations

from typing import Any

from proton import Data, Described, uint, ulong

from .codec import owned

AMQP_FRAME = 0
BEGIN, TRANSFER, END = 0x11, 0x14, 0x17
PROTOCOL_HEADER = b"AMQP"
_PERFORMATIVE_PEEK = 256  # a transfer's performative is far shorter; the rest of the frame is payload
_MAX_PERFORMATIVE = 64 * 1024  # past this, what claims to be a transfer is not held back any longer
_ID_MODULUS = 2**32  # delivery-ids are RFC 1982 serial numbers


class DeliveryIdRepair:
    """One connection's incoming byte stream, passed on with delivery-ids in sequence."""

    def __init__(self) -> None:
        self._held = b""  # the start of a frame whose head is not complete yet
        self._passing = 0  # bytes of the current frame still to pass on untouched
        self._expected: dict[int, int] = {}  # channel -> delivery-id proton expects next
        self._continuing: dict[tuple[int, int], int] = {}  # (channel, handle) -> id of its unfinished delivery
        self.renumbered = 0
        self._malformed = False

    def feed(self, data: bytes) -> bytes:
        if self._malformed:
            return data  # proton says what is wrong with it and closes the connection
        buf = memoryview(self._held + data) if self._held else memoryview(data)
        self._held = b""
        out: list[bytes | memoryview] = []
        pos, end = 0, len(buf)
        while pos < end:
            if self._passing:
                n = min(self._passing, end - pos)
                out.append(buf[pos:pos + n])
                pos += n
                self._passing -= n
                continue
            if end - pos < 8:
                break
            if buf[pos:pos + 4] == PROTOCOL_HEADER:
                out.append(buf[pos:pos + 8])
                pos += 8
                continue
            size = int.from_bytes(buf[pos:pos + 4], "big")
            head = buf[pos + 4] * 4
            if size < 8:
                self._malformed = True
                out.append(buf[pos:])
                pos = end
                break
            if buf[pos + 5] != AMQP_FRAME or size <= head or head < 8:
                self._passing = size
                continue
            if end - pos < head + 3:
                break
            code = buf[pos + head + 2] if buf[pos + head] == 0 and buf[pos + head + 1] == 0x53 else -1
            channel = int.from_bytes(buf[pos + 6:pos + 8], "big")
            if code in (BEGIN, END):
                self._forget(channel)
                self._passing = size
                continue
            if code != TRANSFER:
                self._passing = size
                continue
            try:
                rewritten = self._transfer(buf, pos, head, size, channel)
            except Exception:  # a transfer no client would send: proton judges it, not us
                self._malformed = True
                out.append(buf[pos:])
                pos = end
                break
            if rewritten is None:
                break  # the performative is not all here yet
            frame_head, consumed = rewritten
            out.append(frame_head)
            pos += consumed
            self._passing = size - consumed
        if pos < end:
            self._held = bytes(buf[pos:])
        return b"".join(out)

    def _forget(self, channel: int) -> None:
        self._expected.pop(channel, None)
        for key in [k for k in self._continuing if k[0] == channel]:
            del self._continuing[key]

    def _transfer(self, buf: memoryview, pos: int, head: int, size: int,
                  channel: int) -> tuple[bytes | memoryview, int] | None:
        """The frame's head (rewritten if need be) and how many of its bytes that head replaces."""
        start = pos + head
        available = min(pos + size, len(buf))
        data = Data()
        try:
            consumed = data.decode(bytes(buf[start:min(available, start + _PERFORMATIVE_PEEK)]))
        except Exception:
            try:
                consumed = data.decode(bytes(buf[start:available]))
            except Exception:
                if available < pos + size:
                    if available - start > _MAX_PERFORMATIVE:
                        raise ValueError("no transfer performative is that long") from None
                    return None
                self._passing = 0
                return buf[pos:pos + size], size  # not ours to judge: proton says what is wrong with it
        data.rewind()
        data.next()
        performative = data.get_object()
        fields: list[Any] = list(performative.value) if isinstance(performative, Described) else []
        unchanged = buf[pos:start + consumed], head + consumed
        if len(fields) < 2 or fields[0] is None:
            return unchanged
        handle = int(fields[0])
        delivery_id = None if fields[1] is None else int(fields[1])
        more = len(fields) > 5 and bool(fields[5])
        aborted = len(fields) > 9 and bool(fields[9])
        key = (channel, handle)
        continuing = self._continuing.get(key)
        if continuing is not None:
            wanted = continuing
        else:
            wanted = self._expected.get(channel, delivery_id if delivery_id is not None else 0)
            self._expected[channel] = (wanted + 1) % _ID_MODULUS
        if more and not aborted:
            self._continuing[key] = wanted
        else:
            self._continuing.pop(key, None)
        if delivery_id is None or delivery_id == wanted:
            return unchanged
        fields[1] = uint(wanted)
        encoder = Data()
        encoder.put_object(Described(ulong(TRANSFER), owned(fields)))
        encoded = bytes(encoder.encode())
        self.renumbered += 1
        new_size = size - consumed + len(encoded)
        return new_size.to_bytes(4, "big") + bytes(buf[pos + 4:start]) + encoded, head + consumed


def repair_delivery_ids(transport: Any) -> DeliveryIdRepair:
    """Put a :class:`DeliveryIdRepair` in front of ``transport`` (proton's ``Transport``, the one the
    I/O loop pushes socket bytes into); returns it."""
    repair = DeliveryIdRepair()
    push = transport.push
    backlog = b""

    def push_repaired(data: bytes) -> None:
        nonlocal backlog
        pending = backlog + repair.feed(data)
        # A renumbered performative may be a few bytes longer than the bytes the loop made room
        # for; proton frees room as it reads whole frames, so push what fits until all is in.
        while pending:
            room = transport.capacity()
            if room <= 0:
                break
            push(pending[:room])
            pending = pending[room:]
        backlog = pending

    transport.push = push_repaired
    return repair


__all__ = ["DeliveryIdRepair", "repair_delivery_ids"]
