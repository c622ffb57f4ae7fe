"""Small helpers for writing XML text by hand (fast, streaming)."""

from __future__ import annotations

import re
from decimal import Decimal

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def esc(text: str) -> str:
    """Escape text content; drop characters XML 1.0 cannot carry."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if _CONTROL.search(text):
        text = _CONTROL.sub("", text)
    return text


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit]


def chunks(text: str, size: int) -> list[str]:
    """Split a long text into ``size``-character pieces (e.g. AddtlInf is Max105Text)."""
    text = text.strip() or "-"
    return [text[i : i + size] for i in range(0, len(text), size)]


def fmt_decimal(value: Decimal) -> str:
    """Plain (non-exponent) decimal text."""
    return format(value, "f")
