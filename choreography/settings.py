"""The one settings loader: app settings in Azure, environment variables (or local.settings.json
read by the host) locally. Names are the app-setting names, so they are the same everywhere.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

# Names of app settings. The Service Bus one is also the `connection` of every trigger.
STORAGE_CONNECTION = "AzureWebJobsStorage"
SERVICE_BUS_CONNECTION = "ServiceBusConnection"
EVENT_GRID_ENDPOINT = "EventGridTopicEndpoint"
EVENT_GRID_KEY = "EventGridTopicKey"
FLIGHT_TIME_SECONDS = "FLIGHT_TIME_SECONDS"
JOIN_TIMEOUT_SECONDS = "JOIN_TIMEOUT_SECONDS"
DRONE_RETRY_BASE_SECONDS = "DRONE_RETRY_BASE_SECONDS"
DRONE_RETRY_MAX_SECONDS = "DRONE_RETRY_MAX_SECONDS"

DEFAULTS = {
    FLIGHT_TIME_SECONDS: 0.0,
    JOIN_TIMEOUT_SECONDS: 300.0,
    DRONE_RETRY_BASE_SECONDS: 2.0,
    DRONE_RETRY_MAX_SECONDS: 60.0,
}


class SettingsError(RuntimeError):
    """A setting is missing or unusable; the message names it."""


def _seconds(env: Mapping[str, str], name: str) -> timedelta:
    raw = env.get(name, "")
    if not raw.strip():
        return timedelta(seconds=DEFAULTS[name])
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number of seconds") from None
    if value < 0 or not math.isfinite(value):
        raise SettingsError(f"{name}={raw!r} must be a finite number of seconds >= 0")
    return timedelta(seconds=value)


@dataclass(frozen=True)
class Settings:
    storage_connection: str = ""
    service_bus_connection: str = ""
    event_grid_endpoint: str = ""
    event_grid_key: str = ""
    flight_time: timedelta = timedelta(seconds=DEFAULTS[FLIGHT_TIME_SECONDS])
    join_timeout: timedelta = timedelta(seconds=DEFAULTS[JOIN_TIMEOUT_SECONDS])
    drone_retry_base: timedelta = timedelta(seconds=DEFAULTS[DRONE_RETRY_BASE_SECONDS])
    drone_retry_max: timedelta = timedelta(seconds=DEFAULTS[DRONE_RETRY_MAX_SECONDS])

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            storage_connection=env.get(STORAGE_CONNECTION, ""),
            service_bus_connection=env.get(SERVICE_BUS_CONNECTION, ""),
            event_grid_endpoint=env.get(EVENT_GRID_ENDPOINT, ""),
            event_grid_key=env.get(EVENT_GRID_KEY, ""),
            flight_time=_seconds(env, FLIGHT_TIME_SECONDS),
            join_timeout=_seconds(env, JOIN_TIMEOUT_SECONDS),
            drone_retry_base=_seconds(env, DRONE_RETRY_BASE_SECONDS),
            drone_retry_max=_seconds(env, DRONE_RETRY_MAX_SECONDS),
        )

    def require(self, value: str, name: str) -> str:
        """``value`` if set; otherwise a SettingsError naming the app setting."""
        if not value:
            raise SettingsError(f"app setting {name} is not set")
        return value
