"""The blob adapters' read-ahead: one chunk fetched ahead of the reader, errors where they
happened, and a thread that ends when the stream is closed early."""

from __future__ import annotations

import io
import time

import pytest

from file_pipeline.blob_adapters import _ReadAhead
from file_pipeline.chunk_stream import ChunkStream
from tests.support.waiting import wait_until


class Source:
    """Chunks handed out on demand, recording how many were fetched."""

    def __init__(self, chunks: list[bytes], fail_at: int | None = None) -> None:
        self.chunks = chunks
        self.fail_at = fail_at
        self.fetched = 0

    def __iter__(self):
        for index, chunk in enumerate(self.chunks):
            if index == self.fail_at:
                raise OSError(f"range {index} failed")
            self.fetched += 1
            yield chunk


def test_reads_every_chunk_in_order():
    chunks = [bytes([i]) * 1000 for i in range(7)]
    stream = io.BufferedReader(ChunkStream(_ReadAhead(iter(Source(chunks)), "t")), 4096)
    assert stream.read() == b"".join(chunks)


def test_fetches_one_chunk_ahead_at_most():
    source = Source([b"a" * 10, b"b" * 10, b"c" * 10, b"d" * 10])
    ahead = _ReadAhead(iter(source), "t")
    assert next(ahead) == b"a" * 10
    wait_until(lambda: source.fetched == 2, "the second chunk fetched")  # while the first is worked on
    time.sleep(0.2)
    assert source.fetched == 2  # and no further until it is taken
    assert next(ahead) == b"b" * 10
    wait_until(lambda: source.fetched == 3, "the third chunk fetched")
    ahead.close()


def test_an_error_is_raised_at_the_chunk_where_it_happened():
    ahead = _ReadAhead(iter(Source([b"a", b"b", b"c"], fail_at=2)), "t")
    assert next(ahead) == b"a"
    assert next(ahead) == b"b"
    with pytest.raises(OSError, match="range 2 failed"):
        next(ahead)
    with pytest.raises(StopIteration):
        next(ahead)


def test_closing_the_stream_early_ends_the_thread():
    source = Source([b"x" * 100] * 50)
    ahead = _ReadAhead(iter(source), "t")
    stream = io.BufferedReader(ChunkStream(ahead), 64)
    assert stream.read(10) == b"x" * 10
    stream.close()
    ahead._thread.join(5)
    assert not ahead._thread.is_alive()
    assert source.fetched <= 3
