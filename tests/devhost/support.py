"""Helpers for the devhost tests. devhost and the emulators themselves are started by
devstack's launchers (:class:`devstack.stack.DevHost`, :class:`devstack.stack.EventGridEmulator`),
on the same commands as the whole stack. Every wait polls against a generous deadline, so
nothing here depends on machine speed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from devstack.stack import ROOT, devhost_command
from tests.support.waiting import DEADLINE, wait_until  # noqa: F401 - the devhost tests take wait_until from here

HERE = Path(__file__).resolve().parent
SAMPLE_APP = HERE / "sample_app"
# The Event Grid emulator's retries, scaled down so a test sees a redelivery in milliseconds.
EVENTGRID_OPTIONS = ("--retry-scale", "0.001", "--delivery-timeout", "10")


def run_devhost(app_dir: Path, port: int | None, timeout: float = DEADLINE) -> subprocess.CompletedProcess[str]:
    """Run devhost to completion (for startup failures); stdout and stderr kept apart."""
    return subprocess.run(devhost_command(app_dir, port), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


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
