"""The HTTP contract of Ingestion, free of any Functions type: request bodies in, responses out.

* ``POST /api/deliveries`` → 202 ``{deliveryId, statusUrl}`` + ``Location``; 400
  ``application/problem+json`` naming every invalid field; 409 when the delivery id was used
  with a different request; 413 over 64 KB; 415 when the media type is not JSON. Nothing is
  published for a rejected request. A body no JSON reader can hold (bad syntax, nesting too
  deep, numbers too long, lone surrogates) is a 400 whose detail is ours, never the parser's.
* ``GET /api/deliveries/{id}`` → 200 ``{deliveryId, status, reason?, history: [{status, at, by}]}``
  or 404.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import ValidationError

from choreography.contracts import DELIVERY_ID_PATTERN, UnreadableJson, invalid_fields, load_json

from .domain import MAX_BODY_BYTES, deadline_problem
from .messages import DeliveryRequest

PROBLEM_JSON = "application/problem+json"
JSON = "application/json"


@dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = JSON

    def body_bytes(self) -> bytes:
        return json.dumps(self.body).encode()


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return Response(status, body, content_type=PROBLEM_JSON)


def _is_json_media_type(content_type: str | None) -> bool:
    if not content_type:
        return True  # a client that says nothing gets the benefit of the doubt; the parse decides
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def parse_submission(body: bytes, content_type: str | None, now: datetime) -> DeliveryRequest | Response:
    """The request in ``body``, or the error response to send instead."""
    if len(body) > MAX_BODY_BYTES:
        return problem(413, "Request body too large", f"the body is {len(body)} bytes; at most {MAX_BODY_BYTES}")
    if not _is_json_media_type(content_type):
        return problem(415, "Unsupported media type", f"send application/json, not {content_type}")
    try:
        document = load_json(body)
    except UnreadableJson as exc:
        return problem(400, "Unreadable JSON", str(exc))
    if not isinstance(document, dict):
        return invalid([{"field": "(body)", "message": "must be a JSON object"}])
    try:
        request = DeliveryRequest.model_validate_json(body, strict=True)
    except ValidationError as exc:
        return invalid(invalid_fields(exc))
    deadline = deadline_problem(request, now)
    if deadline:
        return invalid([{"field": "deadline", "message": deadline}])
    return request


def invalid(errors: list[dict[str, str]]) -> Response:
    names = ", ".join(dict.fromkeys(e["field"] for e in errors))
    return problem(400, "Invalid delivery request", f"invalid fields: {names}", errors=errors)


def status_url(request_url: str, delivery_id: str) -> str:
    """``{request url without query}/{deliveryId}``: absolute, behind whatever host and prefix."""
    parts = urlsplit(request_url)
    path = parts.path.rstrip("/") + "/" + delivery_id
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def accepted(request_url: str, delivery_id: str) -> Response:
    url = status_url(request_url, delivery_id)
    return Response(202, {"deliveryId": delivery_id, "statusUrl": url}, headers={"Location": url})


def unavailable() -> Response:
    response = problem(503, "Service unavailable", "storage or the message bus cannot be reached just now; "
                       "nothing was accepted: send the same request again later")
    return Response(response.status, response.body, headers={"Retry-After": "5"}, content_type=PROBLEM_JSON)


def conflict(delivery_id: str) -> Response:
    return problem(409, "Delivery id already used",
                   f"delivery {delivery_id} was requested with a different body; use a new deliveryId")


def status(view: dict[str, Any] | None, delivery_id: str) -> Response:
    if view is None:
        return not_found(delivery_id)
    return Response(200, view)


def not_found(delivery_id: str) -> Response:
    return problem(404, "No such delivery", f"no delivery {delivery_id!r}")


def valid_delivery_id(delivery_id: str) -> bool:
    return re.fullmatch(DELIVERY_ID_PATTERN, delivery_id) is not None
