"""The SDK clients of the app's connections, built from :mod:`choreography.settings`: with the
connection string when the setting holds one (locally: Azurite and the emulators), otherwise
with an Entra ID credential (in Azure: the app's managed identity), as the Functions host does
for the same settings. Nothing here opens a connection; the clients connect on first use.

One credential object per identity per process: each caches its tokens. The HTTP clients
of Tables and Blobs look the environment's HTTP settings up per call only when it has
a proxy or a netrc file (:func:`http_transport`).
"""

from __future__ import annotations

import functools
import os
import urllib.request
from typing import Any

from azure.core.credentials import AzureKeyCredential, TokenCredential
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableServiceClient
from azure.eventgrid import EventGridPublisherClient
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.servicebus import ServiceBusClient
from azure.storage.blob import BlobServiceClient

from .settings import Connection, Identity, Settings, SettingsError

AZURITE = "UseDevelopmentStorage=true"


@functools.cache
def credential(identity: Identity) -> TokenCredential:
    """``ManagedIdentityCredential`` (with the client id of a user-assigned identity) when the
    settings say ``managedidentity`` or name a client id; ``DefaultAzureCredential`` otherwise."""
    if identity.managed:
        return ManagedIdentityCredential(client_id=identity.client_id or None)
    return DefaultAzureCredential()


def service_bus_client(connection: Connection, **options: Any) -> ServiceBusClient:
    if connection.connection_string:
        return ServiceBusClient.from_connection_string(connection.connection_string, **options)
    return ServiceBusClient(connection.namespace(), credential(connection.identity), **options)


def table_service(connection: Connection, **options: Any) -> TableServiceClient:
    options.setdefault("transport", http_transport())
    if connection.connection_string:
        return TableServiceClient.from_connection_string(connection.connection_string, **options)
    return TableServiceClient(connection.service_uri("table"), credential=credential(connection.identity),
                              **options)


def blob_service(connection: Connection, **options: Any) -> BlobServiceClient:
    options.setdefault("transport", http_transport())
    if connection.connection_string:
        return BlobServiceClient.from_connection_string(connection.connection_string, **options)
    return BlobServiceClient(connection.service_uri("blob"), credential=credential(connection.identity), **options)


def event_grid_publisher(endpoint: str, key: str, identity: Identity) -> EventGridPublisherClient:
    """With the topic's access key when there is one (locally), else with the identity."""
    # No transport of ours here: for a basic topic azure-eventgrid 4.22 builds its client without
    # the options it is given, so it keeps the per-call look-ups (one publish per delivery).
    if key:
        return EventGridPublisherClient(endpoint, AzureKeyCredential(key))
    return EventGridPublisherClient(endpoint, credential(identity))


def http_transport() -> RequestsTransport:
    """The transport of one SDK client (its own ``requests`` session and connection pool).

    A ``requests`` session that trusts the environment looks it up on every call (the netrc
    files on disk, the proxy and CA-bundle variables): about a tenth of a Table call's CPU in
    the client. Unless there is a proxy or a netrc file to find, the session does not, and the
    CA bundle ``requests`` would take from the environment is read once here.
    """
    if environment_has_http_settings():
        return RequestsTransport()
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    return RequestsTransport(use_env_settings=False, **({"connection_verify": bundle} if bundle else {}))


@functools.cache
def environment_has_http_settings() -> bool:
    """Whether the environment names an HTTP proxy or a netrc file, read once per process."""
    if urllib.request.getproxies_environment():
        return True
    if os.environ.get("NETRC"):
        return os.path.exists(os.environ["NETRC"])
    home = os.path.expanduser("~")
    return any(os.path.exists(os.path.join(home, name)) for name in (".netrc", "_netrc"))


def storage_tables(connection_string: str = "") -> TableServiceClient:
    """For the command-line seeders: ``connection_string`` if given, else ``AzureWebJobsStorage``
    in either form (``AzureWebJobsStorage__accountName=... python -m devstack seed`` seeds an
    Azure account whose shared keys are off, as whoever ``az login`` is), else Azurite."""
    if connection_string:
        return TableServiceClient.from_connection_string(connection_string)
    settings = Settings.from_env()
    try:
        return table_service(settings.storage_account())
    except SettingsError:
        return TableServiceClient.from_connection_string(AZURITE)
