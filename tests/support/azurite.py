"""Start the pinned Azurite (tools/azurite) on free loopback ports for tests."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AZURITE_JS = ROOT / "tools" / "azurite" / "node_modules" / "azurite" / "dist" / "src" / "azurite.js"
ACCOUNT = "devstoreaccount1"
# Azurite's documented, public development key (not a secret).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Azurite:
    def __init__(self, location: str | Path | None = None) -> None:
        self.location = location
        self.blob_port = self.queue_port = self.table_port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                f"BlobEndpoint=http://127.0.0.1:{self.blob_port}/{ACCOUNT};"
                f"QueueEndpoint=http://127.0.0.1:{self.queue_port}/{ACCOUNT};"
                f"TableEndpoint=http://127.0.0.1:{self.table_port}/{ACCOUNT};")

    def start(self, timeout: float = 60.0) -> "Azurite":
        if not AZURITE_JS.exists():
            raise RuntimeError(f"Azurite is not installed: run `npm ci --prefix tools/azurite` ({AZURITE_JS} missing)")
        self.blob_port, self.queue_port, self.table_port = free_port(), free_port(), free_port()
        cmd = ["node", str(AZURITE_JS), "--silent", "--skipApiVersionCheck", "--loose", "--disableTelemetry",
               "--blobHost", "127.0.0.1", "--blobPort", str(self.blob_port),
               "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
               "--tableHost", "127.0.0.1", "--tablePort", str(self.table_port)]
        cmd += ["--location", str(self.location)] if self.location else ["--inMemoryPersistence"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        for port in (self.blob_port, self.queue_port, self.table_port):
            while True:
                if self.proc.poll() is not None:
                    detail = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise RuntimeError("Azurite exited: " + detail)
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"Azurite did not open port {port}") from None
                    time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def __enter__(self) -> "Azurite":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
