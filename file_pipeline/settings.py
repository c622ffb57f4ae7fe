"""Settings of the payment-file pipeline, read the way :mod:`choreography.settings` reads the
app's: app settings in Azure, environment variables (or local.settings.json via the host) locally.

======================================  ==========================================================
app setting                             meaning (default)
======================================  ==========================================================
``AzureWebJobsStorage``                 blobs (all containers) and tables (shared with the app)
``ServiceBusConnection``                hand-offs, compensation, dead letters (shared)
``PaymentsEventGridTopicEndpoint``      Event Grid topic ``payments`` (CloudEvents 1.0); locally
                                        ``http://127.0.0.1:6080/topics/payments/api/events``
``PaymentsEventGridTopicKey``           its access key (locally ``local-eventgrid-key``)
``PAYMENT_FILES_MAX_BYTES``             uploads larger than this are rejected unread (536870912,
                                        512 MiB: a 1M-transaction pain.001 is about 335 MB)
``PAYMENT_FILES_CLOCK``                 ``system`` (default), or an ISO-8601 instant with offset
                                        that freezes the validation clock (demos and tests:
                                        execution dates and cut-offs are judged at that instant)
``PAYMENT_FILES_MAX_ATTEMPTS``          tries of FileAdaptor and FileCreator (6): a transient
                                        failure schedules the next try; one still failing on
                                        the last is treated as failed for good and compensated
``PAYMENT_FILES_RETRY_BASE_SECONDS``    delay before the second try (10); doubled for each
                                        later one, at most 5 minutes (10+20+40+80+160 s)
``PAYMENT_FILES_SPOOL_DIR``             where work files spill to disk (the system temp dir)
======================================  ==========================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from choreography.settings import SERVICE_BUS_CONNECTION, STORAGE_CONNECTION, SettingsError

EVENT_GRID_ENDPOINT = "PaymentsEventGridTopicEndpoint"
EVENT_GRID_KEY = "PaymentsEventGridTopicKey"
MAX_BYTES = "PAYMENT_FILES_MAX_BYTES"
CLOCK = "PAYMENT_FILES_CLOCK"
MAX_ATTEMPTS = "PAYMENT_FILES_MAX_ATTEMPTS"
RETRY_BASE_SECONDS = "PAYMENT_FILES_RETRY_BASE_SECONDS"
SPOOL_DIR = "PAYMENT_FILES_SPOOL_DIR"

DEFAULT_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_MAX_ATTEMPTS = 6
DEFAULT_RETRY_BASE = timedelta(seconds=10)


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value < 1:
        raise SettingsError(f"{name}={raw!r} must be at least 1")
    return value


def _positive_seconds(env: Mapping[str, str], name: str, default: timedelta) -> timedelta:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise SettingsError(f"{name}={raw!r} must be a positive number of seconds")
    return timedelta(seconds=value)


def _clock(env: Mapping[str, str]) -> datetime | None:
    raw = env.get(CLOCK, "").strip()
    if not raw or raw.lower() == "system":
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise SettingsError(f"{CLOCK}={raw!r} is neither 'system' nor an ISO-8601 instant") from None
    if moment.tzinfo is None:
        raise SettingsError(f"{CLOCK}={raw!r} needs a UTC offset (e.g. 2026-11-20T09:00:00Z)")
    return moment


@dataclass(frozen=True)
class PipelineSettings:
    storage_connection: str = ""
    service_bus_connection: str = ""
    event_grid_endpoint: str = ""
    event_grid_key: str = ""
    max_bytes: int = DEFAULT_MAX_BYTES
    fixed_now: datetime | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    retry_base: timedelta = DEFAULT_RETRY_BASE
    spool_dir: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PipelineSettings:
        env = os.environ if env is None else env
        return cls(
            storage_connection=env.get(STORAGE_CONNECTION, ""),
            service_bus_connection=env.get(SERVICE_BUS_CONNECTION, ""),
            event_grid_endpoint=env.get(EVENT_GRID_ENDPOINT, ""),
            event_grid_key=env.get(EVENT_GRID_KEY, ""),
            max_bytes=_positive_int(env, MAX_BYTES, DEFAULT_MAX_BYTES),
            fixed_now=_clock(env),
            max_attempts=_positive_int(env, MAX_ATTEMPTS, DEFAULT_MAX_ATTEMPTS),
            retry_base=_positive_seconds(env, RETRY_BASE_SECONDS, DEFAULT_RETRY_BASE),
            spool_dir=env.get(SPOOL_DIR, "").strip() or None,
        )

    @staticmethod
    def require(value: str, name: str) -> str:
        if not value:
            raise SettingsError(f"app setting {name} is not set")
        return value
