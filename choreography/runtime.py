"""Process-wide adapters, built once — lazily, on the first invocation, never at import time.

Function handlers ask :func:`runtime` for their service (``runtime().service(build)``); each
service's ``bootstrap.build`` wires its adapters from the shared clients here. Tests wire fakes
by building services themselves, or point the real wiring at emulators with :func:`reset_runtime`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from azure.data.tables import TableClient, TableServiceClient

from . import connections
from . import settings as names
from .clock import Clock, SystemClock
from .publishing import EventGridPublisher, ServiceBusPublisher
from .settings import Settings

T = TypeVar("T")


class Runtime:
    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self._lock = threading.RLock()
        self._publisher: ServiceBusPublisher | None = None
        self._events: EventGridPublisher | None = None
        self._tables: TableServiceClient | None = None
        self._table_clients: dict[str, TableClient] = {}
        self._services: dict[Callable[..., Any], Any] = {}

    @property
    def publisher(self) -> ServiceBusPublisher:
        with self._lock:
            if self._publisher is None:
                namespace = self.settings.service_bus_namespace()
                self._publisher = ServiceBusPublisher(
                    namespace.connection_string or namespace.namespace(), self.clock,
                    client_factory=lambda _: connections.service_bus_client(namespace))
            return self._publisher

    @property
    def events(self) -> EventGridPublisher:
        with self._lock:
            if self._events is None:
                endpoint = self.settings.require(self.settings.event_grid_endpoint, names.EVENT_GRID_ENDPOINT)
                self._events = EventGridPublisher(endpoint, self.settings.event_grid_key, self.clock,
                                                  identity=self.settings.event_grid_identity)
            return self._events

    def table(self, name: str) -> TableClient:
        """A client for table ``name``, created in the storage account on first use."""
        with self._lock:
            client = self._table_clients.get(name)
            if client is None:
                if self._tables is None:
                    self._tables = connections.table_service(self.settings.storage_account())
                client = self._tables.create_table_if_not_exists(name)
                self._table_clients[name] = client
            return client

    def service(self, build: Callable[[Runtime], T]) -> T:
        """``build(self)``, once per process."""
        with self._lock:
            if build not in self._services:
                self._services[build] = build(self)
            return self._services[build]  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._lock:
            for closable in (self._publisher, self._events):
                if closable is not None:
                    closable.close()
            for client in self._table_clients.values():
                client.close()
            if self._tables is not None:
                self._tables.close()
            self._publisher = self._events = self._tables = None
            self._table_clients.clear()
            self._services.clear()


_current: Runtime | None = None
_current_lock = threading.Lock()


def runtime() -> Runtime:
    """The process's runtime, created from the app settings on first use."""
    global _current
    with _current_lock:
        if _current is None:
            _current = Runtime(Settings.from_env())
        return _current


def reset_runtime(replacement: Runtime | None = None) -> None:
    """Close the current runtime; the next :func:`runtime` call builds ``replacement`` or a new one."""
    global _current
    with _current_lock:
        if _current is not None:
            _current.close()
        _current = replacement
