"""HTTP surface: HTTP-triggered functions, the admin status endpoint and the system webhooks.

Contract:

* Functions are served under ``/{routePrefix}/`` (host.json ``extensions.http.routePrefix``,
  default ``api``; ``""`` serves them at the root). A function's ``route`` defaults to its
  name. Templates follow ASP.NET Core routing as the Functions host does: ``{p}``,
  optional ``{p?}``, defaults ``{p=value}``, catch-all ``{*p}``, constraints ``{p:int}``
  (``int long bool guid alpha double float decimal datetime min() max() range() length()
  minlength() maxlength() regex()``), literals matched case-insensitively, a trailing slash
  ignored. When several routes match, literal segments win over parameters.
* ``methods`` restrict a route; a request whose method no route allows is a 404, as in the
  host. ``authLevel`` is not enforced (``func start`` does not enforce it either).
* The function receives a ``func.HttpRequest`` (method, full URL, headers, query params with
  repeated keys joined by ``,``, route params as strings, body bytes). Its
  ``func.HttpResponse`` (returned, or set on a named ``http`` output) maps back: status,
  headers (``Location`` and repeated ``Set-Cookie`` included), ``mimetype``/``charset`` as
  ``Content-Type`` unless a header sets it, body. A returned ``str`` is a 200
  ``text/plain``; ``None`` is a 204.
* A function that raises answers 500 ``application/problem+json`` with ``title``,
  ``status``, ``detail`` and ``invocationId``; the detail never carries the exception's text
  (it may echo hostile input or name internals): the traceback goes to the log.
* ``GET /admin/host/status`` answers 200 ``{"state": "Running", ...}`` once every trigger
  listener is running and 503 ``{"state": "Initialized"}`` before that (and ``"Stopping"``
  during shutdown). ``GET /admin/functions`` lists the binding table, each function with
  ``isDisabled``.
* Until every trigger listener is running, a request for an HTTP function waits (up to
  ``STARTUP_HOLD_SECONDS``), as the Functions host holds requests while it starts, then gets
  503 ``application/problem+json``; so ``GET /api/health`` answers 200 only once every
  trigger is listening. While the host stops, new requests get 503.
* A function disabled with ``AzureWebJobs.<name>.Disabled`` is not served: its route answers
  404, as Azure answers any caller without the master key (devhost has no keys).
* ``/runtime/webhooks/eventgrid`` is handled by :mod:`devhost.eventgrid`, and so is
  ``/runtime/webhooks/blobs`` (BlobCreated events for blob triggers with ``source=EventGrid``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import azure.functions as func
from aiohttp import web

from .invoke import InvocationFailed, Invoker
from .loader import HTTP_OUTPUT, FunctionEntry, LoadError
from .settings import HTTP_BODY_TIMEOUT_SECONDS

log = logging.getLogger("devhost.http")

# The Functions host's default request body limit (100 MB).
MAX_BODY_BYTES = 104_857_600
STARTUP_HOLD_SECONDS = 60.0  # how long a request waits for the host to finish starting

_PARAM = re.compile(r"\{([^{}]+)\}")
_CONSTRAINT = re.compile(r"^(\w+)(?:\((.*)\))?$")


def _check_int(value: str, bits: int) -> bool:
    if not re.fullmatch(r"[+-]?\d+", value):
        return False
    return -(1 << (bits - 1)) <= int(value) < 1 << (bits - 1)


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return value.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity")


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _constraint(name: str, arg: str | None, where: str) -> Callable[[str], bool]:
    simple: dict[str, Callable[[str], bool]] = {
        "int": lambda v: _check_int(v, 32),
        "long": lambda v: _check_int(v, 64),
        "bool": lambda v: v.lower() in ("true", "false"),
        "guid": lambda v: bool(re.fullmatch(r"\{?[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}\}?", v)),
        "alpha": lambda v: bool(re.fullmatch(r"[A-Za-z]+", v)),
        "double": _is_float,
        "float": _is_float,
        "decimal": _is_float,
        "datetime": _is_datetime,
    }
    if name in simple and arg is None:
        return simple[name]
    try:
        if name == "min" and arg is not None:
            low = int(arg)
            return lambda v: _check_int(v, 64) and int(v) >= low
        if name == "max" and arg is not None:
            high = int(arg)
            return lambda v: _check_int(v, 64) and int(v) <= high
        if name == "range" and arg is not None:
            low, high = (int(x) for x in arg.split(","))
            return lambda v: _check_int(v, 64) and low <= int(v) <= high
        if name == "length" and arg is not None:
            if "," in arg:
                shortest, longest = (int(x) for x in arg.split(","))
                return lambda v: shortest <= len(v) <= longest
            exact = int(arg)
            return lambda v: len(v) == exact
        if name == "minlength" and arg is not None:
            shortest = int(arg)
            return lambda v: len(v) >= shortest
        if name == "maxlength" and arg is not None:
            longest = int(arg)
            return lambda v: len(v) <= longest
        if name == "regex" and arg is not None:
            pattern = re.compile(arg, re.IGNORECASE)
            return lambda v: bool(pattern.search(v))
    except (ValueError, re.error) as exc:
        raise LoadError(f"{where}: bad route constraint {name}({arg}): {exc}") from None
    raise LoadError(f"{where}: route constraint {name!r} is not supported")


@dataclass
class _Param:
    name: str
    optional: bool = False
    default: str | None = None
    catch_all: bool = False
    checks: list[Callable[[str], bool]] = field(default_factory=list)


def _parse_param(text: str, where: str) -> _Param:
    catch_all = text.startswith("*")
    text = text.lstrip("*")
    default = None
    if "=" in text:
        text, default = text.split("=", 1)
    optional = text.endswith("?")
    text = text.rstrip("?")
    name, *constraints = text.split(":")
    if not re.fullmatch(r"[A-Za-z_]\w*", name):
        raise LoadError(f"{where}: bad route parameter name {name!r}")
    checks = []
    for constraint in constraints:
        optional = optional or constraint.endswith("?")
        match = _CONSTRAINT.match(constraint.rstrip("?"))
        if not match:
            raise LoadError(f"{where}: bad route constraint {constraint!r}")
        checks.append(_constraint(match.group(1).lower(), match.group(2), where))
    return _Param(name, optional or default is not None or catch_all, default, catch_all, checks)


@dataclass
class Route:
    """One compiled route template."""

    entry: FunctionEntry
    template: str
    methods: frozenset[str] | None
    pattern: re.Pattern[str]
    params: dict[str, _Param]
    precedence: tuple[int, ...]

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        if not found:
            return None
        values: dict[str, str] = {}
        for group, param in self.params.items():
            value = found.group(group)
            if value is None or value == "":
                if param.default is not None:
                    values[param.name] = param.default
                continue
            if not all(check(value) for check in param.checks):
                return None
            values[param.name] = value
        return values


def compile_route(entry: FunctionEntry, route_prefix: str) -> Route:
    template = entry.trigger.get("route")
    if template is None:
        template = entry.name
    template = template.strip("/")
    where = f"function {entry.name!r} route {template!r}"
    regex = "/" + re.escape(route_prefix) if route_prefix else ""
    params: dict[str, _Param] = {}
    precedence: list[int] = []
    segments = template.split("/") if template else []
    for index, segment in enumerate(segments):
        if not segment:
            raise LoadError(f"{where}: empty path segment")
        whole = _PARAM.fullmatch(segment)
        if whole:
            param = _parse_param(whole.group(1), where)
            group = f"p{len(params)}"
            params[group] = param
            if param.catch_all:
                if index != len(segments) - 1:
                    raise LoadError(f"{where}: a catch-all parameter must be the last segment")
                regex += f"(?:/(?P<{group}>.*))?"
                precedence.append(5)
            elif param.optional:
                regex += f"(?:/(?P<{group}>[^/]+))?"
                precedence.append(4)
            else:
                regex += f"/(?P<{group}>[^/]+)"
                precedence.append(2 if param.checks else 3)
            continue
        piece, position = "", 0
        for m in _PARAM.finditer(segment):
            piece += re.escape(segment[position:m.start()])
            param = _parse_param(m.group(1), where)
            if param.optional:
                raise LoadError(f"{where}: an optional or catch-all parameter must be a whole segment")
            group = f"p{len(params)}"
            params[group] = param
            piece += f"(?P<{group}>[^/]+?)"
            position = m.end()
        literal_only = position == 0
        piece += re.escape(segment[position:])
        regex += "/" + piece
        precedence.append(1 if literal_only else 2)
    names = [p.name.lower() for p in params.values()]
    if len(names) != len(set(names)):
        raise LoadError(f"{where}: a route parameter name appears twice")
    # Literal text matches case-insensitively (ASP.NET routing); parameter values keep their case.
    pattern = re.compile(regex or "/?", re.IGNORECASE)
    methods_prop = entry.trigger.get("methods")
    methods = frozenset(str(m).upper() for m in methods_prop) if methods_prop else None
    return Route(entry, template, methods, pattern, params, tuple(precedence))


def display_url(base: str, route_prefix: str, route: Route) -> str:
    path = "/".join(p for p in (route_prefix, route.template) if p)
    return f"{base}/{path}"


class HttpFront:
    """Builds the aiohttp application that serves HTTP triggers and the system endpoints."""

    def __init__(self, entries: list[FunctionEntry], route_prefix: str, invoker: Invoker, host_id: str,
                 eventgrid_handler: Callable[[web.Request], Any] | None,
                 disabled: frozenset[str] = frozenset(), body_timeout: float = HTTP_BODY_TIMEOUT_SECONDS,
                 blobs_handler: Callable[[web.Request], Any] | None = None) -> None:
        self.route_prefix = route_prefix
        self.body_timeout = body_timeout
        # Every route is compiled (a bad template is a startup error even on a disabled
        # function); only the enabled ones are served.
        self.routes = sorted(
            (compile_route(e, route_prefix) for e in entries if e.trigger.type == "httpTrigger"),
            key=lambda r: r.precedence,
        )
        self._served = [r for r in self.routes if r.entry.name not in disabled]
        self._disabled = disabled
        self._invoker = invoker
        self._entries = entries
        self._host_id = host_id
        self._eventgrid = eventgrid_handler
        self._blobs = blobs_handler
        self._started = time.monotonic()
        self._state = "Initialized"
        self._running = asyncio.Event()

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        self._state = value
        if value == "Running":
            self._running.set()
        else:
            self._running.clear()

    def build(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/admin/host/status", self._status)
        app.router.add_get("/admin/functions", self._functions)
        if self._eventgrid is not None:
            app.router.add_route("*", "/runtime/webhooks/eventgrid", self._eventgrid)
            app.router.add_route("*", "/runtime/webhooks/EventGrid", self._eventgrid)
        if self._blobs is not None:
            app.router.add_route("*", "/runtime/webhooks/blobs", self._blobs)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def _status(self, request: web.Request) -> web.Response:
        body = {
            "id": self._host_id,
            "state": self.state,
            "version": "devhost",
            "processUptime": int((time.monotonic() - self._started) * 1000),
        }
        return web.json_response(body, status=200 if self.state == "Running" else 503)

    async def _functions(self, request: web.Request) -> web.Response:
        return web.json_response([
            {"name": e.name, "trigger": e.trigger.type, "outputs": [b.type for b in e.outputs],
             "isDisabled": e.name in self._disabled}
            for e in self._entries
        ])

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        if path in ("", "/") and not any(r.match("/") is not None for r in self._served):
            return web.Response(text="Your Functions app is up and running (devhost).\n")
        for route in self._served:
            params = route.match(path)
            if params is None:
                continue
            if route.methods is not None and request.method.upper() not in route.methods:
                continue
            if not await self._until_running():
                return _problem(503, "Service Unavailable", f"the host is not running (state: {self.state})",
                                request.path, None)
            return await self._invoke(route, request, params)
        return web.Response(status=404)

    async def _until_running(self) -> bool:
        if self._running.is_set():
            return True
        if self.state != "Initialized":
            return False  # stopping: no new work
        try:
            await asyncio.wait_for(self._running.wait(), STARTUP_HOLD_SECONDS)
        except TimeoutError:
            return False
        return True

    async def _invoke(self, route: Route, request: web.Request, route_params: dict[str, str]) -> web.StreamResponse:
        body = await read_body(request, self.body_timeout)
        if isinstance(body, web.Response):
            return body
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        params: dict[str, str] = {}
        for name, value in request.query.items():
            params[name] = f"{params[name]},{value}" if name in params else value
        http_request = func.HttpRequest(
            method=request.method, url=str(request.url), headers=headers, params=params,
            route_params=route_params, body=body,
        )
        entry = route.entry
        reason = "This function was programmatically called via the host APIs."
        try:
            result = await self._invoker.invoke(entry, http_request, reason)
        except InvocationFailed as failed:
            # Like the Functions host: the caller learns nothing of the exception (it may name
            # internals or echo hostile input); the log has it under the invocation id.
            return _problem(500, "Internal Server Error",
                            f"the function failed; the host log has the details of invocation {failed.invocation_id}",
                            request.path, failed.invocation_id)
        named = next((b.name for b in entry.outputs if b.type == HTTP_OUTPUT and b.name != "$return"), None)
        returned = result.outputs.get(named) if named else result.value
        try:
            return to_aiohttp(returned)
        except TypeError as exc:
            log.error("function %s returned what is not an HTTP response: %s", entry.name, exc)
            return _problem(500, "Internal Server Error",
                            f"the function's return value is not an HTTP response (invocation {result.invocation_id})",
                            request.path, result.invocation_id)


def to_aiohttp(value: Any) -> web.Response:
    if value is None:
        return web.Response(status=204)
    if isinstance(value, str):
        return web.Response(status=200, body=value.encode("utf-8"), content_type="text/plain", charset="utf-8")
    if not isinstance(value, func.HttpResponse):
        raise TypeError(f"an HTTP function must return func.HttpResponse or str, got {type(value).__name__}")
    response = web.Response(status=value.status_code, body=value.get_body())
    has_type = False
    for name, header in value.headers.items():
        response.headers.add(name, header)
        has_type = has_type or name.lower() == "content-type"
    if not has_type:
        # The same rule as azure-functions' HttpResponseConverter: charset only for text/*.
        mimetype = value.mimetype
        response.headers["Content-Type"] = (
            f"{mimetype}; charset={value.charset}" if mimetype.startswith("text/") else mimetype
        )
    return response


async def read_body(request: web.Request, timeout: float) -> bytes | web.Response:
    """The whole body, or the response that refuses it and closes the connection: 413 at once
    for a declared length over the limit (nothing is read), 408 when it does not arrive in time."""
    declared = request.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        refusal = _problem(413, "Payload Too Large", f"the body is {declared} bytes; at most {MAX_BODY_BYTES}",
                           request.path, None)
    else:
        try:
            return await asyncio.wait_for(request.read(), timeout)
        except TimeoutError:
            refusal = _problem(408, "Request Timeout", f"the request body did not arrive within {timeout:g} s",
                               request.path, None)
        except web.HTTPRequestEntityTooLarge:
            refusal = _problem(413, "Payload Too Large", f"the body is over {MAX_BODY_BYTES} bytes", request.path,
                               None)
    refusal.force_close()
    return refusal


def _problem(status: int, title: str, detail: str, instance: str, invocation_id: str | None) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, "instance": instance,
            "invocationId": invocation_id or str(uuid.uuid4())}
    return web.Response(status=status, body=json.dumps(body).encode("utf-8"),
                        content_type="application/problem+json")
