"""Seed every piece of reference data the workloads need, idempotently (``make seed``)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

from .stack import ROOT

# Each workload ships its own seeding entry point; all are safe to run twice.
SEEDERS = ["drone_scheduler.seed", "file_pipeline.seed"]


def seed_all(storage_connection: str) -> None:
    for module in SEEDERS:
        if importlib.util.find_spec(module) is None:
            continue
        # Every seeder reads AzureWebJobsStorage (or its identity form), as the functions do.
        env = {**os.environ, "AzureWebJobsStorage": storage_connection} if storage_connection else dict(os.environ)
        subprocess.run([sys.executable, "-m", module], cwd=ROOT, check=True, env=env)
