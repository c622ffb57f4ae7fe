"""The SDK clients of the app's connections, built from :mod:`choreography.settings`: with the
connection string when the setting holds one (locally: Azurite and the emulators), otherwise
with an Entra ID credential (in Azure: the app's managed identity), as the Functions host does
for the same settings. Nothing here opens a connection; the clients connect on first use.

One credential object per identity per process: each caches its tokens.
"""

from __future__ import annotations

import functools
from typing import Any

from azure.core.credentials import AzureKeyCredential, TokenCredential
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
    if connection.connection_string:
        return TableServiceClient.from_connection_string(connection.connection_string, **options)
    return TableServiceClient(connection.service_uri("table"), credential=credential(connection.identity),
                              **options)


def blob_service(connection: Connection, **options: Any) -> BlobServiceClient:
    if connection.connection_string:
        return BlobServiceClient.from_connection_string(connection.connection_string, **options)
    return BlobServiceClient(connection.service_uri("blob"), credential=credential(connection.identity), **options)


def event_grid_publisher(endpoint: str, key: str, identity: Identity) -> EventGridPublisherClient:
    """With the topic's access key when there is one (locally), else with the identity."""
    if key:
        return EventGridPublisherClient(endpoint, AzureKeyCredential(key))
    return EventGridPublisherClient(endpoint, credential(identity))


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
