"""Start the Service Bus emulator as a real subprocess for tests and benchmarks."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"listening on amqp://([\d.]+):(\d+)")


def connection_string(port: int, host: str = "127.0.0.1") -> str:
    return (f"Endpoint=sb://{host}:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
            "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;")


class ServiceBusEmulator:
    """``python -m emulators.servicebus`` on a free port; ``start()`` returns once it listens."""

    def __init__(self, config: str | Path, data_dir: str | Path | None = None, log_level: str = "warning",
                 port: int = 0) -> None:
        self.config = Path(config)
        self.data_dir = data_dir
        self.log_level = log_level
        self.requested_port = port
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    @property
    def connection_string(self) -> str:
        return connection_string(self.port)

    def start(self, timeout: float = 60.0) -> "ServiceBusEmulator":
        cmd = [sys.executable, "-m", "emulators.servicebus", "--config", str(self.config),
               "--port", str(self.requested_port), "--log-level", self.log_level]
        cmd += ["--data-dir", str(self.data_dir)] if self.data_dir else ["--in-memory"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        ready = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line.rstrip())
                match = LISTENING.search(line)
                if match and not ready.is_set():
                    self.port = int(match.group(2))
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("Service Bus emulator did not start:\n" + "\n".join(self.output))
        if self.requested_port == 0:
            # Restarts (durability tests) must come back on the same address.
            self.requested_port = self.port
        return self

    def kill(self) -> None:
        """SIGKILL: the crash the durability promise is about."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode if self.proc else None

    def __enter__(self) -> "ServiceBusEmulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
