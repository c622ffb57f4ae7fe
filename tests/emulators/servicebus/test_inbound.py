"""The delivery-id repair in front of proton (issue 12, cause F), on bytes alone: no emulator."""

from __future__ import annotations

from typing import Any

import pytest
from proton import Data, Described, uint, ulong

from emulators.servicebus.inbound import BEGIN, TRANSFER, DeliveryIdRepair


def frame(channel: int, performative: int, fields: list[Any], payload: bytes = b"") -> bytes:
    data = Data()
    data.put_object(Described(ulong(performative), fields))
    body = bytes(data.encode()) + payload
    return (8 + len(body)).to_bytes(4, "big") + bytes([2, 0]) + channel.to_bytes(2, "big") + body


def transfer(channel: int, handle: int, delivery_id: int | None, payload: bytes, more: bool = False) -> bytes:
    return frame(channel, TRANSFER, [uint(handle), None if delivery_id is None else uint(delivery_id),
                                     b"\x00\x00\x00\x01", uint(0), False, more], payload)


def transfers(stream: bytes) -> list[tuple[int, int | None, bytes]]:
    """(channel, delivery-id, payload) of every transfer frame in ``stream``."""
    found = []
    pos = 8  # the protocol header
    while pos < len(stream):
        size = int.from_bytes(stream[pos:pos + 4], "big")
        channel = int.from_bytes(stream[pos + 6:pos + 8], "big")
        body = stream[pos + 8:pos + size]
        data = Data()
        consumed = data.decode(body)
        data.rewind()
        data.next()
        performative = data.get_object()
        if int(performative.descriptor) == TRANSFER:
            delivery_id = performative.value[1]
            found.append((channel, None if delivery_id is None else int(delivery_id), body[consumed:]))
        pos += size
    return found


STREAM = (b"AMQP\x00\x01\x00\x00" + frame(0, BEGIN, [None, uint(0), uint(5000), uint(5000)])
          + transfer(0, 1, 0, b"cbs")
          # three requests sent at once, all numbered 1 by the client
          + transfer(0, 4, 1, b"first") + transfer(0, 4, 1, b"second") + transfer(0, 4, 1, b"third")
          # a delivery in two frames, then the client's own numbering, right again
          + transfer(0, 4, 4, b"big-1/2", more=True) + transfer(0, 4, 4, b"big-2/2") + transfer(0, 4, 5, b"after")
          # another session numbers on its own
          + frame(1, BEGIN, [None, uint(7), uint(5000), uint(5000)]) + transfer(1, 0, 7, b"other"))

EXPECTED = [(0, 0, b"cbs"), (0, 1, b"first"), (0, 2, b"second"), (0, 3, b"third"), (0, 4, b"big-1/2"),
            (0, 4, b"big-2/2"), (0, 5, b"after"), (1, 7, b"other")]


def test_duplicate_delivery_ids_are_renumbered_and_the_rest_is_untouched() -> None:
    repair = DeliveryIdRepair()
    assert transfers(repair.feed(STREAM)) == EXPECTED
    assert repair.renumbered == 2


def test_a_stream_in_order_passes_through_byte_for_byte() -> None:
    in_order = (b"AMQP\x00\x01\x00\x00" + transfer(0, 1, 0, b"a") + transfer(0, 1, 1, b"b", more=True)
                + transfer(0, 1, 1, b"c") + transfer(0, 1, 2, b"d"))
    assert DeliveryIdRepair().feed(in_order) == in_order


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 13, 64])
def test_the_stream_may_arrive_in_pieces_of_any_size(chunk: int) -> None:
    repair = DeliveryIdRepair()
    out = b"".join(repair.feed(STREAM[i:i + chunk]) for i in range(0, len(STREAM), chunk))
    assert transfers(out) == EXPECTED


def test_a_frame_too_short_to_be_one_is_passed_on_for_proton_to_refuse() -> None:
    repair = DeliveryIdRepair()
    garbage = b"AMQP\x00\x01\x00\x00" + b"\x00" * 16
    assert repair.feed(garbage) == garbage  # and returns: no loop over a zero-length frame
    assert repair.feed(b"more") == b"more"


def test_a_transfer_with_fields_of_the_wrong_type_is_passed_on_untouched() -> None:
    odd = b"AMQP\x00\x01\x00\x00" + frame(0, TRANSFER, ["not a handle", "not an id"], b"x") + transfer(0, 1, 5, b"y")
    assert DeliveryIdRepair().feed(odd) == odd


def test_an_endless_frame_that_never_reads_as_a_transfer_is_not_held_back() -> None:
    # A head that says "transfer" followed by bytes that never decode: passed on once it is clearly
    # not one, instead of being held (and growing) while proton hears nothing.
    head = (2**31).to_bytes(4, "big") + bytes([2, 0, 0, 0]) + b"\x00\x53\x14\xd0\xff\xff\xff\xff"
    repair = DeliveryIdRepair()
    out = repair.feed(b"AMQP\x00\x01\x00\x00" + head)
    chunk = b"\xee" * 70_000
    out += repair.feed(chunk)
    assert out.endswith(chunk) and len(out) == 8 + len(head) + len(chunk)
