"""Publisher authentication: the ``aeg-sas-key`` and ``aeg-sas-token`` headers.

Contract: ``check_publisher(headers, topic, request_path)`` returns ``None`` when the
request may publish to ``topic`` and otherwise an ``AuthFailure`` carrying the message
for the 401 body. It is pure (no I/O) and constant-time in its comparisons.

Token format (the one ``azure.eventgrid.generate_sas`` produces and Azure checks)::

    r={url-encoded resource}&e={url-encoded expiry}&s={url-encoded signature}

where the signature is base64(HMAC-SHA256(base64-decoded key, "r=...&e=...")) over the
two fields exactly as they appear in the token. The resource is the topic endpoint URL;
only its path is compared here because local clients reach the same emulator as
``localhost``, ``127.0.0.1`` or a container alias.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

from .config import Topic

KEY_HEADER = "aeg-sas-key"
TOKEN_HEADER = "aeg-sas-token"


@dataclass(frozen=True)
class AuthFailure:
    message: str
    code: str = "Unauthorized"


def check_publisher(
    headers: Mapping[str, str], topic: Topic, request_path: str, host: str
) -> AuthFailure | None:
    key = headers.get(KEY_HEADER)
    if key is not None:
        if any(hmac.compare_digest(key.encode(), k.encode()) for k in topic.keys):
            return None
        return AuthFailure(f"The request authorization key is not authorized for {host.upper()}.")
    token = headers.get(TOKEN_HEADER)
    if token is not None:
        problem = _check_token(token, topic, request_path)
        return None if problem is None else AuthFailure(problem, code="InvalidSas")
    return AuthFailure(
        f"Request must contain one of the '{TOKEN_HEADER}' or '{KEY_HEADER}' or 'Authorization' header."
    )


def _check_token(token: str, topic: Topic, request_path: str) -> str | None:
    fields: dict[str, str] = {}
    for part in token.split("&"):
        name, sep, value = part.partition("=")
        if sep:
            fields[name] = value
    if not {"r", "e", "s"} <= fields.keys():
        return "The SAS token is malformed; expected 'r={resource}&e={expiry}&s={signature}'."

    signed = f"r={fields['r']}&e={fields['e']}".encode("ascii", "replace")
    given = unquote(fields["s"]).encode()
    if not any(hmac.compare_digest(given, _sign(key, signed)) for key in topic.keys):
        return "The SAS token signature does not match any key of this topic."

    expiry = _parse_expiry(unquote(fields["e"]))
    if expiry is None:
        return f"The SAS token expiry {unquote(fields['e'])!r} is not a recognised date-time."
    if expiry <= datetime.now(UTC):
        return f"The SAS token expired at {expiry.isoformat()}."

    resource_path = urlsplit(unquote(fields["r"])).path.rstrip("/").lower()
    if resource_path != request_path.rstrip("/").lower():
        return f"The SAS token was issued for '{unquote(fields['r'])}', not for this endpoint."
    return None


def _sign(key: str, message: bytes) -> bytes:
    try:
        secret = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        # Azure keys are base64; obviously-local keys like "local-eventgrid-key" are not,
        # so sign with their raw bytes rather than make SAS unusable with them.
        secret = key.encode()
    return base64.b64encode(hmac.new(secret, message, hashlib.sha256).digest())


def _parse_expiry(text: str) -> datetime | None:
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        # .NET samples format the expiry with the invariant culture, e.g. "1/31/2030 11:59:59 PM".
        for fmt in ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S"):
            try:
                parsed = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
