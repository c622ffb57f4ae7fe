"""The DU04 memory: the EndToEndIds seen in one file, in memory that stays small whatever its size."""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left
from collections.abc import Sequence
from hashlib import blake2b
from itertools import islice
from operator import lt
from sys import byteorder

from file_pipeline.domain.reason_codes import IsoReason

R = IsoReason


# The EPC's placeholder for "the debtor gave no EndToEndId" (SEPA rulebooks, ISO 20022 usage
# guides): many transactions of one file may carry it, and a bank accepts them, so it is never a
# duplicate.
NOT_PROVIDED = "NOTPROVIDED"
_LITTLE_ENDIAN = byteorder == "little"  # array("Q").frombytes reads native byte order


class _NumberRun:
    """Exact numeric keys of the ids sharing one prefix: ascending ones in a sorted array,
    others in 8-byte buckets."""

    __slots__ = ("buckets", "last", "numbers")

    def __init__(self) -> None:
        self.numbers = array("Q")
        self.last = -1
        self.buckets: list[bytearray | None] | None = None


class SeenIds:
    """The ids seen so far in one file (DU04), in memory that stays small whatever the file size.

    Each id is kept as its 16-byte BLAKE2b digest, appended to one of 65,536 buckets (byte
    strings) chosen by the digest's first two bytes: about 18 bytes per id (1M ids: ~20 MB,
    against ~100 MB for a set of the id strings) and no rehashing as the file grows. A
    duplicate is always detected: the same id has the same digest. Two *different* ids are
    mistaken for a duplicate only if their 128-bit digests collide: for n ids the chance that
    this happens at all is below n**2 / 2**129, about 1.5e-27 for a million transactions.

    Ids that end in 1 to 15 ASCII digits (NACHA trace numbers, ``E2E000000001`` and most
    clients' references) are kept exactly instead: the part before those digits (the prefix,
    which does not end in an ASCII digit, so an id has one way to be split) picks a run, and
    the digits become the number ``length << 60 | int(digits, 16)`` (the digits read as
    hexadecimal, i.e. in BCD, 4 bits each, which keeps the order of digit strings of one length
    and can be computed for many at once with :meth:`bytes.fromhex`; the length keeps ``"012"``
    and ``"12"`` apart; no collision is possible). While a run's numbers come in ascending order, as
    sequential references do, each is appended to one sorted array (8 bytes per id) and needs
    no look-up at all, since a number above every one seen before cannot have been seen; one
    that breaks the order is looked up in that array (binary search) and in 8-byte buckets
    like the digests. At most ``_MAX_PREFIXES`` prefixes get a run; ids with any other prefix
    are always kept as digests.
    """

    _BUCKETS = 1 << 16
    _MAX_DIGITS = 15  # 15 BCD digits take 60 bits: the length fits above them in 64 bits
    _MAX_PREFIXES = 16
    __slots__ = ("_buckets", "_digits", "_runs", "_shapes", "count")

    def __init__(self) -> None:
        self._buckets: list[bytearray | None] = [None] * self._BUCKETS
        self._digits = _NumberRun()  # ids made only of digits
        self._runs: dict[str, _NumberRun] = {}  # by prefix
        self._shapes: dict[tuple[str, int], re.Pattern[str]] = {}  # for add_new: (prefix, digits)
        self.count = 0

    def add(self, value: str) -> bool:
        """Remember ``value``; False if it was seen before."""
        prefix = value.rstrip("0123456789")
        digits = len(value) - len(prefix)
        if 0 < digits <= self._MAX_DIGITS:
            run: _NumberRun | None = self._digits
            if prefix:
                run = self._runs.get(prefix)
                if run is None and len(self._runs) < self._MAX_PREFIXES:
                    run = self._runs[prefix] = _NumberRun()
            if run is not None:
                key = digits << 60 | int(value[-digits:], 16)
                if key > run.last:  # the common case: ascending, so new
                    run.numbers.append(key)
                    run.last = key
                    self.count += 1
                    return True
                return self._add_number(run, key)
        digest = blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        if _bucket_add(self._buckets, digest[0] << 8 | digest[1], digest):
            self.count += 1
            return True
        return False

    def add_digits(self, value: str) -> bool:
        """:meth:`add` for a ``value`` known to be 1 to 15 ASCII digits (a NACHA trace number)."""
        key = len(value) << 60 | int(value, 16)
        run = self._digits
        if key > run.last:
            run.numbers.append(key)
            run.last = key
            self.count += 1
            return True
        return self._add_number(run, key)

    def add_new_digits(self, values: Sequence[str]) -> int:
        """:meth:`add_digits` for ``values`` in order, up to the first one seen before: how many
        were new (``len(values)``: all of them). The values must be ASCII digit strings of one
        length, 1 to 15 (the trace numbers of NACHA entries)."""
        run = self._digits
        # Trace numbers mostly come in ascending order: their keys are then above one another,
        # and if the first is above every key seen, none can have been seen. The keys are made
        # all at once: each value behind its length and zeros is 16 hex digits, 8 bytes.
        if values and all(map(lt, values, islice(values, 1, None))):
            width = len(values[0])
            head = f"{width:x}{'0' * (15 - width)}"
            added = self._extend_if_above(run, head + head.join(values))
            if added:
                return added
        for done, value in enumerate(values):
            if not self.add_digits(value):
                return done
        return len(values)

    def add_new(self, values: Sequence[str]) -> int:
        """:meth:`add` for ``values`` in order, up to the first one seen before: how many were
        new (``len(values)``: all of them). Any ids (CSV EndToEndIds)."""
        # The common case, sequential references of one prefix and width (``ACME-000123``), in
        # ascending order, above every one seen with that prefix: their keys are made at once,
        # as add_new_digits does, once one match has shown that the joined values are made of
        # that prefix and that many digits each. The prefix does not end in a digit, so it
        # occurs in the joined text only where an id starts and ``replace`` puts the length
        # and zeros of a key there.
        if values and all(map(lt, values, islice(values, 1, None))):
            first = values[0]
            prefix = first.rstrip("0123456789")
            digits = len(first) - len(prefix)
            if 0 < digits <= self._MAX_DIGITS:
                if not prefix:
                    run: _NumberRun | None = self._digits
                else:
                    run = self._runs.get(prefix)
                    if run is None and len(self._runs) < self._MAX_PREFIXES:
                        run = self._runs[prefix] = _NumberRun()
                shape = self._shapes.get((prefix, digits))
                if shape is None:
                    shape = re.compile(f"(?:{re.escape(prefix)}[0-9]{{{digits}}})+")
                    if len(self._shapes) < 4 * self._MAX_PREFIXES:
                        self._shapes[prefix, digits] = shape
                joined = "".join(values)
                if run is not None and shape.fullmatch(joined):
                    head = f"{digits:x}{'0' * (15 - digits)}"
                    added = self._extend_if_above(run, joined.replace(prefix, head) if prefix
                                                  else head + head.join(values))
                    if added:
                        return added
        for done, value in enumerate(values):
            if not self.add(value):
                return done
        return len(values)

    def _extend_if_above(self, run: _NumberRun, hex_keys: str) -> int:
        """Keys given as 16 hex digits each, ascending, appended to ``run`` if the first is above
        every key it holds (then none can have been seen): how many, or 0 (nothing added)."""
        keys = array("Q")
        keys.frombytes(bytes.fromhex(hex_keys))
        if _LITTLE_ENDIAN:
            keys.byteswap()
        if keys[0] > run.last:
            run.numbers.extend(keys)
            run.last = keys[-1]
            self.count += len(keys)
            return len(keys)
        return 0

    def _add_number(self, run: _NumberRun, key: int) -> bool:
        numbers = run.numbers
        at = bisect_left(numbers, key)
        if at < len(numbers) and numbers[at] == key:
            return False
        if run.buckets is None:
            run.buckets = [None] * self._BUCKETS
        # the low 16 bits of a BCD key are its last 4 digits (10,000 values): a prime modulus
        # spreads the keys over all the buckets
        if _bucket_add(run.buckets, key % 65521, key.to_bytes(8, "big")):
            self.count += 1
            return True
        return False


def _bucket_add(buckets: list[bytearray | None], index: int, item: bytes) -> bool:
    """Append ``item`` (fixed size) to bucket ``index`` unless it is there; False if it was."""
    bucket = buckets[index]
    if bucket is None:
        buckets[index] = bytearray(item)
        return True
    size = len(item)
    at = bucket.find(item)
    while at > 0 and at % size:  # a match straddling two items is no match
        at = bucket.find(item, at + 1)
    if at >= 0:
        return False
    bucket += item
    return True
