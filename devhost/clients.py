"""One place that builds and closes the Azure SDK clients devhost talks through.

Contract: clients are built on first use from a connection string (or an endpoint and key)
and shared by every trigger and output that names the same one; :meth:`Clients.close`
closes them all once, at shutdown. All clients are the real SDKs' asyncio flavours, so
whatever the connection string points at (an emulator, Azurite, Azure) is what is used.
"""

from __future__ import annotations

import functools
import logging
import os
import ssl
import urllib.request
from typing import Any

from azure.core.credentials import AzureKeyCredential
from azure.core.pipeline.transport import AioHttpTransport
from azure.eventgrid.aio import EventGridPublisherClient
from azure.servicebus.aio import ServiceBusClient
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

log = logging.getLogger("devhost.clients")


class Clients:
    def __init__(self) -> None:
        self._service_bus: dict[str, ServiceBusClient] = {}
        self._blob: dict[str, BlobServiceClient] = {}
        self._queues: dict[tuple[str, str], QueueClient] = {}
        self._event_grid: dict[tuple[str, str], EventGridPublisherClient] = {}

    def service_bus(self, connection_string: str) -> ServiceBusClient:
        client = self._service_bus.get(connection_string)
        if client is None:
            # The SDK's own retries are kept short: devhost's listeners add their own backoff
            # around them, so a broker that went away does not stall shutdown for minutes.
            # Every receiver opens its own AMQP connection, and without a ready context the SDK builds
            # an SSLContext (reading the CA bundle from disk) for each one, TLS or not. Session
            # triggers open a receiver per session, so that cost dominated; one context serves all.
            client = ServiceBusClient.from_connection_string(connection_string, retry_total=2, retry_backoff_max=5,
                                                             ssl_context=_tls_context())
            self._service_bus[connection_string] = client
        return client

    def blob_service(self, connection_string: str) -> BlobServiceClient:
        client = self._blob.get(connection_string)
        if client is None:
            client = BlobServiceClient.from_connection_string(connection_string, transport=_http_transport())
            self._blob[connection_string] = client
        return client

    def queue(self, connection_string: str, queue_name: str) -> QueueClient:
        key = (connection_string, queue_name)
        client = self._queues.get(key)
        if client is None:
            # The Functions host writes storage queue messages base64-encoded by default.
            client = QueueClient.from_connection_string(
                connection_string, queue_name, message_encode_policy=TextBase64EncodePolicy(),
                transport=_http_transport(),
            )
            self._queues[key] = client
        return client

    def event_grid(self, endpoint: str, key: str) -> EventGridPublisherClient:
        cache_key = (endpoint, key)
        client = self._event_grid.get(cache_key)
        if client is None:
            client = EventGridPublisherClient(endpoint, AzureKeyCredential(key), transport=_http_transport())
            self._event_grid[cache_key] = client
        return client

    async def close(self) -> None:
        everything: list[Any] = [*self._service_bus.values(), *self._blob.values(), *self._queues.values(),
                      *self._event_grid.values()]
        self._service_bus.clear()
        self._blob.clear()
        self._queues.clear()
        self._event_grid.clear()
        for client in everything:
            try:
                await client.close()
            except Exception:  # closing a client whose peer vanished must not block shutdown
                log.debug("closing %r failed", client, exc_info=True)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def _http_transport() -> AioHttpTransport:
    return AioHttpTransport(use_env_settings=environment_has_http_settings())


@functools.cache
def environment_has_http_settings() -> bool:
    """Whether the environment names an HTTP proxy or a netrc file, read once at startup.

    aiohttp trusting the environment looks both up on every request, in worker threads (two
    thread hand-offs per call): with the blob poller listing four times a second that was most of
    an idle devhost's CPU. Without either, those look-ups can only come back empty, so the clients
    skip them; with either, the clients use them as before.
    """
    netrc = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    return bool(urllib.request.getproxies_environment()) or os.path.exists(netrc)
