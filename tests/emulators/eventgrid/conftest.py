"""Fixtures for the Event Grid emulator tests: the emulator as a real subprocess, and real
HTTP webhook subscribers on 127.0.0.1. No mocks; every wait polls against a generous
deadline so the suite does not depend on machine speed."""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.waiting import wait_until as _wait_until

REPO_ROOT = Path(__file__).resolve().parents[3]
DEADLINE = 30.0  # seconds; generous on purpose, tests finish as soon as the condition holds

EG_TOPIC = "orders"  # EventGridSchema input
CE_TOPIC = "deliveries"  # CloudEventSchemaV1_0 input
EG_KEY = base64.b64encode(b"local-test-key-for-orders-topic!").decode()  # base64, so SAS tokens work
CE_KEY = "local-eventgrid-key"


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = DEADLINE, interval: float = 0.02) -> Any:
    return _wait_until(predicate, what, timeout, interval)


def write_config(path: Path, topics: list[dict]) -> Path:
    path.write_text(json.dumps({"topics": topics}, indent=2))
    return path


def default_test_topics(subscriptions: dict[str, list[dict]] | None = None) -> list[dict]:
    subscriptions = subscriptions or {}
    return [
        {
            "name": EG_TOPIC,
            "inputSchema": "EventGridSchema",
            "keys": [EG_KEY, "second-key"],
            "subscriptions": subscriptions.get(EG_TOPIC, []),
        },
        {
            "name": CE_TOPIC,
            "inputSchema": "CloudEventSchemaV1_0",
            "keys": [CE_KEY],
            "subscriptions": subscriptions.get(CE_TOPIC, []),
        },
    ]


class EmulatorProcess:
    """``python -m emulators.eventgrid`` in a subprocess, started and awaited like a user would."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.base_url = ""

    def start(self) -> EmulatorProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the child process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "emulators.eventgrid", *self.args],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:  # keeps draining stdout so the child can never block on it
            assert self.proc and self.proc.stdout
            for line in self.proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise AssertionError(f"emulator did not report listening; log:\n{self.log_text()}") from None
            if line is None:
                raise AssertionError(f"emulator exited with {self.proc.wait()}; log:\n{self.log_text()}")
            if "listening on " in line:
                self.base_url = line.strip().rsplit(" ", 1)[-1]
                return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def url(self, path: str) -> str:
        return self.base_url + path

    def topic_endpoint(self, topic: str) -> str:
        return self.url(f"/topics/{topic}/api/events")

    def events(self, topic: str, **params: str) -> list[dict]:
        resp = requests.get(self.url(f"/topics/{topic}/events"), params=params, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=DEADLINE)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def kind(self) -> str:
        return self.headers.get("aeg-event-type", "")


@dataclass
class Route:
    statuses: list[int] = field(default_factory=lambda: [200])  # consumed in order, the last one repeats
    handshake: str = "echo"  # echo | wrong | refuse: how SubscriptionValidation / OPTIONS are answered
    gate: threading.Event | None = None  # notifications block until set


class Subscriber:
    """A real webhook receiver on 127.0.0.1 recording every request it gets."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.routes: dict[str, Route] = {}
        self._cond = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _record(self) -> tuple[Received, Route]:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                rec = Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with owner._cond:
                    owner.received.append(rec)
                    owner._cond.notify_all()
                return rec, owner.routes.setdefault(path, Route())

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the emulator may have been killed while we were held at a gate

            def do_OPTIONS(self) -> None:
                rec, route = self._record()
                origin = rec.headers.get("webhook-request-origin", "")
                if route.handshake == "echo":
                    self._reply(200, headers={"WebHook-Allowed-Origin": origin})
                elif route.handshake == "wrong":
                    self._reply(200, headers={"WebHook-Allowed-Origin": "somewhere-else.example"})
                else:
                    self._reply(405)

            def do_POST(self) -> None:
                rec, route = self._record()
                if rec.kind == "SubscriptionValidation":
                    code = rec.json[0]["data"]["validationCode"]
                    answer = {"echo": code, "wrong": "not-the-code"}.get(route.handshake)
                    if answer is None:
                        self._reply(403)
                    else:
                        self._reply(
                            200,
                            json.dumps({"validationResponse": answer}).encode(),
                            {"Content-Type": "application/json"},
                        )
                    return
                if route.gate is not None:
                    route.gate.wait(timeout=2 * DEADLINE)
                with owner._cond:
                    status = route.statuses.pop(0) if len(route.statuses) > 1 else route.statuses[0]
                self._reply(status)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.handle_error = lambda *a: None  # type: ignore[method-assign]
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def route(self, path: str, **kwargs: Any) -> Route:
        self.routes[path] = Route(**kwargs)
        return self.routes[path]

    def requests_to(self, path: str, kind: str | None = None, method: str | None = None) -> list[Received]:
        with self._cond:
            return [
                r
                for r in self.received
                if r.path.split("?", 1)[0] == path
                and (kind is None or r.kind == kind)
                and (method is None or r.method == method)
            ]

    def notifications(self, path: str) -> list[Received]:
        return self.requests_to(path, kind="Notification", method="POST")

    def wait_notifications(self, path: str, count: int) -> list[Received]:
        return wait_until(
            lambda: (n := self.notifications(path)) and len(n) >= count and n,
            f"{count} notification(s) at {path}",
        )

    def close(self) -> None:
        for route in self.routes.values():
            if route.gate is not None:
                route.gate.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def subscriber():
    sub = Subscriber()
    yield sub
    sub.close()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """One in-memory emulator per test module, with fast (scaled) retries."""
    tmp = tmp_path_factory.mktemp("eventgrid")
    config = write_config(tmp / "config.json", default_test_topics())
    proc = EmulatorProcess(
        [
            "--in-memory",
            "--port",
            "0",
            "--config",
            str(config),
            "--retry-scale",
            "0.001",
            "--delivery-timeout",
            "5",
        ],
        tmp / "emulator.log",
    ).start()
    yield proc
    proc.stop()


@pytest.fixture
def subscriptions(emulator):
    """Create subscriptions through the management API; removes them after the test."""
    created: list[tuple[str, str]] = []

    def put(topic: str, name: str, body: dict) -> requests.Response:
        resp = requests.put(
            emulator.url(f"/topics/{topic}/subscriptions/{name}"), json=body, timeout=DEADLINE
        )
        if resp.status_code in (200, 201):
            created.append((topic, name))
        return resp

    yield put
    for topic, name in created:
        requests.delete(emulator.url(f"/topics/{topic}/subscriptions/{name}"), timeout=DEADLINE)


def unique(prefix: str) -> str:
    return f"{prefix}.{time.monotonic_ns()}"
