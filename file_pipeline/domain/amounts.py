"""Currencies, amounts (minor units, limits, parsing) and the text of free-form fields."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from file_pipeline.domain.model import Finding
from file_pipeline.domain.reason_codes import IsoReason
from file_pipeline.domain.reference import Client, ReferenceData

R = IsoReason


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
XML_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


ASCII_TEXT_CHARS = bytes(c for c in range(128) if not XML_BAD_CHARS.match(chr(c)))


def check_text(value: str, max_len: int, what: str, code: IsoReason = R.CH16) -> Finding | None:
    if len(value) > max_len:
        return Finding(code, f"{what} is {len(value)} characters, at most {max_len} allowed")
    if XML_BAD_CHARS.search(value):
        return Finding(code, f"{what} contains control characters")
    return None
