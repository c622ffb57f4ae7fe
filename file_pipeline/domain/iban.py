"""IBANs: the country registry (lengths and BBAN shapes), the mod-97 check, and the finding
(``AC01``) for an IBAN that fails them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from file_pipeline.domain.model import Finding
from file_pipeline.domain.reason_codes import IsoReason

R = IsoReason


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
    out: dict[str, tuple[Callable[[str], re.Match[str] | None], str, bool]] = {}
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
