"""The local stack, started in one place: Azurite, the Service Bus and Event Grid emulators, devhost.

:class:`Stack` starts each piece as a child process, waits until it answers, wires the app's
settings to where the pieces actually listen (environment variables, which win over
``local.settings.json`` exactly as they do under ``func start``), registers the Event Grid
subscriptions that deliver to Event Grid-triggered functions, and stops everything in reverse
order.  ``make up``, ``make demo``, the end-to-end tests and the benchmarks all use it; the
tests that need one piece alone (and the Service Bus benchmark) start it with :class:`Azurite`,
:class:`ServiceBusEmulator`, :class:`EventGridEmulator` or :class:`DevHost`, on the same commands.

Fixed ports (``Ports.default()``) match ``local.settings.json.example``; tests use free ports.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
AZURITE_JS = ROOT / "tools" / "azurite" / "node_modules" / "azurite" / "dist" / "src" / "azurite.js"
ACCOUNT = "devstoreaccount1"
# Azurite's documented, public development key (not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
EVENTGRID_KEY = "local-eventgrid-key"
SUBSCRIPTIONS = Path(__file__).with_name("eventgrid-subscriptions.json")
BLOB_TRIGGER_SOURCE = "PAYMENT_FILES_BLOB_TRIGGER_SOURCE"


class StackError(RuntimeError):
    """A piece of the stack did not start; the message says which and shows its last output."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def storage_connection_string(blob: int, queue: int, table: int) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{blob}/{ACCOUNT};QueueEndpoint=http://127.0.0.1:{queue}/{ACCOUNT};"
            f"TableEndpoint=http://127.0.0.1:{table}/{ACCOUNT};")


def servicebus_connection_string(port: int) -> str:
    """AMQP for ``ServiceBusClient``; on the administration port, the same shape serves
    ``ServiceBusAdministrationClient`` (which speaks HTTPS to it: see :class:`ServiceBusEmulator`)."""
    return (f"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
            "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;")


# The emulator's start line: its AMQP address, then its administration API's and certificate.
SERVICEBUS_LISTENING = (r"listening on amqp://([\d.]+):(\d+) .*administration API on "
                        r"http\(s\)://[\d.]+:(\d+) \(certificate (.+)\)$")


@dataclass
class Ports:
    blob: int
    queue: int
    table: int
    servicebus: int
    eventgrid: int
    functions: int
    traces: int
    servicebus_admin: int  # the administration API (Microsoft's emulator uses 5300 too)
    view: int = 7072  # the live view's page (devstack/view.py)

    @classmethod
    def default(cls) -> Ports:
        return cls(10000, 10001, 10002, 5672, 6080, 7071, 4318, 5300, 7072)

    @classmethod
    def free(cls) -> Ports:
        return cls(*(free_port() for _ in fields(cls)))


PR_SET_PDEATHSIG = 1


def _die_with_this_process() -> Callable[[], None] | None:
    """For the child (Linux): be sent SIGTERM when this process dies, even by SIGKILL, so a
    crashed ``make up`` or test run leaves no Azurite or emulator holding its ports. The
    signal follows the *thread* that starts the child: start the stack from a thread that
    lives as long as it (the main thread, as every entry point here does)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork: nothing to import after it
    parent = os.getpid()

    def in_child() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the line above took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return in_child


class ManagedProcess:
    """A child process whose output is kept (last lines shown when it fails) and which stops cleanly."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str] | None = None,
                 log_path: Path | None = None, echo: bool = False, keep_lines: int | None = 5000) -> None:
        self.name = name
        self.cmd = cmd
        self.env = env
        self.log_path = log_path
        self.echo = echo
        # A long-running piece (make up, the soak) keeps only its recent output in memory; a
        # short-lived one under test keeps all of it, so its first lines can still be asked about.
        self.keep_lines = keep_lines
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._dropped = 0  # lines let go from the front of ``lines``
        self._seen = threading.Condition()
        self._pump_thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def lines_seen(self) -> int:
        """How many lines the process has printed so far, kept or let go."""
        with self._seen:
            return self._dropped + len(self.lines)

    def lines_after(self, seen: int) -> list[str]:
        """The lines printed after the first ``seen`` (those still kept)."""
        with self._seen:
            return self.lines[max(seen - self._dropped, 0):]

    def start(self) -> ManagedProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})}
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                     preexec_fn=_die_with_this_process())
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        log = self.log_path.open("a", encoding="utf-8") if self.log_path else None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            with self._seen:
                self.lines.append(line)
                if self.keep_lines is not None and len(self.lines) > self.keep_lines:
                    drop = max(1, self.keep_lines // 5)
                    del self.lines[:drop]
                    self._dropped += drop
                self._seen.notify_all()
            if log:
                log.write(line + "\n")
                log.flush()
            if self.echo:
                print(f"[{self.name}] {line}", flush=True)
        if log:
            log.close()

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first output line (of those still kept) matching ``pattern``; ``match.string`` is
        the whole line. StackError if the process ends without printing one, or after ``timeout``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        checked = 0  # position in the whole output, counting lines let go
        with self._seen:
            while True:
                for line in self.lines[max(checked - self._dropped, 0):]:
                    match = regex.search(line)
                    if match:
                        return match
                checked = self._dropped + len(self.lines)
                remaining = deadline - time.monotonic()
                if self.proc is not None and self.proc.poll() is not None:
                    if remaining > 0 and self._pump_thread is not None and self._pump_thread.is_alive():
                        # Its last lines may still be in the pipe: read them before giving up.
                        self._seen.wait(min(remaining, 0.1))
                        continue
                    raise StackError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
                if remaining <= 0:
                    raise StackError(f"{self.name} printed no line matching {pattern!r} within {timeout:.0f} s:\n"
                                     f"{self.tail()}")
                self._seen.wait(min(remaining, 0.25))

    def tail(self, count: int = 30) -> str:
        return "\n".join(self.lines[-count:])

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code (None if it never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)


def wait_for_port(port: int, process: ManagedProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if not process.running:
                raise StackError(f"{process.name} exited:\n{process.tail()}") from None
            if time.monotonic() > deadline:
                raise StackError(f"{process.name} did not open port {port}:\n{process.tail()}") from None
            time.sleep(0.1)


def http_json(method: str, url: str, body: object | None = None, timeout: float = 10.0) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw) if raw else None
        except ValueError:
            return exc.code, raw.decode(errors="replace")


# -- one piece at a time: the commands Stack runs, and each piece alone for the tests that need
# -- only one (integration, emulator conformance) and the benchmarks --------------------------
def azurite_command(blob: int, queue: int, table: int, location: Path | None) -> list[str]:
    if not AZURITE_JS.exists():
        raise StackError(f"Azurite is not installed ({AZURITE_JS} missing): run `make venv` "
                         "or `npm ci --prefix tools/azurite`")
    cmd = ["node", str(AZURITE_JS), "--silent", "--skipApiVersionCheck", "--loose", "--disableTelemetry",
           "--blobHost", "127.0.0.1", "--blobPort", str(blob),
           "--queueHost", "127.0.0.1", "--queuePort", str(queue),
           "--tableHost", "127.0.0.1", "--tablePort", str(table)]
    return cmd + (["--location", str(location)] if location else ["--inMemoryPersistence"])


def servicebus_command(config: Path, port: int, data_dir: Path | None, log_level: str = "warning",
                       admin_port: int = 0) -> list[str]:
    cmd = [sys.executable, "-m", "emulators.servicebus", "--config", str(config), "--port", str(port),
           "--admin-port", str(admin_port), "--log-level", log_level]
    return cmd + (["--data-dir", str(data_dir)] if data_dir else ["--in-memory"])


def traces_command(port: int, db: Path | None) -> list[str]:
    return [sys.executable, "-m", "devstack.traces", "--port", str(port), *(["--db", str(db)] if db else [])]


def view_command(port: int, traces_url: str) -> list[str]:
    return [sys.executable, "-m", "devstack.view", "--port", str(port), "--traces", traces_url]


def eventgrid_command(config: Path, port: int, data_dir: Path | None, options: Sequence[str] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "emulators.eventgrid", "--config", str(config), "--port", str(port),
           "--log-level", "warning", *options]
    return cmd + (["--data-dir", str(data_dir)] if data_dir else ["--in-memory"])


def devhost_command(app_dir: Path, port: int | None, options: Sequence[str] = ()) -> list[str]:
    """``port`` None: devhost picks its own (``Host.LocalHttpPort`` of local.settings.json, else 7071)."""
    cmd = [sys.executable, "-m", "devhost", "--app-dir", str(app_dir), *options]
    return cmd + (["--port", str(port)] if port is not None else [])


class Azurite:
    """Azurite alone, on free ports: in memory, or kept at ``location``."""

    def __init__(self, location: str | Path | None = None) -> None:
        self.location = Path(location) if location else None
        self.blob_port = self.queue_port = self.table_port = 0
        self.process: ManagedProcess | None = None

    @property
    def connection_string(self) -> str:
        return storage_connection_string(self.blob_port, self.queue_port, self.table_port)

    def start(self, timeout: float = 60.0) -> Azurite:
        self.blob_port, self.queue_port, self.table_port = free_port(), free_port(), free_port()
        cmd = azurite_command(self.blob_port, self.queue_port, self.table_port, self.location)
        self.process = ManagedProcess("azurite", cmd).start()
        try:
            for port in (self.blob_port, self.queue_port, self.table_port):
                wait_for_port(port, self.process, timeout)
        except StackError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServiceBusEmulator:
    """The Service Bus emulator alone, on ``port`` (0: a free one, then the same one on every
    restart, as the durability tests need); in memory, or durable in ``data_dir``.

    Its administration API listens on ``admin_port`` (0: a free one) over HTTPS, since the
    SDK's ``ServiceBusAdministrationClient`` builds ``https://`` URLs even for the emulator, with
    a self-signed certificate at ``admin_certificate``: hand that to the client as
    ``connection_verify``."""

    def __init__(self, config: str | Path, data_dir: str | Path | None = None, log_level: str = "warning",
                 port: int = 0, admin_port: int = 0) -> None:
        self.config = Path(config)
        self.data_dir = Path(data_dir) if data_dir else None
        self.log_level = log_level
        self.requested_port = port
        self.requested_admin_port = admin_port
        self.port = 0
        self.admin_port = 0
        self.admin_certificate = ""
        self.process: ManagedProcess | None = None

    @property
    def connection_string(self) -> str:
        return servicebus_connection_string(self.port)

    @property
    def admin_connection_string(self) -> str:
        return servicebus_connection_string(self.admin_port)

    @property
    def output(self) -> list[str]:
        return list(self.process.lines) if self.process is not None else []

    def start(self, timeout: float = 60.0) -> ServiceBusEmulator:
        cmd = servicebus_command(self.config, self.requested_port, self.data_dir, self.log_level,
                                 self.requested_admin_port)
        self.process = ManagedProcess("servicebus", cmd).start()
        try:
            listening = self.process.wait_for_line(SERVICEBUS_LISTENING, timeout)
        except StackError:
            self.stop()
            raise
        self.port = int(listening.group(2))
        self.admin_port = int(listening.group(3))
        self.admin_certificate = listening.group(4)
        # A restart comes back on the same addresses.
        self.requested_port, self.requested_admin_port = self.port, self.admin_port
        return self

    def kill(self) -> None:
        """SIGKILL: the crash the durability promise is about."""
        if self.process is not None:
            self.process.kill()

    def stop(self) -> int | None:
        if self.process is None or self.process.proc is None:
            return None
        self.process.stop(timeout=15)
        return self.process.proc.returncode

    def __enter__(self) -> ServiceBusEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EventGridEmulator:
    """The Event Grid emulator alone, in memory, on a free port; ``options`` are more of its
    command-line options (e.g. ``--retry-scale``)."""

    def __init__(self, config: Path = ROOT / "emulators" / "eventgrid" / "config.json", timeout: float = 60.0,
                 options: Sequence[str] = ()) -> None:
        self.config = config
        self.timeout = timeout
        self.options = list(options)
        self.process: ManagedProcess | None = None
        self.base_url = ""

    def start(self) -> EventGridEmulator:
        self.process = ManagedProcess("eventgrid", eventgrid_command(self.config, 0, None, self.options)).start()
        try:
            listening = self.process.wait_for_line(r"listening on (\S+)", self.timeout)
        except StackError:
            self.stop()
            raise
        self.base_url = listening.group(1)
        return self

    def topic_endpoint(self, topic: str = "deliveries") -> str:
        return f"{self.base_url}/topics/{topic}/api/events"

    def events(self, topic: str = "deliveries", **params: str) -> list[dict[str, Any]]:
        """What the emulator stored for ``topic`` (its ``GET /topics/{topic}/events``)."""
        query = urllib.parse.urlencode(params)
        status, body = http_json("GET", f"{self.base_url}/topics/{topic}/events" + (f"?{query}" if query else ""))
        if status != 200 or not isinstance(body, list):
            raise StackError(f"GET events of topic {topic} answered {status}: {body}")
        return body

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=15)

    def __enter__(self) -> EventGridEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class DevHost:
    """devhost alone, running the app in ``app_dir`` with ``settings`` in its environment (which
    win over its local.settings.json, as under ``func start``). On ``port`` (0: a free one;
    None: the one devhost picks, read from its output). :meth:`start` returns once it printed
    that the host started; the Stack also waits until every trigger listens."""

    def __init__(self, settings: dict[str, str] | None = None, app_dir: Path = ROOT, port: int | None = 0,
                 options: Sequence[str] = (), name: str = "devhost", log_path: Path | None = None,
                 echo: bool = False, keep_lines: int | None = None) -> None:
        self.port = free_port() if port == 0 else port
        self.process = ManagedProcess(name, devhost_command(app_dir, self.port, options), env=dict(settings or {}),
                                      log_path=log_path, echo=echo, keep_lines=keep_lines)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def output(self) -> str:
        return "\n".join(self.process.lines)

    def start(self, timeout: float = 120.0) -> DevHost:
        self.process.start()
        started = self.process.wait_for_line(r"Host started on http://127\.0\.0\.1:(\d+)", timeout)
        self.port = int(started.group(1))
        return self

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        """The first output line containing ``text``; StackError if devhost ends without one."""
        return self.process.wait_for_line(re.escape(text), timeout).string

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.process.lines))

    def signal(self, signum: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send ``signum`` and wait for the exit code."""
        proc = self.process.proc
        assert proc is not None, "devhost was never started"
        if proc.poll() is None:
            proc.send_signal(signum)
        return proc.wait(timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        return self.process.stop(timeout)

    def kill(self) -> None:
        self.process.kill()

    def __enter__(self) -> DevHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Stack:
    """Everything the app needs locally.  Use as a context manager or call start()/stop()."""

    ports: Ports = field(default_factory=Ports.free)
    data_dir: Path | None = None  # None: everything in memory
    servicebus_config: Path = ROOT / "emulators" / "servicebus" / "config.json"
    eventgrid_config: Path = ROOT / "emulators" / "eventgrid" / "config.json"
    app_dir: Path = ROOT
    settings: dict[str, str] = field(default_factory=dict)  # extra app settings for devhost
    echo: bool = False
    log_dir: Path | None = None
    with_devhost: bool = True
    servicebus_log_level: str = "warning"  # info: a line per session accept (the benchmark counts them)
    # The trace store the app exports its spans to (OTLP/HTTP); its SQLite file, or in memory.
    with_traces: bool = True
    traces_db: Path | None = None
    # The live view (a page on ports.view): opt-in, as make up and make demo ask for it; it needs the trace store.
    with_view: bool = False
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    # The administration API's self-signed certificate (a PEM file), once the emulator runs.
    servicebus_admin_certificate: str = ""
    _storage_events: Any = None  # storage_events.BlobCreatedEvents while the stack runs with blob events

    # -- what the app sees --------------------------------------------------------------
    @property
    def storage_connection(self) -> str:
        return storage_connection_string(self.ports.blob, self.ports.queue, self.ports.table)

    @property
    def servicebus_connection(self) -> str:
        return servicebus_connection_string(self.ports.servicebus)

    @property
    def servicebus_admin_connection(self) -> str:
        """For ``ServiceBusAdministrationClient`` (with ``connection_verify=servicebus_admin_certificate``)."""
        return servicebus_connection_string(self.ports.servicebus_admin)

    @property
    def eventgrid_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.eventgrid}"

    @property
    def traces_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.traces}"

    @property
    def view_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.view}/"

    @property
    def functions_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.functions}"

    def app_settings(self) -> dict[str, str]:
        return {
            "AzureWebJobsStorage": self.storage_connection,
            "ServiceBusConnection": self.servicebus_connection,
            "EventGridTopicEndpoint": f"{self.eventgrid_url}/topics/deliveries/api/events",
            "EventGridTopicKey": EVENTGRID_KEY,
            "PaymentsEventGridTopicEndpoint": f"{self.eventgrid_url}/topics/payments/api/events",
            "PaymentsEventGridTopicKey": EVENTGRID_KEY,
            **self._tracing_settings(),
            **self.settings,
        }

    def _tracing_settings(self) -> dict[str, str]:
        if not self.with_traces:
            # Explicitly off: otherwise the app's local.settings.json(.example) names an OTLP
            # endpoint where no trace store listens, and every span is made, batched and refused.
            return {"OTEL_SDK_DISABLED": "true"}
        # Spans leave the app in batches every 200 ms (the SDK's default is 5 s), so a journey
        # shows up in `ops trace` as soon as it ends.
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.traces_url, "OTEL_BSP_SCHEDULE_DELAY": "200"}

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> Stack:
        try:
            if self.with_traces:
                self._start_traces()
            self._start_azurite()
            self._start_servicebus()
            self._start_eventgrid()
            if self.with_view:
                self.start_view()
            if self.with_devhost:
                self.start_devhost()
        except BaseException:
            self.stop()
            raise
        return self

    def _log(self, name: str) -> Path | None:
        if self.log_dir is None:
            return None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self.log_dir / f"{name}.log"

    def _start_azurite(self) -> None:
        location = None
        if self.data_dir:
            location = self.data_dir / "azurite"
            location.mkdir(parents=True, exist_ok=True)
        cmd = azurite_command(self.ports.blob, self.ports.queue, self.ports.table, location)
        proc = ManagedProcess("azurite", cmd, log_path=self._log("azurite"), echo=self.echo).start()
        self.processes["azurite"] = proc
        for port in (self.ports.blob, self.ports.queue, self.ports.table):
            wait_for_port(port, proc, 60)
        provision_storage(self.storage_connection)

    def _start_traces(self) -> None:
        db = self.traces_db or (self.data_dir / "traces.sqlite" if self.data_dir else None)
        proc = ManagedProcess("traces", traces_command(self.ports.traces, db), log_path=self._log("traces"),
                              echo=self.echo).start()
        self.processes["traces"] = proc
        proc.wait_for_line(r"trace store listening on http://", 60)

    def start_view(self) -> None:
        """The live view, reading the stores the app writes; restartable on the same port."""
        # ops.dlq's settings: the dead-letter panel's per-entity counts come from the administration API.
        env = {"AzureWebJobsStorage": self.storage_connection, "ServiceBusConnection": self.servicebus_connection,
               "ServiceBusAdminConnection": self.servicebus_admin_connection,
               "ServiceBusAdminCertificate": self.servicebus_admin_certificate}
        proc = ManagedProcess("view", view_command(self.ports.view, self.traces_url), env=env,
                              log_path=self._log("view"), echo=self.echo).start()
        self.processes["view"] = proc
        proc.wait_for_line(r"live view listening on http://", 60)

    def stop_view(self) -> None:
        proc = self.processes.pop("view", None)
        if proc:
            proc.stop()

    def _start_servicebus(self) -> None:
        cmd = servicebus_command(self.servicebus_config, self.ports.servicebus,
                                 self.data_dir / "servicebus" if self.data_dir else None,
                                 log_level=self.servicebus_log_level, admin_port=self.ports.servicebus_admin)
        proc = ManagedProcess("servicebus", cmd, log_path=self._log("servicebus"), echo=self.echo).start()
        self.processes["servicebus"] = proc
        self.servicebus_admin_certificate = proc.wait_for_line(SERVICEBUS_LISTENING, 60).group(4)

    def _start_eventgrid(self) -> None:
        cmd = eventgrid_command(self.eventgrid_config, self.ports.eventgrid,
                                self.data_dir / "eventgrid" if self.data_dir else None)
        proc = ManagedProcess("eventgrid", cmd, log_path=self._log("eventgrid"), echo=self.echo).start()
        self.processes["eventgrid"] = proc
        proc.wait_for_line(r"listening on http://", 60)
        if self.blob_events:
            from .storage_events import TOPIC, BlobCreatedEvents

            self._storage_events = BlobCreatedEvents(self.storage_connection,
                                                     f"{self.eventgrid_url}/topics/{TOPIC}/api/events",
                                                     EVENTGRID_KEY).start()

    @property
    def blob_events(self) -> bool:
        """FileValidator's blob trigger is Event Grid-based (``PAYMENT_FILES_BLOB_TRIGGER_SOURCE``
        in the stack's settings or the environment devhost inherits): Azurite's new blobs are
        then announced as BlobCreated events through the Event Grid emulator."""
        source = self.settings.get(BLOB_TRIGGER_SOURCE, os.environ.get(BLOB_TRIGGER_SOURCE, ""))
        return source.strip().lower() == "eventgrid"

    def start_devhost(self, timeout: float = 120.0) -> None:
        self._start_host("devhost", self.ports.functions, {}, timeout)
        self._subscribe_eventgrid_triggers()

    def start_instance(self, number: int, settings: dict[str, str] | None = None, timeout: float = 120.0) -> str:
        """Another devhost on the same resources, as Azure scales an app out to a second
        instance: its Service Bus triggers compete with the first's; its HTTP front is its own
        (the URL returned). Event Grid keeps delivering to the first instance's webhooks."""
        port = free_port()
        self._start_host(f"devhost-{number}", port, settings or {}, timeout)
        return f"http://127.0.0.1:{port}"

    def _start_host(self, name: str, port: int, settings: dict[str, str], timeout: float) -> None:
        host = DevHost({**self.app_settings(), **settings}, app_dir=self.app_dir, port=port, name=name,
                       log_path=self._log(name), echo=self.echo, keep_lines=5000)
        self.processes[name] = host.process
        host.start(timeout)
        self._wait_until_running(host.process, host.base, timeout)

    def stop_devhost(self) -> None:
        proc = self.processes.pop("devhost", None)
        if proc:
            proc.stop()

    def kill_devhost(self) -> None:
        proc = self.processes.pop("devhost", None)
        if proc:
            proc.kill()

    # -- chaos (the soak): a crash is SIGKILL; a restart reuses the ports and the data dir --------
    def kill_servicebus(self) -> None:
        proc = self.processes.pop("servicebus", None)
        if proc:
            proc.kill()

    def start_servicebus(self) -> None:
        self._start_servicebus()

    def pause(self, name: str) -> None:
        """SIGSTOP: the process holds its connections and answers nothing (a hung dependency)."""
        proc = self.processes[name]
        if proc.pid is not None:
            os.kill(proc.pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        proc = self.processes[name]
        if proc.pid is not None:
            os.kill(proc.pid, signal.SIGCONT)

    def _wait_until_running(self, proc: ManagedProcess, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            status, _ = http_json("GET", f"{url}/admin/host/status")
            if status == 200:
                return
            if not proc.running:
                raise StackError(f"devhost exited:\n{proc.tail()}")
            if time.monotonic() > deadline:
                raise StackError(f"devhost's triggers did not all start listening:\n{proc.tail()}")
            time.sleep(0.2)

    def _subscribe_eventgrid_triggers(self) -> None:
        """What an Azure deployment declares in infrastructure: Event Grid → Event Grid triggers."""
        if not SUBSCRIPTIONS.exists():
            return
        for sub in json.loads(SUBSCRIPTIONS.read_text()):
            if sub.get("webhook") == "blobs":
                if not self.blob_events:
                    continue  # FileValidator polls: nothing to deliver BlobCreated to
                endpoint = f"{self.functions_url}/runtime/webhooks/blobs?functionName=Host.Functions.{sub['function']}"
            else:
                endpoint = f"{self.functions_url}/runtime/webhooks/eventgrid?functionName={sub['function']}"
            body = {"endpoint": endpoint,
                    **{k: v for k, v in sub.items() if k not in ("topic", "name", "function", "webhook")}}
            status, detail = http_json("PUT", f"{self.eventgrid_url}/topics/{sub['topic']}/subscriptions/{sub['name']}",
                                       body)
            if status not in (200, 201):
                raise StackError(f"cannot subscribe {sub['function']} to Event Grid topic {sub['topic']}: "
                                 f"{status} {detail}")

    def stop(self) -> None:
        instances = sorted(name for name in self.processes if name.startswith("devhost-"))
        for name in ("view", *instances, "devhost", "eventgrid", "servicebus", "azurite", "traces"):
            if name == "eventgrid" and self._storage_events is not None:
                self._storage_events.stop()
                self._storage_events = None
            proc = self.processes.pop(name, None)
            if proc:
                proc.stop()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def provision_storage(connection_string: str) -> None:
    """The containers and tables of the app (choreography/entities.py, which infra/main.bicep
    declares for Azure too), created if missing: a file dropped into ``payment-files-in`` with
    Storage Explorer or the SDK right after ``make up`` lands in a container that exists. The
    Service Bus entities come from emulators/servicebus/config.json, which the emulator loads."""
    from azure.core.exceptions import ResourceExistsError
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient

    from choreography.entities import CONTAINERS, TABLES

    with BlobServiceClient.from_connection_string(connection_string) as blobs:
        for container in CONTAINERS:
            try:
                blobs.create_container(container)
            except ResourceExistsError:
                pass  # kept from an earlier run (a durable stack)
    with TableServiceClient.from_connection_string(connection_string) as tables:
        for table in TABLES:
            tables.create_table_if_not_exists(table)


def run_until_interrupted(stack: Stack, on_ready: Callable[[Stack], None]) -> int:
    """``make up``: start, print where things are, wait for Ctrl-C (or SIGTERM), stop everything."""
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    with stack:
        on_ready(stack)
        while not stopping.wait(0.5):
            for name, proc in list(stack.processes.items()):
                if not proc.running:
                    print(f"{name} stopped unexpectedly:\n{proc.tail()}", file=sys.stderr)
                    return 1
    return 0


def temporary_data_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="devstack-"))
