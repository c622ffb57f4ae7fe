"""Reading a blob that arrives in chunks as one stream."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any


class ChunkStream(io.RawIOBase):
    """A raw stream over an iterator of byte chunks (the SDK's ranged downloads, a fake's slices);
    closing it closes the iterator, so a generator behind it can stop fetching."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._current = memoryview(b"")

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            stop = getattr(self._chunks, "close", None)
            if stop is not None:
                stop()
        super().close()

    def readinto(self, buffer: Any) -> int:
        while not self._current:
            try:
                self._current = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._current))
        buffer[:n] = self._current[:n]
        self._current = self._current[n:]
        return n
