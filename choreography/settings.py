"""The one settings loader: app settings in Azure, environment variables (or local.settings.json
read by the host) locally. Names are the app-setting names, so they are the same everywhere.
One :class:`Settings` holds what every workload shares and the drone delivery's; its section
:class:`PaymentSettings` holds the payment-file pipeline's:

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
``PAYMENT_FILES_BLOB_TRIGGER_SOURCE``   how FileValidator learns of uploads: ``EventGrid`` (Azure's
                                        BlobCreated events; the only kind Flex Consumption runs)
                                        or ``LogsAndContainerScan`` (polling; the default)
``REMEDIATION_MAX_ATTEMPTS``            resubmissions of a transiently failed message before it
                                        is parked for a person (3)
``REMEDIATION_RETRY_BASE_SECONDS``      delay before the first resubmission (30), doubled for each
                                        later one, at most ``REMEDIATION_RETRY_MAX_SECONDS`` (1800)
======================================  ==========================================================

Connections take either form the Functions host accepts (:class:`Connection`): a connection
string in the setting itself (locally: the emulators and Azurite), or, in Azure, identity-based
settings under the same name with ``__``: ``AzureWebJobsStorage__accountName`` (or
``__blobServiceUri`` / ``__tableServiceUri`` / ``__queueServiceUri``),
``ServiceBusConnection__fullyQualifiedNamespace``, and for either ``__credential``
(``managedidentity``) and ``__clientId`` (a user-assigned identity). An Event Grid topic with no
``...TopicKey`` is published to with an identity, chosen by ``EventGridTopic__credential`` /
``__clientId`` (``PaymentsEventGridTopic__...`` for the payments topic).
:mod:`choreography.connections` builds the SDK clients from these.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

# Names of app settings. The Service Bus one is also the `connection` of every trigger.
STORAGE_CONNECTION = "AzureWebJobsStorage"
SERVICE_BUS_CONNECTION = "ServiceBusConnection"
EVENT_GRID_ENDPOINT = "EventGridTopicEndpoint"
EVENT_GRID_KEY = "EventGridTopicKey"
FLIGHT_TIME_SECONDS = "FLIGHT_TIME_SECONDS"
JOIN_TIMEOUT_SECONDS = "JOIN_TIMEOUT_SECONDS"
DRONE_RETRY_BASE_SECONDS = "DRONE_RETRY_BASE_SECONDS"
DRONE_RETRY_MAX_SECONDS = "DRONE_RETRY_MAX_SECONDS"

# The payment-file pipeline's section.
PAYMENTS_EVENT_GRID_ENDPOINT = "PaymentsEventGridTopicEndpoint"
PAYMENTS_EVENT_GRID_KEY = "PaymentsEventGridTopicKey"
PAYMENT_FILES_MAX_BYTES = "PAYMENT_FILES_MAX_BYTES"
PAYMENT_FILES_CLOCK = "PAYMENT_FILES_CLOCK"
PAYMENT_FILES_MAX_ATTEMPTS = "PAYMENT_FILES_MAX_ATTEMPTS"
PAYMENT_FILES_RETRY_BASE_SECONDS = "PAYMENT_FILES_RETRY_BASE_SECONDS"
PAYMENT_FILES_SPOOL_DIR = "PAYMENT_FILES_SPOOL_DIR"
PAYMENT_FILES_BLOB_TRIGGER_SOURCE = "PAYMENT_FILES_BLOB_TRIGGER_SOURCE"
# Prefixes of the identity settings of the Event Grid topics (``EventGridTopic__credential``).
EVENT_GRID_IDENTITY = "EventGridTopic"
PAYMENTS_EVENT_GRID_IDENTITY = "PaymentsEventGridTopic"
BLOB_TRIGGER_SOURCES = {"eventgrid": "EventGrid", "logsandcontainerscan": "LogsAndContainerScan"}
# The remediation service's section.
REMEDIATION_MAX_ATTEMPTS = "REMEDIATION_MAX_ATTEMPTS"
REMEDIATION_RETRY_BASE_SECONDS = "REMEDIATION_RETRY_BASE_SECONDS"
REMEDIATION_RETRY_MAX_SECONDS = "REMEDIATION_RETRY_MAX_SECONDS"
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_MAX_ATTEMPTS = 6
DEFAULT_RETRY_BASE = timedelta(seconds=10)

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
    raw = env.get(PAYMENT_FILES_CLOCK, "").strip()
    if not raw or raw.lower() == "system":
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise SettingsError(f"{PAYMENT_FILES_CLOCK}={raw!r} is neither 'system' nor an ISO-8601 instant") from None
    if moment.tzinfo is None:
        raise SettingsError(f"{PAYMENT_FILES_CLOCK}={raw!r} needs a UTC offset (e.g. 2026-11-20T09:00:00Z)")
    return moment


@dataclass(frozen=True)
class Identity:
    """Which Entra ID credential a connection uses: ``credential`` ``managedidentity`` (with
    ``client_id`` for a user-assigned identity) is a managed identity; nothing set is
    ``DefaultAzureCredential`` (a managed identity in Azure, ``az login`` on a laptop)."""

    credential: str = ""
    client_id: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str], prefix: str) -> Identity:
        credential = env.get(f"{prefix}__credential", "").strip()
        if credential and credential.lower() != "managedidentity":
            raise SettingsError(f"{prefix}__credential={credential!r}: the only value is 'managedidentity'")
        return cls(credential=credential.lower(), client_id=env.get(f"{prefix}__clientId", "").strip())

    @property
    def managed(self) -> bool:
        return self.credential == "managedidentity" or bool(self.client_id)


@dataclass(frozen=True)
class Connection:
    """One connection setting in either form the Functions host reads: ``setting`` holding a
    connection string, or ``setting__fullyQualifiedNamespace`` / ``__accountName`` /
    ``__blobServiceUri`` / ``__tableServiceUri`` / ``__queueServiceUri`` with an identity."""

    setting: str
    connection_string: str = ""
    fully_qualified_namespace: str = ""
    account_name: str = ""
    blob_service_uri: str = ""
    table_service_uri: str = ""
    queue_service_uri: str = ""
    identity: Identity = field(default_factory=Identity)

    @classmethod
    def from_env(cls, env: Mapping[str, str], setting: str) -> Connection:
        def part(name: str) -> str:
            return env.get(f"{setting}__{name}", "").strip()

        return cls(setting=setting, connection_string=env.get(setting, "").strip(),
                   fully_qualified_namespace=part("fullyQualifiedNamespace"), account_name=part("accountName"),
                   blob_service_uri=part("blobServiceUri"), table_service_uri=part("tableServiceUri"),
                   queue_service_uri=part("queueServiceUri"), identity=Identity.from_env(env, setting))

    @property
    def identity_based(self) -> bool:
        return not self.connection_string

    def namespace(self) -> str:
        """Service Bus: the namespace's host name (``sb://`` and a trailing ``/`` tolerated)."""
        name = self.fully_qualified_namespace.removeprefix("sb://").rstrip("/")
        if not name:
            raise SettingsError(f"app setting {self.setting} (or {self.setting}__fullyQualifiedNamespace) is not set")
        return name

    def service_uri(self, service: str) -> str:
        """Storage: the ``blob``, ``table`` or ``queue`` endpoint, from its ``__{service}ServiceUri``
        or from ``__accountName`` (public Azure cloud)."""
        explicit = {"blob": self.blob_service_uri, "table": self.table_service_uri,
                    "queue": self.queue_service_uri}[service]
        if explicit:
            return explicit
        if self.account_name:
            return f"https://{self.account_name}.{service}.core.windows.net"
        raise SettingsError(f"app setting {self.setting} (or {self.setting}__accountName, or "
                            f"{self.setting}__{service}ServiceUri) is not set")


def blob_trigger_source(env: Mapping[str, str] | None = None) -> str:
    """``source`` of FileValidator's blob trigger: ``EventGrid`` or ``LogsAndContainerScan``."""
    env = os.environ if env is None else env
    raw = env.get(PAYMENT_FILES_BLOB_TRIGGER_SOURCE, "").strip() or "LogsAndContainerScan"
    try:
        return BLOB_TRIGGER_SOURCES[raw.lower()]
    except KeyError:
        raise SettingsError(f"{PAYMENT_FILES_BLOB_TRIGGER_SOURCE}={raw!r} is neither 'EventGrid' nor "
                            "'LogsAndContainerScan'") from None


@dataclass(frozen=True)
class PaymentSettings:
    """The payment-file pipeline's section (the table above)."""

    event_grid_endpoint: str = ""
    event_grid_key: str = ""
    event_grid_identity: Identity = field(default_factory=Identity)
    max_bytes: int = DEFAULT_MAX_BYTES
    fixed_now: datetime | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    retry_base: timedelta = DEFAULT_RETRY_BASE
    spool_dir: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PaymentSettings:
        return cls(
            event_grid_endpoint=env.get(PAYMENTS_EVENT_GRID_ENDPOINT, ""),
            event_grid_key=env.get(PAYMENTS_EVENT_GRID_KEY, ""),
            event_grid_identity=Identity.from_env(env, PAYMENTS_EVENT_GRID_IDENTITY),
            max_bytes=_positive_int(env, PAYMENT_FILES_MAX_BYTES, DEFAULT_MAX_BYTES),
            fixed_now=_clock(env),
            max_attempts=_positive_int(env, PAYMENT_FILES_MAX_ATTEMPTS, DEFAULT_MAX_ATTEMPTS),
            retry_base=_positive_seconds(env, PAYMENT_FILES_RETRY_BASE_SECONDS, DEFAULT_RETRY_BASE),
            spool_dir=env.get(PAYMENT_FILES_SPOOL_DIR, "").strip() or None,
        )


@dataclass(frozen=True)
class RemediationSettings:
    max_attempts: int = 3
    retry_base: timedelta = timedelta(seconds=30)
    retry_max: timedelta = timedelta(minutes=30)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RemediationSettings:
        return cls(max_attempts=_positive_int(env, REMEDIATION_MAX_ATTEMPTS, cls.max_attempts),
                   retry_base=_positive_seconds(env, REMEDIATION_RETRY_BASE_SECONDS, cls.retry_base),
                   retry_max=_positive_seconds(env, REMEDIATION_RETRY_MAX_SECONDS, cls.retry_max))


@dataclass(frozen=True)
class Settings:
    storage_connection: str = ""
    service_bus_connection: str = ""
    event_grid_endpoint: str = ""
    event_grid_key: str = ""
    event_grid_identity: Identity = field(default_factory=Identity)
    # The identity forms of the two connections (from_env); None: the strings above alone.
    storage: Connection | None = None
    service_bus: Connection | None = None
    flight_time: timedelta = timedelta(seconds=DEFAULTS[FLIGHT_TIME_SECONDS])
    join_timeout: timedelta = timedelta(seconds=DEFAULTS[JOIN_TIMEOUT_SECONDS])
    drone_retry_base: timedelta = timedelta(seconds=DEFAULTS[DRONE_RETRY_BASE_SECONDS])
    drone_retry_max: timedelta = timedelta(seconds=DEFAULTS[DRONE_RETRY_MAX_SECONDS])
    payments: PaymentSettings = field(default_factory=PaymentSettings)
    remediation: RemediationSettings = field(default_factory=RemediationSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            storage_connection=env.get(STORAGE_CONNECTION, ""),
            service_bus_connection=env.get(SERVICE_BUS_CONNECTION, ""),
            event_grid_endpoint=env.get(EVENT_GRID_ENDPOINT, ""),
            event_grid_key=env.get(EVENT_GRID_KEY, ""),
            event_grid_identity=Identity.from_env(env, EVENT_GRID_IDENTITY),
            storage=Connection.from_env(env, STORAGE_CONNECTION),
            service_bus=Connection.from_env(env, SERVICE_BUS_CONNECTION),
            flight_time=_seconds(env, FLIGHT_TIME_SECONDS),
            join_timeout=_seconds(env, JOIN_TIMEOUT_SECONDS),
            drone_retry_base=_seconds(env, DRONE_RETRY_BASE_SECONDS),
            drone_retry_max=_seconds(env, DRONE_RETRY_MAX_SECONDS),
            payments=PaymentSettings.from_env(env),
            remediation=RemediationSettings.from_env(env),
        )

    def storage_account(self) -> Connection:
        """The ``AzureWebJobsStorage`` connection, in whichever form it is set."""
        return self._connection(self.storage, self.storage_connection, STORAGE_CONNECTION,
                                ("accountName", "blobServiceUri", "tableServiceUri"))

    def service_bus_namespace(self) -> Connection:
        """The ``ServiceBusConnection`` connection, in whichever form it is set."""
        return self._connection(self.service_bus, self.service_bus_connection, SERVICE_BUS_CONNECTION,
                                ("fullyQualifiedNamespace",))

    @staticmethod
    def _connection(parsed: Connection | None, text: str, name: str, forms: tuple[str, ...]) -> Connection:
        connection = parsed if parsed is not None and parsed.connection_string == text else None
        if connection is None:
            connection = Connection(setting=name, connection_string=text)
        if connection.identity_based and not (connection.fully_qualified_namespace or connection.account_name
                                              or connection.blob_service_uri or connection.table_service_uri):
            raise SettingsError(f"app setting {name} is not set (nor {', '.join(f'{name}__{f}' for f in forms)})")
        return connection

    def require(self, value: str, name: str) -> str:
        """``value`` if set; otherwise a SettingsError naming the app setting."""
        if not value:
            raise SettingsError(f"app setting {name} is not set")
        return value
