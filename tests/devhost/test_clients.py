"""The SDK clients devhost builds trust the environment's HTTP settings only when it has some
(a proxy variable or a netrc file): otherwise aiohttp's per-request look-ups can find nothing."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost.clients import Clients, environment_has_http_settings

# Azurite's published development account; nothing listens on these ports, nothing is sent.
STORAGE = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
           "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
           "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;")


@pytest.fixture
def no_http_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    environment_has_http_settings.cache_clear()
    yield tmp_path / "netrc"
    environment_has_http_settings.cache_clear()


def blob_client_trusts_environment() -> bool:
    async def check() -> bool:
        clients = Clients()
        try:
            transport = clients.blob_service(STORAGE)._pipeline._transport
            await transport.open()
            return bool(transport.session.trust_env)
        finally:
            await clients.close()
    return asyncio.run(check())


def test_without_proxy_or_netrc_the_clients_skip_the_lookups(no_http_settings: Path) -> None:
    assert environment_has_http_settings() is False
    assert blob_client_trusts_environment() is False


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "http_proxy", "ALL_PROXY"])
def test_a_proxy_variable_keeps_the_environment_trusted(
        no_http_settings: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "http://127.0.0.1:9")
    assert environment_has_http_settings() is True
    assert blob_client_trusts_environment() is True


def test_a_netrc_file_keeps_the_environment_trusted(no_http_settings: Path) -> None:
    no_http_settings.write_text("machine example.invalid login user password secret\n")
    assert environment_has_http_settings() is True
    assert blob_client_trusts_environment() is True
