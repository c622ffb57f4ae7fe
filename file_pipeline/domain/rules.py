"""Validation rules: pure functions of (record, reference data, injected clock).

Transaction rules return a :class:`Finding` (ISO reason code + description) or
``None``; :class:`TransactionRules` binds the reference data, the client and
the clock and applies them all to one transaction. File rules compare declared
header/trailer controls with what the reader computed.

No rule reads the wall clock: the caller passes ``now`` (an aware datetime).
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from hashlib import blake2b
from itertools import islice
from operator import lt
from sys import byteorder

from file_pipeline.domain.model import FileFormat, FileHeader, Finding, Transaction
from file_pipeline.domain.reason_codes import NACHA_ERROR_CODES, ReasonCode
from file_pipeline.domain.reference import Client, ReferenceData

R = ReasonCode

# --------------------------------------------------------------------------- IBAN
# SWIFT IBAN registry: country, IBAN length, BBAN structure (n digits, a upper-case
# letters, c alphanumerics). Non-registry "aspirational" IBAN countries are left out.
_IBAN_REGISTRY_TEXT = """
AD24:4n4n12c AE23:3n16n AL28:8n16c AT20:5n11n AX18:3n11n AZ28:4a20c BA20:3n3n8n2n BE16:3n7n2n
BG22:4a4n2n8c BH22:4a14c BI27:5n5n11n2n BL27:5n5n11c2n BR29:8c5n10n1c1c BY28:4c4n16c CH21:5n12c
CR22:4n14n CY28:3n5n16c CZ24:4n6n10n DE22:8n10n DJ27:23n DK18:4n9n1n DO28:4c20n EE20:2n2n11n1n
EG29:4n4n17n ES24:4n4n1n1n10n FI18:3n11n FK18:2a12n FO18:4n9n1n FR27:5n5n11c2n GB22:4a6n8n
GE22:2a16n GF27:5n5n11c2n GG22:4a6n8n GI23:4a15c GL18:4n9n1n GP27:5n5n11c2n GR27:3n4n16c GT28:4c20c
HN28:4a20n HR21:7n10n HU28:3n4n1n15n1n IE22:4a6n8n IL23:3n3n13n IM22:4a6n8n IQ23:4a3n12n
IS26:4n2n6n10n IT27:1a5n5n12c JE22:4a6n8n JO30:4a4n18c KW30:4a22c KZ20:3n13c LB28:4n20c LC32:4a24c
LI21:5n12c LT20:5n11n LU20:3n13c LV21:4a13c LY25:3n3n15n MC27:5n5n11c2n MD24:2c18c ME22:3n13n2n
MF27:5n5n11c2n MK19:3n10c2n MN20:4n12n MQ27:5n5n11c2n MR27:5n5n11n2n MT31:4a5n18c MU30:4a2n2n12n3n3a
NC27:5n5n11c2n NI28:4a20n NL18:4a10n NO15:4n6n1n OM23:3n16c PF27:5n5n11c2n PK24:4a16c PL28:8n16n
PM27:5n5n11c2n PS29:4a21c PT25:4n4n11n2n QA29:4a21c RE27:5n5n11c2n RO24:4a16c RS22:3n13n2n
RU33:9n5n15c SA24:2n18c SC31:4a2n2n16n3a SD18:2n12n SE24:3n16n1n SI19:5n8n2n SK24:4n6n10n
SM27:1a5n5n12c SO23:4n3n12n ST25:4n4n11n2n SV28:4a20n TF27:5n5n11c2n TL23:3n14n2n TN24:2n3n13n2n
TR26:5n1n16c UA29:6n19c VA22:3n15n VG24:4a16n WF27:5n5n11c2n XK20:4n10n2n YE30:4a4n18c
YT27:5n5n11c2n
"""
_CLASS = {"n": "[0-9]", "a": "[A-Z]", "c": "[A-Z0-9]"}


def _registry() -> dict[str, tuple[int, re.Pattern[str]]]:
    out = {}
    for item in _IBAN_REGISTRY_TEXT.split():
        head, spec = item.split(":")
        parts = re.findall(r"(\d+)([nac])", spec)
        pattern = "".join(f"{_CLASS[k]}{{{n}}}" for n, k in parts)
        out[head[:2]] = (int(head[2:]), re.compile(pattern + r"\Z"))
    return out


IBAN_REGISTRY: Mapping[str, tuple[int, re.Pattern[str]]] = _registry()
# digits map to themselves: str.translate then finds every character of an IBAN in the table,
# which is faster than missing most of them
_IBAN_TO_DIGITS = {ord(c): str(int(c, 36)) for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
_IBAN_SHAPE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{1,30}\Z")


def normalize_iban(value: str) -> str:
    """Print format (spaces, lower case) to electronic format."""
    return value.replace(" ", "").upper()


def iban_problem(iban: str) -> str | None:
    """Why ``iban`` (electronic format) is not a valid IBAN, or ``None``."""
    if not _IBAN_SHAPE.match(iban):
        return "not an IBAN (2 letters, 2 check digits, up to 30 alphanumerics)"
    spec = IBAN_REGISTRY.get(iban[:2])
    if spec is None:
        return f"country {iban[:2]} does not use IBAN"
    length, bban = spec
    if len(iban) != length:
        return f"{iban[:2]} IBAN must have {length} characters, has {len(iban)}"
    if not bban.match(iban, 4):
        return f"BBAN does not match the {iban[:2]} national format"
    if _iban_mod97(iban) != 1:
        return "IBAN check digits (mod-97) are wrong"
    return None


_LETTER_VALUE = {c: ord(c) - 55 for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def _iban_mod97(iban: str) -> int:
    """ISO 13616 remainder of a shape-checked IBAN: BBAN, country and check digits as one number.

    A BBAN of ASCII digits (most countries) is read as one integer; the country letters (two
    digits each) and the check digits are then appended arithmetically, which gives the same
    number as the textual rearrangement without building it."""
    bban = iban[4:]
    if bban.isdigit() and bban.isascii():
        letters = _LETTER_VALUE[iban[0]] * 100 + _LETTER_VALUE[iban[1]]
        return (int(bban) * 1_000_000 + letters * 100 + int(iban[2:4])) % 97
    return int((bban + iban[:4]).translate(_IBAN_TO_DIGITS)) % 97


_DIGITS_ONLY = re.compile(r"(?:\[0-9\]\{[0-9]+\})+\\Z")  # a BBAN pattern of "n" parts only


def _valid_iban_shapes() -> dict[str, tuple[Callable[[str], re.Match[str] | None], str, bool]]:
    """Per country: a match of the whole IBAN (country, check digits, BBAN, length), the
    country's letters as digits, and whether its BBAN is made of digits only."""
    out = {}
    for country, (_, bban) in IBAN_REGISTRY.items():
        whole = re.compile(f"{country}[0-9]{{2}}{bban.pattern}")
        out[country] = (whole.match, country.translate(_IBAN_TO_DIGITS), bool(_DIGITS_ONLY.fullmatch(bban.pattern)))
    return out


_VALID_IBAN_SHAPES = _valid_iban_shapes()


def iban_valid(iban: str) -> bool:
    """``iban_problem(iban) is None``, with one match of the country's whole shape instead of
    the checks one after the other (the fast paths test many IBANs; the problem words none)."""
    shape = _VALID_IBAN_SHAPES.get(iban[:2])
    if shape is None:
        return False
    match, country, digits_only = shape
    if match(iban) is None:
        return False
    bban = iban[4:]
    return int((bban if digits_only else bban.translate(_IBAN_TO_DIGITS)) + country + iban[2:4]) % 97 == 1


def check_iban(iban: str) -> Finding | None:
    problem = iban_problem(iban)
    return Finding(R.AC01, f"creditor IBAN {iban!r}: {problem}") if problem else None


def iban_check_digits(country: str, bban: str) -> str:
    """Compute the two IBAN check digits for ``country`` + ``bban``."""
    return f"{98 - int((bban + country + '00').translate(_IBAN_TO_DIGITS)) % 97:02d}"


# --------------------------------------------------------------------------- BIC / ABA
BIC_RE = re.compile(r"[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}(?:[A-Z0-9]{3})?\Z")  # XSD BICFIDec2014Identifier


def check_bic(bic: str, ref: ReferenceData, role: str = "creditor agent") -> Finding | None:
    if not BIC_RE.match(bic):
        return Finding(R.RC01, f"{role} BIC {bic!r} is not a valid BIC (4!a/c 2!a 2!c [3!c])")
    bank = ref.bank(bic)
    if bank is None:
        return Finding(R.RC01, f"{role} BIC {bic} is not in the bank directory")
    if not bank.reachable:
        return Finding(R.RC01, f"{role} BIC {bic} ({bank.name}) is not reachable")
    return None


_ABA_WEIGHTS = (3, 7, 1, 3, 7, 1, 3, 7, 1)


def aba_check_digit_ok(routing: str) -> bool:
    """ABA routing number checksum: weights 3-7-1 repeated, sum divisible by 10."""
    if len(routing) != 9 or not routing.isdigit() or not routing.isascii():
        return False
    return sum(int(d) * w for d, w in zip(routing, _ABA_WEIGHTS, strict=True)) % 10 == 0


def aba_check_digit(first8: str) -> str:
    """The 9th digit that makes ``first8`` a valid routing number."""
    s = sum(int(d) * w for d, w in zip(first8, _ABA_WEIGHTS[:8], strict=True))
    return str((10 - s % 10) % 10)


def check_routing(routing: str, ref: ReferenceData) -> Finding | None:
    if not aba_check_digit_ok(routing):
        return Finding(R.RC10, f"routing number {routing!r} fails the ABA check digit (3-7-1)")
    entry = ref.aba.get(routing)
    if entry is None:
        return Finding(R.RC10, f"routing number {routing} is not in the ABA directory")
    if not entry.reachable:
        return Finding(R.RC10, f"routing number {routing} ({entry.name}) is not an active ACH participant")
    return None


# --------------------------------------------------------------------------- currency / amount
_CCY_RE = re.compile(r"[A-Z]{3}\Z")


def check_currency(ccy: str, ref: ReferenceData, client: Client) -> Finding | None:
    if not ccy:
        return Finding(R.AM11, "currency is missing")
    if not _CCY_RE.match(ccy):
        return Finding(R.AM11, f"currency {ccy!r} is not a 3-letter ISO 4217 code")
    currency = ref.currencies.get(ccy)
    if currency is None:
        return Finding(R.AM03, f"currency {ccy} is not a supported ISO 4217 currency")
    if not currency.enabled:
        return Finding(R.AM03, f"currency {ccy} is not enabled for processing")
    if ccy not in client.allowed_currencies:
        return Finding(R.AM03, f"currency {ccy} is not agreed for client {client.client_id}")
    return None


def decimal_places(amount: Decimal) -> int:
    """Significant decimal places: 12.50 -> 1, 100.00 -> 0, 1.005 -> 3."""
    exp = amount.normalize().as_tuple().exponent
    return -exp if isinstance(exp, int) and exp < 0 else 0


def check_amount(
    amount: Decimal | None, ccy: str, ref: ReferenceData, client: Client, amount_text: str = ""
) -> list[Finding]:
    """AM12 unparsable/negative, AM01 zero, CH20 decimals, AM02 currency maximum, AM14 client limit.

    Decimals are checked by value: ``100.00`` JPY is accepted as 100 (the writer
    normalises it), ``100.5`` JPY is CH20. The pain.001 XSD allows 5 decimals
    for every currency and cannot catch this.
    """
    if amount is None:
        return [Finding(R.AM12, f"amount {amount_text!r} is missing or not a number")]
    if not amount.is_finite():
        return [Finding(R.AM12, f"amount {amount_text or amount!s} is not a finite number")]
    if amount < 0:
        return [Finding(R.AM12, f"amount {amount} is negative")]
    if amount == 0:
        return [Finding(R.AM01, "amount is zero")]
    out = []
    currency = ref.currencies.get(ccy)
    if currency is not None:
        places = decimal_places(amount)
        if places > currency.minor_units:
            out.append(
                Finding(R.CH20, f"amount {amount} has {places} decimals, {ccy} allows {currency.minor_units}")
            )
        if currency.max_amount is not None and amount > currency.max_amount:
            out.append(
                Finding(R.AM02, f"amount {amount} {ccy} exceeds the {ccy} maximum {currency.max_amount}")
            )
    limit = client.tx_limits.get(ccy)
    if limit is not None and amount > limit:
        out.append(
            Finding(R.AM14, f"amount {amount} {ccy} exceeds the client's per-transaction limit {limit}")
        )
    if amount.adjusted() >= 13:  # pain.001: totalDigits 18 incl. 5 fraction digits
        out.append(Finding(R.AM12, f"amount {amount} has more than 13 integer digits"))
    return out


def parse_amount(text: str, decimal_separator: str = ".", thousands_separator: str = "") -> Decimal | None:
    """Parse a plain decimal amount (no exponent, no sign other than a leading '-')."""
    s = text.strip()
    if thousands_separator:
        s = s.replace(thousands_separator, "")
    if decimal_separator != ".":
        if "." in s:
            return None
        s = s.replace(decimal_separator, ".")
    if not s or not AMOUNT_RE.match(s):
        return None
    try:
        return Decimal(s)
    except InvalidOperation:  # pragma: no cover - the regex already guarantees a number
        return None


AMOUNT_RE = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\Z")

# --------------------------------------------------------------------------- text fields
_XML_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


_ASCII_TEXT_CHARS = bytes(c for c in range(128) if not _XML_BAD_CHARS.match(chr(c)))


def check_text(value: str, max_len: int, what: str, code: ReasonCode = R.CH16) -> Finding | None:
    if len(value) > max_len:
        return Finding(code, f"{what} is {len(value)} characters, at most {max_len} allowed")
    if _XML_BAD_CHARS.search(value):
        return Finding(code, f"{what} contains control characters")
    return None


# --------------------------------------------------------------------------- dates
def earliest_execution_date(ref: ReferenceData, client: Client, currency: str, now: datetime) -> date | None:
    """First date a payment in ``currency`` received at ``now`` can be executed."""
    cutoff = ref.cutoff_for(currency)
    if cutoff is None:
        return None
    local = now.astimezone(cutoff.tz)
    today = local.date()
    cut_time = client.cutoff_time or cutoff.time
    if ref.is_business_day(today, cutoff.calendar) and local.time() < cut_time:
        start = today
    else:
        start = ref.next_business_day(today, cutoff.calendar, include=False)
    return ref.add_business_days(start, cutoff.lead_days, cutoff.calendar)


def check_execution_date(
    requested: date, currency: str, ref: ReferenceData, client: Client, now: datetime
) -> Finding | None:
    """CH04 in the past, CH03 too far ahead, DT03 non-business day, DT05 after cut-off."""
    cutoff = ref.cutoff_for(currency)
    if cutoff is None:
        return None  # unknown currency: reported by the currency rule
    local = now.astimezone(cutoff.tz)
    today = local.date()
    if requested < today:
        return Finding(
            R.CH04, f"requested execution date {requested} is in the past (today is {today} in {cutoff.zone})"
        )
    if requested > today + timedelta(days=cutoff.max_days_ahead):
        return Finding(
            R.CH03, f"requested execution date {requested} is more than {cutoff.max_days_ahead} days ahead"
        )
    if not ref.is_business_day(requested, cutoff.calendar):
        kind = "weekend" if requested.weekday() >= 5 else "holiday"
        return Finding(
            R.DT03, f"requested execution date {requested} is a {kind} in the {cutoff.calendar} calendar"
        )
    earliest = earliest_execution_date(ref, client, currency, now)
    if earliest is not None and requested < earliest:
        cut_time = client.cutoff_time or cutoff.time
        return Finding(
            R.DT05,
            f"requested execution date {requested} is before the earliest possible "
            f"{earliest} ({cutoff.name} cut-off {cut_time:%H:%M} {cutoff.zone}, "
            f"{cutoff.lead_days} lead day(s))",
        )
    return None


# --------------------------------------------------------------------------- DU04 memory
# The EPC's placeholder for "the debtor gave no EndToEndId" (SEPA rulebooks, ISO 20022 usage
# guides): many transactions of one file may carry it, and a bank accepts them, so it is never a
# duplicate.
NOT_PROVIDED = "NOTPROVIDED"
_LITTLE_ENDIAN = byteorder == "little"  # array("Q").frombytes reads native byte order


class _NumberRun:
    """Exact numeric keys of the ids sharing one prefix: ascending ones in a sorted array,
    others in 8-byte buckets."""

    __slots__ = ("numbers", "last", "buckets")

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


# --------------------------------------------------------------------------- per transaction
@dataclass(frozen=True, slots=True)
class EntryScreen:
    """What lets a reader of fixed-layout entries (NACHA) skip :meth:`TransactionRules.check`
    for an entry it can show to be clean with a few comparisons of plain values.

    Made by :meth:`TransactionRules.entry_screen` for one currency and execution date, only
    when neither gives a finding. An entry with no format finding, a credit, no IBAN, no BIC
    and no remittance text, and all of: an amount of ``0 < cents <= max_cents`` hundredths, a
    non-empty creditor name and account (at most 34 characters), text fields within their
    lengths and made only of ``ascii_text_chars`` (the ASCII characters :func:`check_text`
    allows), a routing number whose cached verdict in ``routing_verdicts`` is ``None``, and an
    EndToEndId of 1 to 15 ASCII digits that ``first_sightings`` (DU04 memory) counts as new,
    gets no finding from :meth:`TransactionRules.check`, and the validator would give it
    ``debtor_account`` and ``execution_date``. An entry that fails the screen goes through
    :meth:`TransactionRules.check` like any other, which words the findings.

    ``first_sightings`` takes the EndToEndIds of entries that passed every other condition, in
    file order, and says how many of them, from the first, were new; the entry it stopped at
    was seen before. The reader must ask it last, and before any entry after those goes through
    :meth:`check` (DU04 flags the later of two occurrences, so the memory must see the ids in
    file order); the entry it stopped at goes through :meth:`check`, which finds the repeat
    again, and the ones after it are asked about anew.

    A CSV row (currency and execution-date text picking the screen) passes when it has no format
    finding, an amount written as ASCII ``digits.dd`` (so its cents add up to the same
    :class:`~decimal.Decimal` sums) with ``0 < cents <= max_cents``, a non-empty EndToEndId of
    at most 35 and creditor name of at most 140 characters, remittance text of at most 140 and
    an InstrId of at most 35, all printable (``str.isprintable`` refuses every character
    :func:`check_text` refuses), either an IBAN that :func:`iban_valid` accepts or a
    printable account of 1 to 34 characters with a routing number or BIC, a routing number and
    a BIC (when given) whose cached verdicts in ``routing_verdicts`` / ``bic_verdicts`` are
    ``None``, a debtor account that is empty or one of ``debtor_accounts``, and, last, an
    EndToEndId that ``first_sightings_of_any`` counts as new (asked as ``first_sightings`` is,
    for ids of any form).
    """

    max_cents: int
    routing_verdicts: Mapping[str, Finding | None]
    first_sightings: Callable[[Sequence[str]], int]
    ascii_text_chars: bytes
    debtor_account: str
    execution_date: date | None
    # for CSV rows (see :meth:`file_pipeline.formats.csv_reader.CsvReader.screened`)
    bic_verdicts: Mapping[str, Finding | None]
    debtor_accounts: frozenset[str]
    first_sightings_of_any: Callable[[Sequence[str]], int]


class TransactionRules:
    """All transaction rules bound to reference data, one client and a clock reading.

    Stateful only for DU04 (EndToEndIds seen in this file). Date and currency
    verdicts are cached per (currency, date) since files repeat them a lot.
    """

    def __init__(self, ref: ReferenceData, client: Client, now: datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.ref = ref
        self.client = client
        self.now = now
        self._seen_e2e = SeenIds()
        self._date_cache: dict[tuple[str, date], Finding | None] = {}
        self._ccy_cache: dict[str, Finding | None] = {}
        self._bic_cache: dict[str, Finding | None] = {}
        self._routing_cache: dict[str, Finding | None] = {}
        self._earliest: dict[str, date | None] = {}
        self._amount_params: dict[str, tuple[Decimal, Decimal | None, Decimal | None] | None] = {}
        self._debtor_accounts = frozenset(account.id for account in client.accounts)

    def entry_screen(self, currency: str, requested: date | None, date_text: str) -> EntryScreen | None:
        """A cheap test for the entries of one batch (currency and execution date fixed), or
        ``None`` when something batch-wide would already give a finding (then every entry goes
        through :meth:`check`). See :class:`EntryScreen` for what an entry must still show."""
        ccy_finding = self._ccy_cache.get(currency, False)
        if ccy_finding is False:
            ccy_finding = self._ccy_cache[currency] = check_currency(currency, self.ref, self.client)
        params = self._amount_fast_path(currency)
        if ccy_finding is not None or params is None or params[0] > Decimal("0.01"):
            return None  # pragma: no cover - the currency is refused or has fewer than 2 decimals
        max_cents = None
        for limit in params[1:]:
            if limit is None:
                continue
            if not limit.is_finite():
                return None  # pragma: no cover - reference data never holds an infinite limit
            cents = int((limit * 100).to_integral_value(rounding=ROUND_FLOOR))
            max_cents = cents if max_cents is None else min(max_cents, cents)
        default = self.client.default_account(currency)
        if not self.client.accounts or default is None:
            return None
        if requested is None:
            if date_text:
                return None  # DT01 for every entry
            requested = self.default_execution_date(currency)
        else:
            key = (currency, requested)
            if key not in self._date_cache:
                self._date_cache[key] = check_execution_date(requested, currency, self.ref, self.client, self.now)
            if self._date_cache[key] is not None:
                return None
        return EntryScreen(
            max_cents=10**15 - 1 if max_cents is None else min(max_cents, 10**15 - 1),
            routing_verdicts=self._routing_cache,
            first_sightings=self._seen_e2e.add_new_digits,
            ascii_text_chars=_ASCII_TEXT_CHARS,
            debtor_account=default.id,
            execution_date=requested,
            bic_verdicts=self._bic_cache,
            debtor_accounts=self._debtor_accounts,
            first_sightings_of_any=self._seen_e2e.add_new,
        )

    def default_execution_date(self, currency: str) -> date | None:
        if currency not in self._earliest:
            self._earliest[currency] = earliest_execution_date(self.ref, self.client, currency, self.now)
        return self._earliest[currency]

    def _amount_fast_path(self, ccy: str) -> tuple[Decimal, Decimal | None, Decimal | None] | None:
        """(quantum of the minor unit, currency maximum, client limit) for a known currency."""
        if ccy not in self._amount_params:
            currency = self.ref.currencies.get(ccy)
            self._amount_params[ccy] = (
                None
                if currency is None
                else (
                    Decimal(1).scaleb(-currency.minor_units),
                    currency.max_amount,
                    self.client.tx_limits.get(ccy),
                )
            )
        return self._amount_params[ccy]

    def check(self, tx: Transaction) -> list[Finding]:
        """All findings for ``tx`` (empty list: the transaction is valid).

        A rule added here must also be known to :class:`EntryScreen` (the NACHA fast path lets
        an entry skip this method only when the screen proves it clean, and so does the CSV
        reader): extend the screen, or make it refuse what the new rule looks at.
        ``test_nacha.py`` and ``test_csv_reader.py`` compare both paths.
        """
        out: list[Finding] = list(tx.format_findings) if tx.format_findings else []
        if tx.kind != "credit":
            out.append(Finding(R.AG03, f"{tx.kind} entries are not credit transfers and are not supported"))
        e2e, name, remit, instr = tx.end_to_end_id, tx.creditor_name, tx.remittance_info, tx.instruction_id
        # text fields: one regex pass over all of them; per-field detail only when something is off
        if (
            len(e2e) > 35
            or len(name) > 140
            or len(remit) > 140
            or len(instr) > 35
            or _XML_BAD_CHARS.search(e2e + name + remit + instr)
        ):
            for value, limit, what, code in (
                (e2e, 35, "EndToEndId", R.FF08),
                (instr, 35, "InstrId", R.CH16),
                (name, 140, "creditor name", R.CH16),
                (remit, 140, "remittance information", R.CH16),
            ):
                f = check_text(value, limit, what, code)
                if f:
                    out.append(f)
        if not e2e:
            out.append(Finding(R.FF08, "EndToEndId is missing"))
        elif e2e != NOT_PROVIDED and not self._seen_e2e.add(e2e):
            out.append(Finding(R.DU04, f"EndToEndId {e2e!r} occurs more than once in the file"))
        # currency and amount
        ccy = tx.currency
        if ccy in self._ccy_cache:
            f = self._ccy_cache[ccy]
        else:
            f = self._ccy_cache[ccy] = check_currency(ccy, self.ref, self.client)
        if f:
            out.append(f)
        amount = tx.amount
        params = self._amount_fast_path(ccy)
        if (
            params is not None
            and amount is not None
            and amount.is_finite()
            and amount > 0
            and amount.adjusted() < 13
            and amount.quantize(params[0]) == amount
            and (params[1] is None or amount <= params[1])
            and (params[2] is None or amount <= params[2])
        ):
            pass  # the common case: positive, right decimals, within maxima
        else:
            out.extend(check_amount(amount, ccy, self.ref, self.client, tx.amount_text))
        # parties
        if not name.strip():
            out.append(Finding(R.BE22, "creditor name is missing"))
        iban = tx.creditor_iban
        if iban and not tx.creditor_routing and not tx.creditor_bic:
            # the common case, inline: an IBAN and nothing else
            if not iban_valid(iban):
                out.append(Finding(R.AC01, f"creditor IBAN {iban!r}: {iban_problem(iban)}"))
        else:
            self._check_creditor_account(tx, out)
        debtor = tx.debtor_account
        if debtor:
            if debtor not in self._debtor_accounts:
                self._check_debtor_account(tx, out)
        elif not self.client.accounts:  # no account given: the client's default one is used
            self._check_debtor_account(tx, out)
        # execution date
        d = tx.requested_execution_date
        if d is None and tx.date_text:
            out.append(Finding(R.DT01, f"requested execution date {tx.date_text!r} is not a valid date"))
        elif d is not None:
            key = (ccy, d)
            if key in self._date_cache:
                f = self._date_cache[key]
            else:
                f = self._date_cache[key] = check_execution_date(d, ccy, self.ref, self.client, self.now)
            if f:
                out.append(f)
        return out

    def _check_creditor_account(self, tx: Transaction, out: list[Finding]) -> None:
        if tx.creditor_iban:
            f = check_iban(tx.creditor_iban)
            if f:
                out.append(f)
        elif tx.creditor_account:
            acct = tx.creditor_account
            if len(acct) > 34 or _XML_BAD_CHARS.search(acct):
                out.append(
                    Finding(
                        R.AC01,
                        f"creditor account {acct[:40]!r} is longer than 34 characters "
                        "or has control characters",
                    )
                )
            if not tx.creditor_routing and not tx.creditor_bic:
                out.append(
                    Finding(
                        R.RC01, "creditor agent (BIC or ABA routing number) is missing for a non-IBAN account"
                    )
                )
        else:
            out.append(Finding(R.AC01, "creditor account (IBAN or account number) is missing"))
        if tx.creditor_routing:
            r = tx.creditor_routing
            if r not in self._routing_cache:
                self._routing_cache[r] = check_routing(r, self.ref)
            if self._routing_cache[r]:
                out.append(self._routing_cache[r])
        if tx.creditor_bic:
            b = tx.creditor_bic
            if b not in self._bic_cache:
                self._bic_cache[b] = check_bic(b, self.ref)
            if self._bic_cache[b]:
                out.append(self._bic_cache[b])

    def _check_debtor_account(self, tx: Transaction, out: list[Finding]) -> None:
        if tx.debtor_account:
            if self.client.account(tx.debtor_account) is None:
                out.append(
                    Finding(
                        R.AC02,
                        f"debtor account {tx.debtor_account!r} is not an account of "
                        f"client {self.client.client_id}",
                    )
                )
        elif self.client.default_account(tx.currency) is None:
            out.append(Finding(R.AC02, f"client {self.client.client_id} has no debtor account"))


# --------------------------------------------------------------------------- file rules
def check_format_allowed(fmt: FileFormat, client: Client, layout_name: str = "") -> Finding | None:
    name = layout_name if fmt is FileFormat.CSV else fmt.family
    if name not in client.allowed_formats:
        return Finding(R.FF01, f"format {name or fmt.value} is not agreed for client {client.client_id}")
    return None


def check_duplicate_msg_id(msg_id: str, seen_msg_ids: Container[str]) -> Finding | None:
    """DU01: ``seen_msg_ids`` is whatever store the adapter keeps of earlier files."""
    if msg_id and msg_id in seen_msg_ids:
        return Finding(R.DU01, f"MsgId {msg_id!r} was already used in an earlier file")
    return None


def check_pain001_controls(header: FileHeader) -> list[Finding]:
    """Group header and PmtInf NbOfTxs/CtrlSum vs. recomputed values; DU02 duplicate PmtInfId."""
    out: list[Finding] = []
    if header.declared_nb_of_txs is not None and header.declared_nb_of_txs != header.nb_of_txs:
        out.append(
            Finding(
                R.AM19,
                f"GrpHdr/NbOfTxs declares {header.declared_nb_of_txs}, the file has {header.nb_of_txs}",
            )
        )
    if header.declared_ctrl_sum is not None and header.declared_ctrl_sum != header.ctrl_sum:
        out.append(
            Finding(
                R.AM16,
                f"GrpHdr/CtrlSum declares {header.declared_ctrl_sum}, "
                f"the amounts add up to {header.ctrl_sum}",
            )
        )
    seen: set[str] = set()
    for block in header.blocks:
        if block.block_id in seen:
            out.append(Finding(R.DU02, f"PmtInfId {block.block_id!r} is used by more than one block"))
        seen.add(block.block_id)
        if block.declared_nb_of_txs is not None and block.declared_nb_of_txs != block.nb_of_txs:
            out.append(
                Finding(
                    R.AM20,
                    f"PmtInf {block.block_id}: NbOfTxs declares "
                    f"{block.declared_nb_of_txs}, the block has {block.nb_of_txs}",
                )
            )
        if block.declared_ctrl_sum is not None and block.declared_ctrl_sum != block.ctrl_sum:
            out.append(
                Finding(
                    R.AM17,
                    f"PmtInf {block.block_id}: CtrlSum declares "
                    f"{block.declared_ctrl_sum}, the amounts add up to {block.ctrl_sum}",
                )
            )
    return out


def _hash10(value: int) -> int:
    return value % 10_000_000_000


def check_nacha_controls(header: FileHeader) -> list[Finding]:
    """Batch control (8) and file control (9) records vs. recomputed counts, hash and totals."""
    N = NACHA_ERROR_CODES
    out: list[Finding] = []
    for b in header.blocks:
        name = f"batch {b.block_id}"
        if b.declared_entry_addenda != b.entry_addenda:
            out.append(
                Finding(
                    N["batch-entry-count"],
                    f"{name}: control entry/addenda count {b.declared_entry_addenda} != {b.entry_addenda}",
                )
            )
        if b.declared_entry_hash != _hash10(b.entry_hash):
            out.append(
                Finding(
                    N["batch-entry-hash"],
                    f"{name}: control entry hash {b.declared_entry_hash} != {_hash10(b.entry_hash)}",
                )
            )
        if b.declared_debit_cents != b.debit_cents:
            out.append(
                Finding(
                    N["batch-totals"],
                    f"{name}: control total debit {b.declared_debit_cents} != {b.debit_cents} (cents)",
                )
            )
        if b.declared_credit_cents != b.credit_cents:
            out.append(
                Finding(
                    N["batch-totals"],
                    f"{name}: control total credit {b.declared_credit_cents} != {b.credit_cents} (cents)",
                )
            )
    fc = header.nacha
    if fc is None:
        return out
    entry_addenda = sum(b.entry_addenda for b in header.blocks)
    entry_hash = _hash10(sum(b.entry_hash for b in header.blocks))
    debit = sum(b.debit_cents for b in header.blocks)
    credit = sum(b.credit_cents for b in header.blocks)
    if fc.declared_batch_count != len(header.blocks):
        out.append(
            Finding(
                N["file-batch-count"],
                f"file control batch count {fc.declared_batch_count} != {len(header.blocks)}",
            )
        )
    if fc.declared_entry_addenda != entry_addenda:
        out.append(
            Finding(
                N["file-entry-count"],
                f"file control entry/addenda count {fc.declared_entry_addenda} != {entry_addenda}",
            )
        )
    if fc.declared_entry_hash != entry_hash:
        out.append(
            Finding(N["file-entry-hash"], f"file control entry hash {fc.declared_entry_hash} != {entry_hash}")
        )
    if fc.declared_debit_cents != debit:
        out.append(
            Finding(N["file-totals"], f"file control total debit {fc.declared_debit_cents} != {debit}")
        )
    if fc.declared_credit_cents != credit:
        out.append(
            Finding(N["file-totals"], f"file control total credit {fc.declared_credit_cents} != {credit}")
        )
    blocks = -(-fc.record_count // 10)
    if fc.declared_block_count != blocks:
        out.append(
            Finding(N["block-count"], f"file control block count {fc.declared_block_count} != {blocks}")
        )
    return out


def check_file_limits(totals: Mapping[str, Decimal], client: Client) -> list[Finding]:
    """Per-file limit per currency (sum of the file's accepted-so-far amounts)."""
    out = []
    for ccy, total in sorted(totals.items()):
        limit = client.file_limits.get(ccy)
        if limit is not None and total > limit:
            out.append(
                Finding(R.AM14, f"file total {total} {ccy} exceeds the client's per-file limit {limit}")
            )
    return out


def check_file_controls(header: FileHeader) -> list[Finding]:
    if header.format is FileFormat.NACHA:
        return check_nacha_controls(header)
    if header.format in (FileFormat.PAIN001_03, FileFormat.PAIN001_09):
        return check_pain001_controls(header)
    return []


def first_codes(findings: Iterable[Finding]) -> list[str]:
    """Codes in order, for compact assertions and logs."""
    return [f.code.value for f in findings]
