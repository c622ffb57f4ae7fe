"""Wire settings, the binding table, the listeners and the HTTP front together; run until signalled.

Contract of :func:`run` (what ``python -m devhost`` does):

1. Read local settings (exit 2 on a problem) and export them into ``os.environ`` before the
   app is imported; ``--port`` beats ``Host.LocalHttpPort`` beats 7071.
2. Read host.json, import ``function_app.py``, build the binding table, resolve every
   connection and output setting, compile every route. A problem the user must fix exits 2
   with one line naming it; an exception raised while importing the app exits 1 with its
   traceback.
3. Listen for HTTP (a port in use exits 1), print the function list the way ``func start``
   does, start every trigger listener, and once all of them are running print
   ``Host started on http://HOST:PORT`` (``/admin/host/status`` turns 200 at that moment).
   A function disabled by the app setting ``AzureWebJobs.<name>.Disabled`` (``true``/``1``)
   is listed with ``(Disabled)`` and a ``Function 'NAME' is disabled`` line, and gets no
   listener, route or webhook; its outputs and route template are still checked.
4. On SIGTERM or SIGINT: stop taking new work, let running invocations finish and settle
   (up to ``--shutdown-timeout`` seconds), close every client, print ``Host stopped`` and
   exit 0. A second signal exits 1 at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from .blobs import BlobListener
from .clients import Clients
from .eventgrid import BlobEventsWebhook, EventGridWebhook, webhook_url
from .http import HttpFront, display_url
from .invoke import Invoker
from .loader import (
    BLOB_TRIGGER,
    EVENT_GRID_TRIGGER,
    HTTP_TRIGGER,
    SERVICE_BUS_TRIGGER,
    FunctionEntry,
    LoadError,
    build_table,
    import_app,
)
from .outputs import Outputs
from .servicebus import ServiceBusListener
from .settings import (
    DEFAULT_PORT,
    HostOptions,
    SettingsError,
    apply_to_environment,
    function_disabled,
    host_id,
    identity_connection_configured,
    load_host_json,
    load_local_settings,
    resolve_connection,
)

log = logging.getLogger("devhost.host")


@dataclass(frozen=True)
class Options:
    app_dir: Path
    port: int | None
    bind_host: str
    settings: Path | None
    shutdown_timeout: float
    verbose: bool


class Listener(Protocol):
    entry: FunctionEntry
    running: asyncio.Event
    last_error: str | None

    @property
    def description(self) -> str: ...

    def start(self) -> None: ...

    async def stop(self, timeout: float) -> None: ...


def _fail(message: str, code: int) -> int:
    print(f"devhost: error: {message}", file=sys.stderr, flush=True)
    return code


def _connection(entry: FunctionEntry, default: str) -> str:
    setting = entry.trigger.get("connection") or default
    value = resolve_connection(setting)
    if value is None:
        if identity_connection_configured(setting):
            raise LoadError(
                f"function {entry.name!r}: connection {setting!r} is identity-based ({setting}__...); devhost "
                f"supports connection strings only"
            )
        raise LoadError(
            f"function {entry.name!r}: connection setting {setting!r} is not set (looked for AzureWebJobs{setting}, "
            f"{setting} and ConnectionStrings:{setting})"
        )
    return value


def build_listeners(entries: list[FunctionEntry], options: HostOptions, clients: Clients, invoker: Invoker,
                    hostid: str) -> list[Listener]:
    listeners: list[Listener] = []
    parallelism = asyncio.Semaphore(options.blobs.max_degree_of_parallelism)
    for entry in entries:
        if entry.trigger.type == SERVICE_BUS_TRIGGER:
            trigger = entry.trigger
            if not trigger.get("queueName") and not (trigger.get("topicName") and trigger.get("subscriptionName")):
                raise LoadError(f"function {entry.name!r}: serviceBusTrigger needs queueName, or topicName and "
                                f"subscriptionName")
            connection = _connection(entry, "ServiceBus")
            listeners.append(ServiceBusListener(entry, options.service_bus, clients, invoker, connection))
        elif entry.trigger.type == BLOB_TRIGGER:
            connection = _connection(entry, "Storage")
            host_connection = resolve_connection("Storage") or connection
            listeners.append(BlobListener(entry, options.blobs, clients, invoker, connection, host_connection,
                                          hostid, parallelism))
    return listeners


def _configure_logging(verbose: bool, raw_host_json: dict[str, Any]) -> None:
    handler = logging.StreamHandler(sys.stdout)

    class Utc(logging.Formatter):
        def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            return f"{stamp}.{int(record.msecs):03d}Z"

    handler.setFormatter(Utc("[%(asctime)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    levels = {"trace": logging.DEBUG, "debug": logging.DEBUG, "information": logging.INFO,
              "warning": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL,
              "none": logging.CRITICAL + 10}
    log_levels = (raw_host_json.get("logging") or {}).get("logLevel") or {}
    configured = log_levels.get("Function") or log_levels.get("default")
    root.setLevel(levels.get(str(configured).lower(), logging.INFO) if configured else logging.INFO)
    # The SDKs are chatty at INFO (every link attach, every HTTP request); keep their warnings.
    for noisy in ("azure", "uamqp", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    # pyamqp warns on every "no session available" answer, which is routine for session triggers.
    logging.getLogger("azure.servicebus._pyamqp").setLevel(logging.DEBUG if verbose else logging.ERROR)
    logging.getLogger("devhost").setLevel(logging.DEBUG if verbose else logging.INFO)


def run(options: Options) -> int:
    app_dir = options.app_dir.resolve()
    if not app_dir.is_dir():
        return _fail(f"app directory not found: {app_dir}", 2)
    try:
        settings = load_local_settings(app_dir, options.settings)
    except SettingsError as exc:
        return _fail(str(exc), 2)
    if settings.is_example:
        print(f"local.settings.json not found in {app_dir}; using {settings.path.name}", flush=True)
    port = options.port or settings.local_http_port or DEFAULT_PORT
    apply_to_environment(settings, {
        "WEBSITE_HOSTNAME": f"{options.bind_host}:{port}",
        "AzureWebJobsScriptRoot": str(app_dir),
        "AZURE_FUNCTIONS_ENVIRONMENT": "Development",
    }, say=lambda line: print(line, flush=True))
    try:
        host_options = load_host_json(app_dir)
    except SettingsError as exc:
        return _fail(str(exc), 2)
    _configure_logging(options.verbose, host_options.raw)
    os.chdir(app_dir)  # the worker runs with the app directory as its working directory
    try:
        app = import_app(app_dir)
        entries = build_table(app)
    except LoadError as exc:
        return _fail(str(exc), 2)
    except Exception:
        traceback.print_exc()
        return _fail(f"importing {app_dir / 'function_app.py'} failed (traceback above)", 1)
    return asyncio.run(_serve(options, app_dir, port, host_options, entries))


async def _serve(options: Options, app_dir: Path, port: int, host_options: HostOptions,
                 entries: list[FunctionEntry]) -> int:
    hostid = host_id(app_dir)
    clients = Clients()
    outputs = Outputs(clients)
    invoker = Invoker(outputs, str(app_dir))
    disabled = frozenset(e.name for e in entries if function_disabled(e.name))
    enabled = [e for e in entries if e.name not in disabled]
    try:
        for entry in entries:
            outputs.check(entry)
        # A disabled function gets no listener (so its trigger's connection is not needed),
        # no route and no webhook: the runtime ignores the events meant for it.
        listeners = build_listeners(enabled, host_options, clients, invoker, hostid)
        webhook = EventGridWebhook(enabled, invoker, host_options.http_body_timeout)
        blob_events = BlobEventsWebhook([item for item in listeners if isinstance(item, BlobListener)],
                                        host_options.http_body_timeout)
        front = HttpFront(entries, host_options.route_prefix, invoker, hostid,
                          webhook.handle if any(e.trigger.type == EVENT_GRID_TRIGGER for e in entries) else None,
                          disabled, host_options.http_body_timeout,
                          blobs_handler=blob_events.handle if blob_events.needed else None)
    except LoadError as exc:
        await clients.close()
        invoker.close()
        return _fail(str(exc), 2)

    runner = web.AppRunner(front.build(), access_log=None, shutdown_timeout=options.shutdown_timeout,
                           handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, options.bind_host, port).start()
    except OSError as exc:
        await runner.cleanup()
        await clients.close()
        invoker.close()
        return _fail(f"cannot listen on {options.bind_host}:{port}: {exc.strerror or exc}", 1)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            print("Second signal: exiting now", flush=True)
            os._exit(1)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    base = f"http://{options.bind_host}:{port}"
    _print_functions(entries, front, base, listeners, disabled)
    for name in sorted(disabled):
        print(f"Function '{name}' is disabled", flush=True)
    for listener in listeners:
        listener.start()
    if await _wait_running(listeners, stop):
        front.state = "Running"
        print(f"Host started on {base}", flush=True)
        await stop.wait()

    front.state = "Stopping"
    print("Stopping host...", flush=True)
    deadline = time.monotonic() + options.shutdown_timeout
    await asyncio.gather(*(listener.stop(options.shutdown_timeout) for listener in listeners))
    await runner.cleanup()  # stops listening, waits for in-flight requests up to shutdown_timeout
    if not await invoker.drain(max(0.0, deadline - time.monotonic())):
        log.warning("%d invocation(s) still running at shutdown; leaving them", invoker.running)
    await clients.close()
    invoker.close()
    print("Host stopped", flush=True)
    return 0


async def _wait_running(listeners: list[Listener], stop: asyncio.Event) -> bool:
    """True once every listener runs; False when a stop signal came first."""
    started = time.monotonic()
    next_report = 30.0
    while True:
        waiting = [listener for listener in listeners if not listener.running.is_set()]
        if not waiting:
            return True
        if stop.is_set():
            return False
        if time.monotonic() - started > next_report:
            for listener in waiting:
                log.warning("Still waiting for the %s listener of %s%s", listener.description, listener.entry.name,
                            f" (last error: {listener.last_error})" if listener.last_error else "")
            next_report += 30.0
        await asyncio.sleep(0.05)


def _print_functions(entries: list[FunctionEntry], front: HttpFront, base: str, listeners: list[Listener],
                     disabled: frozenset[str] = frozenset()) -> None:
    lines = ["", "Functions:", ""]
    routes = {route.entry.name: route for route in front.routes}
    described = {listener.entry.name: listener.description for listener in listeners}
    for entry in entries:
        suffix = " (Disabled)" if entry.name in disabled else ""
        if entry.trigger.type == HTTP_TRIGGER:
            route = routes[entry.name]
            methods = ",".join(sorted(route.methods)) if route.methods else "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS"
            lines.append(f"        {entry.name}: [{methods}] {display_url(base, front.route_prefix, route)}{suffix}")
        elif entry.trigger.type == EVENT_GRID_TRIGGER:
            lines.append(f"        {entry.name}: eventGridTrigger (webhook {webhook_url(base, entry)}){suffix}")
        else:
            lines.append(f"        {entry.name}: {described.get(entry.name, entry.trigger.type)}{suffix}")
        lines.append("")
    print("\n".join(lines), flush=True)
