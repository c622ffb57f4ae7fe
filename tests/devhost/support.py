"""Launchers and waits for the devhost tests: devhost and the Event Grid emulator as real
subprocesses, read through their stdout. Every wait polls against a generous deadline, so
nothing here depends on machine speed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.support.waiting import DEADLINE, wait_until  # noqa: F401 - the devhost tests take wait_until from here

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SAMPLE_APP = HERE / "sample_app"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """A child process whose merged stdout/stderr is collected line by line."""

    def __init__(self, cmd: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> None:
        self.cmd = cmd
        self.env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.cwd = cwd
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._cond = threading.Condition()

    def launch(self) -> Process:
        self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                with self._cond:
                    self.lines.append(line.rstrip("\n"))
                    self._cond.notify_all()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        return self

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = DEADLINE) -> str:
        """The first output line containing *text*; fails if the process exits first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                assert self.proc is not None
                if self.proc.poll() is not None:
                    self._cond.release()
                    try:
                        self._pump.join(10)  # the last lines, up to end of file
                    finally:
                        self._cond.acquire()
                    if not any(text in line for line in self.lines):
                        code = self.proc.returncode
                        raise AssertionError(
                            f"process exited ({code}) before printing {text!r}:\n{self.output_unlocked()}")
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {text!r} within {timeout:.0f}s:\n{self.output_unlocked()}")
                self._cond.wait(min(remaining, 0.5))

    def output_unlocked(self) -> str:
        return "\n".join(self.lines)

    def count(self, text: str) -> int:
        with self._cond:
            return sum(text in line for line in self.lines)

    def signal(self, sig: int = signal.SIGTERM, timeout: float = DEADLINE) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


class DevHost(Process):
    """``python -m devhost`` on a free port; :meth:`start` returns once it printed Host started."""

    def __init__(self, env: dict[str, str], app_dir: Path = SAMPLE_APP, port: int | None = None,
                 args: list[str] | None = None) -> None:
        self.port = port or free_port()
        cmd = [sys.executable, "-m", "devhost", "--app-dir", str(app_dir), "--port", str(self.port), *(args or [])]
        super().__init__(cmd, env)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def start(self, timeout: float = DEADLINE) -> DevHost:
        self.launch()
        self.wait_for(f"Host started on {self.base}", timeout)
        return self


def run_devhost(args: list[str], env: dict[str, str] | None = None, timeout: float = DEADLINE,
                cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run devhost to completion (for startup failures); stdout and stderr kept apart."""
    return subprocess.run([sys.executable, "-m", "devhost", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"})


class EventGridEmulator(Process):
    def __init__(self, config: Path) -> None:
        super().__init__([sys.executable, "-m", "emulators.eventgrid", "--config", str(config), "--in-memory",
                          "--port", "0", "--retry-scale", "0.001", "--delivery-timeout", "10",
                          "--log-level", "warning"])
        self.base = ""

    def start(self) -> EventGridEmulator:
        self.launch()
        line = self.wait_for("listening on ")
        self.base = line.strip().rsplit(" ", 1)[-1]
        return self

    def topic_endpoint(self, topic: str) -> str:
        return f"{self.base}/topics/{topic}/api/events"

    def events(self, topic: str) -> list[dict[str, Any]]:
        import requests

        resp = requests.get(f"{self.base}/topics/{topic}/events", timeout=10)
        resp.raise_for_status()
        return resp.json()


def write_app(directory: Path, function_app: str, settings: dict[str, Any] | None = None,
              example: dict[str, Any] | None = None, host_json: dict[str, Any] | None = None) -> Path:
    """A throwaway app directory for startup tests."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "function_app.py").write_text(function_app)
    if settings is not None:
        (directory / "local.settings.json").write_text(json.dumps(settings))
    if example is not None:
        (directory / "local.settings.json.example").write_text(json.dumps(example))
    if host_json is not None:
        (directory / "host.json").write_text(json.dumps(host_json))
    return directory
