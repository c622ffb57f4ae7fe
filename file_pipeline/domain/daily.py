"""Daily limits: how much a client may pay per currency and requested execution date, across files.

Semantics
---------
For a client and a currency with a ``DailyLimits`` entry, the sum of the amounts of its accepted
transactions with the same requested execution date, over all its *live* files (accepted, in
flight or completed; not rejected, not compensated), must not exceed the limit.

* A file's transactions are counted in file order, once every other rule has passed (a
  transaction refused for another reason uses nothing). One that would take the day's total
  over the limit is rejected with ``AM14``, naming the limit, the day and the currency; a later,
  smaller one may still fit.
* The client's rejection policy then applies as for any rejected transaction: ``reject-file``
  rejects the file (which then reserves nothing), ``pass-valid`` lets the others go on
  (pain.002 ``PART``).
* A currency without an entry has no daily limit and nothing is counted for it, so a limit
  added later counts only the files accepted from then on.
* The day is the transaction's requested execution date, or the one the validator gives a
  transaction without one.

How the totals are kept
-----------------------
What the client's live files use is read before a file is validated (:class:`DailyUsage`: one
:class:`DayTotal` per currency and day, each with the storage version it was read at). The
validation counts the file's own amounts on top (:class:`DailyLedger`). When the file is
accepted, its amounts are added to the totals in the same atomic write that records it, each
total guarded by the version read (or created only if still absent), so two files of one client
accepted at the same time cannot both spend the same room: the second write fails and that file
is judged again on the fresh totals. The record keeps what the file reserved
(``PaymentFile.daily_amounts``) until the file is compensated; the amounts are then subtracted
in the write that clears them from the record, so a redelivered compensation subtracts nothing
twice and a corrected resubmission finds the room again.

One file reserves on at most :data:`MAX_DAYS_PER_FILE` (currency, day) pairs: the reservation is
one atomic write with the record and the duplicate-file claims, and a Table Storage transaction
holds at most 100 rows. A transaction that would open one more pair is rejected with a reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_FLOOR, Decimal

from file_pipeline.domain.model import Finding
from file_pipeline.domain.reason_codes import IsoReason
from file_pipeline.domain.reference import Client

DayKey = tuple[str, date]  # (currency, requested execution date)

MAX_DAYS_PER_FILE = 90
#: The room of a currency without a daily limit, in cents: more than any file can add up to.
UNLIMITED_CENTS = 10**30
_ZERO = Decimal(0)


def day_key(currency: str, day: date) -> str:
    """``EUR-2026-11-23``: how a (currency, day) pair is named in records and storage keys."""
    return f"{currency}-{day.isoformat()}"


def parse_day_key(text: str) -> DayKey:
    currency, sep, day = text.partition("-")
    if not sep or len(currency) != 3:
        raise ValueError(f"not a daily-limit key (CCY-YYYY-MM-DD): {text!r}")
    return currency, date.fromisoformat(day)


def amounts_by_key(amounts: Mapping[str, str]) -> dict[DayKey, Decimal]:
    """A record's ``daily_amounts`` (``{"EUR-2026-11-23": "1250.00"}``) as Decimals by (currency, day)."""
    return {parse_day_key(key): Decimal(amount) for key, amount in amounts.items()}


def amounts_for_record(amounts: Mapping[DayKey, Decimal]) -> dict[str, str]:
    return {day_key(ccy, day): format(amount, "f") for (ccy, day), amount in sorted(amounts.items())}


@dataclass(frozen=True, slots=True)
class DayTotal:
    """The running total of a client's live files on one currency and day, as stored."""

    currency: str
    day: date
    amount: Decimal
    version: str | None = None  # storage ETag of the total as read; None: no total stored yet

    @property
    def key(self) -> DayKey:
        return self.currency, self.day


class DailyUsage:
    """A client's day totals as read at one moment, and the totals to write from them."""

    def __init__(self, totals: Iterable[DayTotal] = ()) -> None:
        self._totals = {total.key: total for total in totals}

    @property
    def amounts(self) -> dict[DayKey, Decimal]:
        return {key: total.amount for key, total in self._totals.items()}

    def reserve(self, amounts: Mapping[DayKey, Decimal]) -> list[DayTotal]:
        """The totals with a newly accepted file's ``amounts`` added, each to be written only if
        still at the version read here."""
        out = []
        for key, amount in sorted(amounts.items()):
            stored = self._totals.get(key)
            base, version = (stored.amount, stored.version) if stored is not None else (_ZERO, None)
            out.append(DayTotal(key[0], key[1], base + amount, version))
        return out

    def release(self, amounts: Mapping[DayKey, Decimal]) -> list[DayTotal]:
        """The totals with a compensated file's ``amounts`` taken out. A day with no stored total
        holds nothing of the file and is left alone; a total is never taken below zero, so a
        total edited by hand cannot block a compensation."""
        out = []
        for key, amount in sorted(amounts.items()):
            stored = self._totals.get(key)
            if stored is not None:
                out.append(DayTotal(key[0], key[1], max(stored.amount - amount, _ZERO), stored.version))
        return out


class DailyLedger:
    """One validation's view of a client's daily limits: what earlier files use (``used``) plus
    what this file has accepted so far (:attr:`reserved`), transaction by transaction."""

    def __init__(self, client: Client, used: Mapping[DayKey, Decimal]) -> None:
        self.client = client
        self.limits = client.daily_limits
        self.used = used
        self.reserved: dict[DayKey, Decimal] = {}
        self.over_limit = 0  # transactions refused because the day's total would pass the limit

    def _fits(self, currency: str, day: date, amount: Decimal) -> bool:
        key = (currency, day)
        mine = self.reserved.get(key)
        if mine is None:
            if len(self.reserved) >= MAX_DAYS_PER_FILE:
                return False
            mine = _ZERO
        return self.used.get(key, _ZERO) + mine + amount <= self.limits[currency]

    def admit(self, currency: str, day: date | None, amount: Decimal) -> Finding | None:
        """Count a transaction that passed every other rule; the finding if it must be rejected."""
        if currency not in self.limits:
            return None
        if day is None or not self._fits(currency, day, amount):
            return self.refusal(currency, day, amount)
        key = (currency, day)
        self.reserved[key] = self.reserved.get(key, _ZERO) + amount
        return None

    def refusal(self, currency: str, day: date | None, amount: Decimal) -> Finding:
        """Why a transaction that does not fit (see :meth:`room_cents`) is rejected; counted as
        refused."""
        limit = self.limits[currency]
        if day is None:
            return Finding(IsoReason.DT01, f"the transaction has no requested execution date and {currency} has no "
                                            f"cut-off to derive one, so the client's {currency} daily limit of "
                                            f"{limit} cannot be applied")
        key = (currency, day)
        if key not in self.reserved and len(self.reserved) >= MAX_DAYS_PER_FILE:
            return Finding(IsoReason.NARR, f"the file already spends daily limits on {MAX_DAYS_PER_FILE} (currency, "
                                            f"execution date) pairs, the most one file may; send the {currency} "
                                            f"payments for {day} in another file")
        self.over_limit += 1
        used = self.used.get(key, _ZERO) + self.reserved.get(key, _ZERO)
        return Finding(IsoReason.AM14, f"amount {amount} {currency} would take the client's {currency} total for "
                                        f"execution date {day} to {used + amount}, over its daily limit of {limit} "
                                        f"{currency} ({used} already used that day)")

    def room_cents(self, currency: str, day: date | None) -> int:
        """Whole cents that ``currency`` transactions on ``day`` may still add: a run of
        transactions whose amounts are counted in cents is checked against it without a
        Decimal per transaction, then added with :meth:`add_cents`."""
        if currency not in self.limits:
            return UNLIMITED_CENTS
        if day is None or ((currency, day) not in self.reserved and len(self.reserved) >= MAX_DAYS_PER_FILE):
            return 0
        key = (currency, day)
        room = self.limits[currency] - self.used.get(key, _ZERO) - self.reserved.get(key, _ZERO)
        return max(0, int((room * 100).to_integral_value(rounding=ROUND_FLOOR)))

    def add_cents(self, currency: str, day: date | None, cents: int) -> None:
        """Count a run of transactions that stayed within :meth:`room_cents`."""
        if cents and day is not None and currency in self.limits:
            key = (currency, day)
            self.reserved[key] = self.reserved.get(key, _ZERO) + Decimal(cents).scaleb(-2)

    def holds_under(self, used: Mapping[DayKey, Decimal]) -> bool:
        """Whether validating the file again against ``used`` would decide every transaction the
        same way: so when no transaction was refused for a daily limit and the file's amounts
        still fit on top of ``used`` (amounts are positive, so every running total on the way
        fits too)."""
        if self.over_limit:
            return False
        return all(used.get(key, _ZERO) + amount <= self.limits[key[0]] for key, amount in self.reserved.items())
