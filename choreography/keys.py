"""What a value must be to become an Azure Table key (PartitionKey or RowKey), in one place.

Azure refuses ``/``, ``\\``, ``#`` and ``?``, the control characters U+0000–U+001F and
U+007F–U+009F, and keys over 1 KiB (UTF-16, as the service stores them); a lone surrogate is
not text at all. A value that breaks these rules can never be stored, so the message carrying
it is a permanent failure (dead-lettered with a reason), never something to retry.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

MAX_KEY_BYTES = 1024
_FORBIDDEN = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")


def table_key_problem(value: object) -> str | None:
    """Why ``value`` cannot be a Table key, or None when it can."""
    if not isinstance(value, str) or not value:
        return "a key must be a non-empty string"
    if _FORBIDDEN.search(value):
        return "a key may not hold '/', '\\', '#', '?' or control characters"
    try:
        size = len(value.encode("utf-16-le"))
    except UnicodeEncodeError:
        return "a key may not hold a lone surrogate"
    if size > MAX_KEY_BYTES:
        return f"a key is at most {MAX_KEY_BYTES} bytes (UTF-16); this one is {size}"
    return None


def _a_table_key(value: str) -> str:
    problem = table_key_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


# A contract field that the receiving service uses as a Table key: refused at decoding, so a
# hostile value is a malformed message (dead-lettered at once), never a storage error retried.
TableKey = Annotated[str, AfterValidator(_a_table_key)]
