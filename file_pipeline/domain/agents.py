"""Creditor agents: BICs (shape and directory) and US routing numbers (ABA check digit and directory)."""

from __future__ import annotations

import re

from file_pipeline.domain.model import Finding
from file_pipeline.domain.reason_codes import IsoReason
from file_pipeline.domain.reference import ReferenceData

R = IsoReason


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


def check_routing(routing: str, ref: ReferenceData) -> Finding | None:
    if not aba_check_digit_ok(routing):
        return Finding(R.RC10, f"routing number {routing!r} fails the ABA check digit (3-7-1)")
    entry = ref.aba.get(routing)
    if entry is None:
        return Finding(R.RC10, f"routing number {routing} is not in the ABA directory")
    if not entry.reachable:
        return Finding(R.RC10, f"routing number {routing} ({entry.name}) is not an active ACH participant")
    return None
