"""Which SDK client and credential each form of connection setting builds: real SDK client
objects, inspected (nothing connects; no mock). Locally the settings hold connection strings;
in Azure the identity forms the Functions host reads (infra/modules/functionapp.bicep)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AzureKeyCredential, AzureNamedKeyCredential
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.servicebus import ServiceBusClient

from choreography import connections, telemetry
from choreography.publishing import EventGridPublisher
from choreography.runtime import Runtime
from choreography.settings import Connection, Identity, Settings, SettingsError, blob_trigger_source
from file_pipeline.blob_adapters import blob_service

EMULATOR = ("Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=RootManageSharedAccessKey;"
            "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;")
AZURE = {
    "AzureWebJobsStorage__accountName": "stapp",
    "AzureWebJobsStorage__credential": "managedidentity",
    "ServiceBusConnection__fullyQualifiedNamespace": "sb-app.servicebus.windows.net",
    "ServiceBusConnection__credential": "managedidentity",
    "EventGridTopicEndpoint": "https://evgt-deliveries.westeurope-1.eventgrid.azure.net/api/events",
    "EventGridTopic__credential": "managedidentity",
}


def _client_id(credential: Any) -> str | None:
    """The user-assigned identity a ManagedIdentityCredential asks for (None: system-assigned)."""
    identity = credential._credential._msal_client._managed_identity
    return identity["Id"] if identity.get("ManagedIdentityIdType") == "ClientId" else None


def test_local_connection_strings_build_key_clients_as_before() -> None:
    settings = Settings.from_env({"ServiceBusConnection": EMULATOR,
                                  "AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    bus = connections.service_bus_client(settings.service_bus_namespace())
    tables = connections.table_service(settings.storage_account())
    blobs = blob_service(settings.storage_account())
    assert isinstance(bus, ServiceBusClient) and bus.fully_qualified_namespace == "127.0.0.1:5672"
    assert type(bus._credential).__name__ == "ServiceBusSharedKeyCredential"
    assert isinstance(tables.credential, AzureNamedKeyCredential) and tables.url.startswith("http://127.0.0.1:10002")
    assert blobs.url.startswith("http://127.0.0.1:10000") and blobs.credential.account_name == "devstoreaccount1"


def test_identity_settings_build_clients_on_the_app_managed_identity() -> None:
    settings = Settings.from_env(AZURE)
    bus = connections.service_bus_client(settings.service_bus_namespace())
    tables = connections.table_service(settings.storage_account())
    blobs = blob_service(settings.storage_account())
    assert bus.fully_qualified_namespace == "sb-app.servicebus.windows.net"
    assert tables.url == "https://stapp.table.core.windows.net" and blobs.url == "https://stapp.blob.core.windows.net/"
    for credential in (bus._credential, tables.credential, blobs.credential):
        assert isinstance(credential, ManagedIdentityCredential) and _client_id(credential) is None
    assert blobs._config.max_single_get_size == blob_service("UseDevelopmentStorage=true")._config.max_single_get_size


def test_a_client_id_selects_a_user_assigned_identity() -> None:
    settings = Settings.from_env({"ServiceBusConnection__fullyQualifiedNamespace": "sb://ns.servicebus.windows.net/",
                                  "ServiceBusConnection__clientId": "00000000-0000-0000-0000-00000000abcd"})
    bus = connections.service_bus_client(settings.service_bus_namespace())
    assert bus.fully_qualified_namespace == "ns.servicebus.windows.net"
    assert isinstance(bus._credential, ManagedIdentityCredential)
    assert _client_id(bus._credential) == "00000000-0000-0000-0000-00000000abcd"


def test_no_credential_setting_is_the_default_chain_and_service_uris_win_over_the_account() -> None:
    settings = Settings.from_env({"AzureWebJobsStorage__blobServiceUri": "https://blobs.example.net",
                                  "AzureWebJobsStorage__tableServiceUri": "https://tables.example.net"})
    tables = connections.table_service(settings.storage_account())
    blobs = connections.blob_service(settings.storage_account())
    assert tables.url == "https://tables.example.net" and blobs.url == "https://blobs.example.net/"
    assert isinstance(tables.credential, DefaultAzureCredential)
    assert isinstance(blobs.credential, DefaultAzureCredential)


def test_one_credential_per_identity_per_process() -> None:
    assert connections.credential(Identity("managedidentity")) is connections.credential(Identity("managedidentity"))
    assert connections.credential(Identity("managedidentity")) is not connections.credential(Identity("", "id-1"))


def test_event_grid_is_published_to_with_the_key_locally_and_the_identity_in_azure() -> None:
    local = connections.event_grid_publisher("http://127.0.0.1:6080/topics/deliveries/api/events", "local-key",
                                             Identity())
    azure_settings = Settings.from_env(AZURE)
    azure = connections.event_grid_publisher(azure_settings.event_grid_endpoint, azure_settings.event_grid_key,
                                             azure_settings.event_grid_identity)
    assert isinstance(local._credential, AzureKeyCredential)
    assert isinstance(azure._credential, ManagedIdentityCredential)
    publisher = EventGridPublisher(azure_settings.event_grid_endpoint, "", identity=azure_settings.event_grid_identity)
    assert isinstance(publisher._get_client()._credential, ManagedIdentityCredential)
    publisher.close()


def test_the_runtime_reads_the_identity_forms() -> None:
    runtime = Runtime(Settings.from_env(AZURE))
    try:
        client = runtime.publisher._client_factory("")
        assert client.fully_qualified_namespace == "sb-app.servicebus.windows.net"
        assert isinstance(client._credential, ManagedIdentityCredential)
        assert isinstance(runtime.events._get_client()._credential, ManagedIdentityCredential)
    finally:
        runtime.close()


@pytest.mark.parametrize(("env", "message"), [
    ({}, "ServiceBusConnection__fullyQualifiedNamespace"),
    ({"ServiceBusConnection__credential": "clientsecret"}, "only value is 'managedidentity'"),
])
def test_an_unusable_service_bus_setting_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env).service_bus_namespace()


def test_storage_without_any_form_is_named() -> None:
    with pytest.raises(SettingsError, match="AzureWebJobsStorage__accountName"):
        Settings.from_env({}).storage_account()
    with pytest.raises(SettingsError, match="__queueServiceUri"):
        Connection("AzureWebJobsStorage", table_service_uri="https://t").service_uri("queue")


def test_application_insights_uses_the_managed_identity_when_told_entra_id_only() -> None:
    assert telemetry.app_insights_identity({}) is None
    assert telemetry.app_insights_identity({"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD"}) == \
        Identity("managedidentity")
    assert telemetry.app_insights_identity(
        {"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD;ClientId=abc"}) == \
        Identity("managedidentity", "abc")


@pytest.mark.parametrize(("raw", "source"), [("", "LogsAndContainerScan"), ("eventgrid", "EventGrid"),
                                             ("LogsAndContainerScan", "LogsAndContainerScan")])
def test_the_blob_trigger_source_setting(raw: str, source: str) -> None:
    assert blob_trigger_source({"PAYMENT_FILES_BLOB_TRIGGER_SOURCE": raw}) == source


def test_an_unknown_blob_trigger_source_is_refused() -> None:
    with pytest.raises(SettingsError, match="PAYMENT_FILES_BLOB_TRIGGER_SOURCE"):
        blob_trigger_source({"PAYMENT_FILES_BLOB_TRIGGER_SOURCE": "polling"})


def test_the_seeders_reach_an_azure_account_by_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    monkeypatch.setenv("AzureWebJobsStorage__accountName", "stapp")
    with connections.storage_tables() as tables:
        assert tables.url == "https://stapp.table.core.windows.net"
        assert isinstance(tables.credential, DefaultAzureCredential)
    monkeypatch.delenv("AzureWebJobsStorage__accountName")
    with connections.storage_tables() as tables:
        assert tables.account_name == "devstoreaccount1"
    with connections.storage_tables("UseDevelopmentStorage=true") as tables:
        assert isinstance(tables.credential, AzureNamedKeyCredential)


@pytest.fixture
def no_http_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    connections.environment_has_http_settings.cache_clear()
    yield tmp_path / "netrc"
    connections.environment_has_http_settings.cache_clear()


def http_transports() -> list[Any]:
    """The opened transports of the app's Table and Blob clients."""
    local = Connection(setting="AzureWebJobsStorage", connection_string="UseDevelopmentStorage=true")
    clients = [connections.table_service(local)._client._client, connections.blob_service(local)._client._client]
    transports = [client._pipeline._transport for client in clients]
    for transport in transports:
        transport.open()
    return transports


def test_without_proxy_or_netrc_the_http_clients_skip_the_per_call_lookups(no_http_settings: Path) -> None:
    assert connections.environment_has_http_settings() is False
    assert [(t.session.trust_env, t.connection_config.verify) for t in http_transports()] == [(False, True)] * 2


def test_a_ca_bundle_variable_is_still_the_bundle_verified_against(
        no_http_settings: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    assert [(t.session.trust_env, t.connection_config.verify) for t in http_transports()] == \
        [(False, "/etc/ssl/certs/ca-certificates.crt")] * 2


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "http_proxy", "NO_PROXY"])
def test_a_proxy_variable_keeps_the_environment_trusted(
        no_http_settings: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "http://127.0.0.1:9")
    assert [t.session.trust_env for t in http_transports()] == [True] * 2


def test_a_netrc_file_keeps_the_environment_trusted(no_http_settings: Path) -> None:
    no_http_settings.write_text("machine example.invalid login user password secret\n")
    assert [t.session.trust_env for t in http_transports()] == [True] * 2
