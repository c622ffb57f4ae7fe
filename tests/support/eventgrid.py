"""Start the Event Grid emulator (``python -m emulators.eventgrid``) in memory on a free port for tests."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
APP_TOPICS = ROOT / "emulators" / "eventgrid" / "config.json"
KEY = "local-eventgrid-key"  # the app topics' key in that config (emulator default, not a secret)


class EventGridEmulator:
    def __init__(self, config: Path = APP_TOPICS, timeout: float = 60.0) -> None:
        self.config = config
        self.timeout = timeout
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    def start(self) -> EventGridEmulator:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "emulators.eventgrid", "--in-memory", "--port", "0", "--log-level", "warning",
             "--config", str(self.config)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:  # keep draining stdout so the child never blocks on it
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise RuntimeError("Event Grid emulator did not start") from None
            if line is None:
                raise RuntimeError(f"Event Grid emulator exited with {self.proc.wait()}")
            if "listening on " in line:
                self.base_url = line.strip().rsplit(" ", 1)[-1]
                return self

    def topic_endpoint(self, topic: str = "deliveries") -> str:
        return f"{self.base_url}/topics/{topic}/api/events"

    def events(self, topic: str = "deliveries", **params: str) -> list[dict[str, Any]]:
        """What the emulator stored for ``topic`` (its ``GET /topics/{topic}/events``)."""
        response = requests.get(f"{self.base_url}/topics/{topic}/events", params=params, timeout=10)
        response.raise_for_status()
        return list(response.json())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def __enter__(self) -> EventGridEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
