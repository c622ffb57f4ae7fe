"""Blob names come from outside: check them before deriving anything from them.

Work files are never named after the blob: use server-side ids (e.g. the
Event Grid event id) and keep the original name only as data.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_NAME = 1024


class UnsafeName(ValueError):
    pass


def check_blob_name(name: str) -> str:
    """Return ``name`` if it is a safe relative blob path, else raise :class:`UnsafeName`."""
    if not name or len(name) > MAX_NAME:
        raise UnsafeName("blob name is empty or longer than 1024 characters")
    if _CONTROL.search(name):
        raise UnsafeName("blob name contains NUL or control characters")
    if "\\" in name:
        raise UnsafeName("blob name contains a backslash")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        raise UnsafeName("blob name is an absolute path")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise UnsafeName("blob name has an empty, '.' or '..' path segment")
    return name
