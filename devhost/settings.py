"""App settings and host.json, read the way ``func start`` and the Functions host read them.

Contract:

* :func:`load_local_settings` reads ``local.settings.json`` from the app directory (or the
  file given with ``--settings``). Without an explicit file it falls back to
  ``local.settings.json.example`` and says so. Anything it cannot use raises
  :class:`SettingsError` with a one-line message (the CLI prints it and exits 2).
* :func:`apply_to_environment` exports ``Values`` (and ``ConnectionStrings`` as
  ``ConnectionStrings:NAME``) into ``os.environ`` **before** the app is imported. As with
  ``func start``, a variable already set to a non-empty value in the environment wins and a
  line says it was skipped.
* :func:`resolve_connection` finds the connection string behind a binding's ``connection``
  property with the WebJobs lookup order: ``AzureWebJobs{name}`` first, then ``{name}``, each
  as ``ConnectionStrings:{key}`` before the plain setting.
* :func:`function_disabled` reads ``AzureWebJobs.<FUNCTION_NAME>.Disabled`` (``true`` or
  ``1``), the app setting that disables one function in Azure and under ``func start``.
* :func:`load_host_json` reads ``host.json`` into :class:`HostOptions` with the Functions
  defaults for every option devhost honours.
* :func:`host_id` is stable for one app directory on one machine, so blob receipts written
  by one run are found by the next (``AzureFunctionsWebHost__hostid`` overrides it).
"""

from __future__ import annotations

import json
import os
import re
import socket
import zlib
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

LOCAL_SETTINGS = "local.settings.json"
LOCAL_SETTINGS_EXAMPLE = "local.settings.json.example"
DEFAULT_PORT = 7071


class SettingsError(Exception):
    """A settings or host.json problem the user must fix; the message is one line."""


@dataclass(frozen=True)
class LocalSettings:
    path: Path
    values: dict[str, str | None]
    connection_strings: dict[str, str]
    local_http_port: int | None
    is_example: bool


def _settings_file(app_dir: Path, explicit: Path | None) -> tuple[Path, bool]:
    """The settings file to read, and whether it is the committed example."""
    if explicit is not None:
        if not explicit.is_file():
            raise SettingsError(f"settings file not found: {explicit}")
        return explicit, False
    for name, is_example in ((LOCAL_SETTINGS, False), (LOCAL_SETTINGS_EXAMPLE, True)):
        if (app_dir / name).is_file():
            return app_dir / name, is_example
    raise SettingsError(f"no {LOCAL_SETTINGS} (nor {LOCAL_SETTINGS_EXAMPLE}) in {app_dir}: copy the example "
                        f"or pass --settings")


def load_local_settings(app_dir: Path, explicit: Path | None = None) -> LocalSettings:
    path, is_example = _settings_file(app_dir, explicit)
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(doc, dict):
        raise SettingsError(f"{path} must hold a JSON object")
    if doc.get("IsEncrypted") is True:
        raise SettingsError(f"{path} is encrypted (IsEncrypted: true); run `func settings decrypt` first")

    values_doc = doc.get("Values", {})
    if not isinstance(values_doc, dict):
        raise SettingsError(f"{path}: \"Values\" must be an object of name: string")
    values: dict[str, str | None] = {}
    for name, value in values_doc.items():
        values[name] = _setting_text(path, "Values", name, value)

    conn_doc = doc.get("ConnectionStrings", {})
    if not isinstance(conn_doc, dict):
        raise SettingsError(f"{path}: \"ConnectionStrings\" must be an object of name: string")
    connection_strings: dict[str, str] = {}
    for name, value in conn_doc.items():
        # Core Tools also accepts {"ConnectionString": ..., "ProviderName": ...} entries.
        if isinstance(value, dict):
            value = value.get("ConnectionString")
        text = _setting_text(path, "ConnectionStrings", name, value)
        if text is not None:
            connection_strings[name] = text

    host_doc = doc.get("Host", {})
    if not isinstance(host_doc, dict):
        raise SettingsError(f"{path}: \"Host\" must be an object")
    port = host_doc.get("LocalHttpPort")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        raise SettingsError(f"{path}: Host.LocalHttpPort must be a port number, got {port!r}")
    return LocalSettings(path, values, connection_strings, port, is_example)


def _setting_text(path: Path, section: str, name: str, value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    # .NET's JSON reader turns scalars into their invariant text; booleans become True/False.
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return str(value)
    raise SettingsError(f"{path}: {section}.{name} must be a string, got {type(value).__name__}")


def apply_to_environment(
    settings: LocalSettings,
    extra: Mapping[str, str],
    environ: MutableMapping[str, str] = os.environ,
    say: Callable[[str], None] = print,
) -> None:
    """Export settings into *environ*; a non-empty variable already there is kept."""
    merged: dict[str, str | None] = dict(settings.values)
    merged.update({f"ConnectionStrings:{k}": v for k, v in settings.connection_strings.items()})
    merged.update(extra)
    for name, value in merged.items():
        if not name:
            say("Skipping local setting with empty key.")
        elif environ.get(name):
            say(f"Skipping '{name}' from local settings as it's already defined in current environment variables.")
        elif value is None:
            say(f"Skipping '{name}' because value is null")
        else:
            environ[name] = value


def resolve_connection(name: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """The connection string for a binding's ``connection`` setting name, or None."""
    for key in (f"AzureWebJobs{name}", name):
        for candidate in (f"ConnectionStrings:{key}", f"ConnectionStrings__{key}", key):
            value = environ.get(candidate)
            if value:
                return value
    return None


def identity_connection_configured(name: str, environ: Mapping[str, str] = os.environ) -> bool:
    """True when *name* is set up as an identity-based connection (``name__serviceUri`` ...)."""
    prefixes = (f"{name}__", f"AzureWebJobs{name}__")
    return any(key.startswith(prefixes) for key in environ)


def disabled_setting(function_name: str) -> str:
    return f"AzureWebJobs.{function_name}.Disabled"


def function_disabled(function_name: str, environ: Mapping[str, str] = os.environ) -> bool:
    """True when the app setting ``AzureWebJobs.<name>.Disabled`` is ``true`` or ``1``.

    As in the host, the setting's name is matched without regard to case (the host's
    configuration keys ignore case) and so is ``true``; anything else (``false``, ``0``,
    empty, absent) leaves the function enabled. Read once, at startup: changing an app setting
    restarts a Functions host, so here it takes a restart too.
    """
    wanted = disabled_setting(function_name).lower()
    return any(key.lower() == wanted and value.strip().lower() in ("true", "1") for key, value in environ.items())


def host_id(app_dir: Path, environ: Mapping[str, str] = os.environ) -> str:
    explicit = environ.get("AzureFunctionsWebHost__hostid")
    if explicit:
        return explicit.lower()[:32]
    machine = re.sub(r"[^a-z0-9]", "", socket.gethostname().lower()) or "devhost"
    digest = zlib.crc32(str(app_dir.resolve()).encode("utf-8"))
    # The host limits ids to 32 characters; keep the hash so two apps on one machine differ.
    suffix = f"-{digest:08x}"
    return (machine[: 32 - len(suffix)] + suffix).strip("-")


# ---------------------------------------------------------------------------------------- host.json


def _cpu_count() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class ServiceBusOptions:
    """``extensions.serviceBus`` with the Service Bus extension 5.x defaults."""

    max_concurrent_calls: int = field(default_factory=lambda: 16 * _cpu_count())
    max_concurrent_sessions: int = 8
    max_concurrent_calls_per_session: int = 1
    prefetch_count: int = 0
    auto_complete_messages: bool = True
    max_auto_lock_renewal: timedelta = timedelta(minutes=5)
    # The host's default is the client's try timeout (60 s); locally a short idle time hands
    # an emptied session back quickly. host.json ``sessionIdleTimeout`` overrides it.
    session_idle_timeout: timedelta = timedelta(seconds=2)
    max_message_batch_size: int = 1000
    max_batch_wait_time: timedelta = timedelta(seconds=30)


@dataclass(frozen=True)
class BlobsOptions:
    """``extensions.blobs`` (extension 5.x) plus devhost's polling interval."""

    max_degree_of_parallelism: int = field(default_factory=lambda: 8 * _cpu_count())
    poison_blob_threshold: int = 5
    # Azure's polling trigger scans every few seconds to minutes and its Event Grid-based one
    # reacts in about a second. Locally a container listing every 0.25 s stands in for the
    # latter: an idle listing costs devhost and Azurite about 1% of a core together (measured:
    # 0.27 CPU-seconds per 20 s more than listing every second), so a container where nothing
    # happens is listed less often, down to once a second (``blobs.QUIET_POLL_SECONDS``).
    # ``DEVHOST_BLOB_POLL_SECONDS`` overrides it.
    poll_interval: float = 0.25


# How long an HTTP request's body may take to arrive; a client that stalls mid-body (or declares a
# body it never sends) is answered 408 and closed, as Kestrel does under the Functions host.
# ``DEVHOST_HTTP_BODY_TIMEOUT_SECONDS`` overrides it.
HTTP_BODY_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class HostOptions:
    route_prefix: str = "api"
    http_body_timeout: float = HTTP_BODY_TIMEOUT_SECONDS
    service_bus: ServiceBusOptions = field(default_factory=ServiceBusOptions)
    blobs: BlobsOptions = field(default_factory=BlobsOptions)
    raw: dict[str, Any] = field(default_factory=dict)


_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,7}))?$")


def parse_timespan(text: str) -> timedelta:
    """.NET TimeSpan text (``[d.]hh:mm:ss[.fffffff]``), as host.json uses."""
    match = _TIMESPAN.match(text.strip())
    if not match:
        raise ValueError(f"not a TimeSpan (d.hh:mm:ss): {text!r}")
    days, hours, minutes, seconds, fraction = match.groups()
    return timedelta(
        days=int(days or 0), hours=int(hours), minutes=int(minutes), seconds=int(seconds),
        microseconds=int((fraction or "0").ljust(7, "0")[:7]) // 10,
    )


def _section(doc: Mapping[str, Any], *names: str) -> dict[str, Any]:
    """Case-insensitive nested lookup: the host's configuration keys ignore case."""
    current: Mapping[str, Any] = doc
    for name in names:
        found = next((v for k, v in current.items() if k.lower() == name.lower()), None)
        if not isinstance(found, dict):
            return {}
        current = found
    return dict(current)


def _get(section: Mapping[str, Any], name: str) -> Any:
    return next((v for k, v in section.items() if k.lower() == name.lower()), None)


def load_host_json(app_dir: Path, environ: Mapping[str, str] = os.environ) -> HostOptions:
    path = app_dir / "host.json"
    if not path.is_file():
        doc: dict[str, Any] = {}
    else:
        try:
            doc = json.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"cannot read {path}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
        if not isinstance(doc, dict):
            raise SettingsError(f"{path} must hold a JSON object")
        version = doc.get("version")
        if version is not None and version != "2.0":
            raise SettingsError(f"{path}: \"version\" must be \"2.0\", got {version!r}")

    def number(section: Mapping[str, Any], name: str, default: int, where: str) -> int:
        value = _get(section, name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SettingsError(f"{path}: {where}.{name} must be a non-negative integer, got {value!r}")
        return value

    def span(section: Mapping[str, Any], name: str, default: timedelta, where: str) -> timedelta:
        value = _get(section, name)
        if value is None:
            return default
        try:
            return parse_timespan(str(value))
        except ValueError as exc:
            raise SettingsError(f"{path}: {where}.{name}: {exc}") from None

    http = _section(doc, "extensions", "http")
    prefix = _get(http, "routePrefix")
    route_prefix = "api" if prefix is None else str(prefix).strip("/")

    sb = _section(doc, "extensions", "serviceBus")
    where = "extensions.serviceBus"
    defaults = ServiceBusOptions()
    auto_complete = _get(sb, "autoCompleteMessages")
    if auto_complete is not None and not isinstance(auto_complete, bool):
        raise SettingsError(f"{path}: {where}.autoCompleteMessages must be true or false")
    service_bus = ServiceBusOptions(
        max_concurrent_calls=max(1, number(sb, "maxConcurrentCalls", defaults.max_concurrent_calls, where)),
        max_concurrent_sessions=max(1, number(sb, "maxConcurrentSessions", defaults.max_concurrent_sessions, where)),
        max_concurrent_calls_per_session=max(
            1, number(sb, "maxConcurrentCallsPerSession", defaults.max_concurrent_calls_per_session, where)),
        prefetch_count=number(sb, "prefetchCount", defaults.prefetch_count, where),
        auto_complete_messages=defaults.auto_complete_messages if auto_complete is None else auto_complete,
        max_auto_lock_renewal=span(sb, "maxAutoLockRenewalDuration", defaults.max_auto_lock_renewal, where),
        session_idle_timeout=span(sb, "sessionIdleTimeout", defaults.session_idle_timeout, where),
        max_message_batch_size=max(1, number(sb, "maxMessageBatchSize", defaults.max_message_batch_size, where)),
        max_batch_wait_time=span(sb, "maxBatchWaitTime", defaults.max_batch_wait_time, where),
    )

    blobs_doc = _section(doc, "extensions", "blobs")
    blob_defaults = BlobsOptions()
    poll_interval = _env_seconds(environ, "DEVHOST_BLOB_POLL_SECONDS", blob_defaults.poll_interval)
    body_timeout = _env_seconds(environ, "DEVHOST_HTTP_BODY_TIMEOUT_SECONDS", HTTP_BODY_TIMEOUT_SECONDS)
    if not body_timeout > 0:
        raise SettingsError(f"DEVHOST_HTTP_BODY_TIMEOUT_SECONDS must be more than 0 seconds, got {body_timeout:g}")
    blobs = BlobsOptions(
        max_degree_of_parallelism=max(1, number(
            blobs_doc, "maxDegreeOfParallelism", blob_defaults.max_degree_of_parallelism, "extensions.blobs")),
        poison_blob_threshold=max(1, number(
            blobs_doc, "poisonBlobThreshold", blob_defaults.poison_blob_threshold, "extensions.blobs")),
        poll_interval=max(0.05, poll_interval),
    )
    return HostOptions(route_prefix=route_prefix, http_body_timeout=body_timeout, service_bus=service_bus,
                       blobs=blobs, raw=doc)


def _env_seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    return value
