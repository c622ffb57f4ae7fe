"""Event Grid trigger: the system webhook Event Grid delivers to, as the host's extension answers it.

Contract (``/runtime/webhooks/eventgrid?functionName=NAME``; in Azure the URL also carries
the ``eventgrid_extension`` system key as ``code``, which devhost does not check, like
``func start``):

* Unknown, missing or disabled ``functionName`` → 404 ``cannot find function: 'NAME'``.
* ``OPTIONS`` (CloudEvents abuse-protection handshake) → 200 with ``WebHook-Allowed-Origin``
  set to the request's ``WebHook-Request-Origin`` when it is an Azure cloud's Event Grid
  origin, else ``eventgrid.azure.net`` — the extension's rule.
* ``aeg-event-type: SubscriptionValidation`` → 200 ``{"validationResponse": CODE}`` (the code
  from ``[0].data.validationCode``, or from a CloudEvent object's possibly double-encoded
  ``data``).
* ``aeg-event-type: Notification`` → the body (an array, or one structured-mode CloudEvent
  object) is split into events and the function runs once per event, all concurrently.
  202 when every run succeeded; 500 with the first error's message otherwise, so Event Grid
  retries the delivery. Each event reaches the function as azure-functions' own converter
  builds it: ``func.EventGridEvent`` for Event Grid schema, ``azure.functions`` ``CloudEvent``
  when the event has ``specversion``; a ``str`` annotation gets the event's JSON text.
* ``aeg-event-type: Unsubscribe`` → 202; any other or no ``aeg-event-type`` → 400.
* A body that is not JSON → 400 (the host would answer 500 and be retried for a day; 400
  makes Event Grid dead-letter it at once, which is what a malformed delivery deserves).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from .blobs import BlobListener
from .http import read_body
from .invoke import InvocationFailed, Invoker
from .loader import EVENT_GRID_TRIGGER, FunctionEntry
from .settings import HTTP_BODY_TIMEOUT_SECONDS

_KNOWN_ORIGINS = {
    "eventgrid.azure.net", "eventgrid.azure.us", "eventgrid.azure.eaglex.ic.gov",
    "eventgrid.azure.microsoft.scloud", "eventgrid.azure.cn",
}
_DEFAULT_ORIGIN = "eventgrid.azure.net"
BLOB_CREATED = "Microsoft.Storage.BlobCreated"


def webhook_url(base: str, entry: FunctionEntry) -> str:
    return f"{base}/runtime/webhooks/eventgrid?functionName={entry.name}"


def decode_event(entry: FunctionEntry, event: Any) -> Any:
    text = json.dumps(event)
    annotation = entry.annotations.get(entry.trigger.name)
    if annotation is str:
        return text
    if annotation is bytes:
        return text.encode("utf-8")
    return EventGridEventInConverter.decode(meta.Datum(text, "json"), trigger_metadata=None)


class EventGridWebhook:
    def __init__(self, entries: list[FunctionEntry], invoker: Invoker,
                 body_timeout: float = HTTP_BODY_TIMEOUT_SECONDS) -> None:
        self._body_timeout = body_timeout
        self._functions = {e.name.lower(): e for e in entries if e.trigger.type == EVENT_GRID_TRIGGER}
        self._invoker = invoker

    async def handle(self, request: web.Request) -> web.Response:
        name = request.query.get("functionName", "")
        entry = self._functions.get(name.lower())
        if entry is None:
            return web.Response(status=404, text=f"cannot find function: '{name}'")
        if request.method == "OPTIONS":
            origin = request.headers.get("WebHook-Request-Origin", "")
            allowed = origin if origin in _KNOWN_ORIGINS else _DEFAULT_ORIGIN
            return web.Response(status=200, headers={"WebHook-Allowed-Origin": allowed})
        delivery = await read_delivery(request, self._body_timeout)
        if isinstance(delivery, web.Response):
            return delivery
        reason = f"EventGrid trigger fired at {datetime.now(UTC).isoformat()}"
        runs = [self._run(entry, event, reason) for event in delivery]
        errors = [e for e in await asyncio.gather(*runs) if e is not None]
        if errors:
            return web.Response(status=500, text=errors[0])
        return web.Response(status=202)

    async def _run(self, entry: FunctionEntry, event: Any, reason: str) -> str | None:
        try:
            value = decode_event(entry, event)
        except Exception as exc:  # an event the converter cannot read is this delivery's failure
            return f"cannot decode event: {exc}"
        try:
            await self._invoker.invoke(entry, value, reason)
        except InvocationFailed as failed:
            return str(failed.error)
        return None


async def read_delivery(request: web.Request, body_timeout: float) -> list[Any] | web.Response:
    """The events of a notification, or the answer to give at once (a validation handshake, an
    unsubscribe, a bad request), as the host's Event Grid webhooks answer them."""
    kind = request.headers.get("aeg-event-type", "").lower()
    if kind == "unsubscribe":
        return web.Response(status=202)
    if kind not in ("subscriptionvalidation", "notification"):
        return web.Response(status=400, text="missing or unknown aeg-event-type header")
    raw = await read_body(request, body_timeout)
    if isinstance(raw, web.Response):
        return raw
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return web.Response(status=400, text="the request body is not readable JSON")
    if kind == "subscriptionvalidation":
        code = _validation_code(body)
        if code is None:
            return web.Response(status=400, text="no data.validationCode in the validation event")
        return web.json_response({"validationResponse": code})
    if isinstance(body, dict):
        return [body]
    if isinstance(body, list):
        return body
    return web.Response(status=400, text="the request content must be a JSON object or array")


class BlobEventsWebhook:
    """``/runtime/webhooks/blobs?functionName=Host.Functions.NAME``: where Event Grid delivers
    ``Microsoft.Storage.BlobCreated`` (Event Grid schema) to a blob trigger with
    ``source=EventGrid``, as the host's blob extension takes it. Each event's blob goes through
    the trigger's receipts, tries and poison queue (:meth:`BlobListener.blob_created`); the
    answer (202) does not wait for the function, as the host queues the work before answering.
    Other event types are acknowledged and ignored; an unknown function is 404."""

    def __init__(self, listeners: list[BlobListener], body_timeout: float = HTTP_BODY_TIMEOUT_SECONDS) -> None:
        self._listeners = {listener.entry.name.lower(): listener for listener in listeners if listener.event_grid}
        self._body_timeout = body_timeout

    @property
    def needed(self) -> bool:
        return bool(self._listeners)

    async def handle(self, request: web.Request) -> web.Response:
        name = request.query.get("functionName", "")
        listener = self._listeners.get(name.lower().removeprefix("host.functions."))
        if listener is None:
            return web.Response(status=404, text=f"cannot find function: '{name}'")
        delivery = await read_delivery(request, self._body_timeout)
        if isinstance(delivery, web.Response):
            return delivery
        for event in delivery:
            if not isinstance(event, dict) or event.get("eventType") != BLOB_CREATED:
                continue
            url = (event.get("data") or {}).get("url") if isinstance(event.get("data"), dict) else None
            if not isinstance(url, str):
                return web.Response(status=400, text="a BlobCreated event without data.url")
            await listener.blob_created(url)
        return web.Response(status=202)


def _validation_code(body: Any) -> str | None:
    try:
        if isinstance(body, list):
            return str(body[0]["data"]["validationCode"])
        if isinstance(body, dict):
            data: Any = body.get("data")
            if isinstance(data, str):  # CloudEvent validation events carry data double-encoded
                data = json.loads(data)
            return str(data["validationCode"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return None
