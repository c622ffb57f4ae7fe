"""Settings and host.json readers, and the binding table, without any process or emulator."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import azure.functions as func
import pytest

from devhost.loader import LoadError, build_table
from devhost.settings import (
    SettingsError,
    apply_to_environment,
    host_id,
    load_host_json,
    load_local_settings,
    parse_timespan,
    resolve_connection,
)


def write(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


class TestLocalSettings:
    def test_prefers_local_settings_and_falls_back_to_the_example(self, tmp_path: Path) -> None:
        write(tmp_path / "local.settings.json.example", {"Values": {"A": "example"}})
        fallback = load_local_settings(tmp_path)
        assert fallback.is_example and fallback.values == {"A": "example"}
        write(tmp_path / "local.settings.json", {"Values": {"A": "local"}, "Host": {"LocalHttpPort": 7123}})
        chosen = load_local_settings(tmp_path)
        assert not chosen.is_example and chosen.values == {"A": "local"} and chosen.local_http_port == 7123

    def test_scalars_become_text_like_dotnet_reads_them(self, tmp_path: Path) -> None:
        write(tmp_path / "local.settings.json", {"Values": {"N": 5, "B": True, "Z": None}})
        assert load_local_settings(tmp_path).values == {"N": "5", "B": "True", "Z": None}

    @pytest.mark.parametrize(("doc", "message"), [
        ("[]", "must hold a JSON object"),
        ('{"Host": {"LocalHttpPort": "x"}}', "LocalHttpPort must be a port number"),
        ('{"ConnectionStrings": {"Db": 1.5}}', None),
    ])
    def test_rejects_what_func_would_not_read(self, tmp_path: Path, doc: str, message: str | None) -> None:
        write(tmp_path / "local.settings.json", doc)
        if message is None:
            assert load_local_settings(tmp_path).connection_strings == {"Db": "1.5"}
        else:
            with pytest.raises(SettingsError, match=message):
                load_local_settings(tmp_path)

    def test_explicit_file_must_exist(self, tmp_path: Path) -> None:
        with pytest.raises(SettingsError, match="settings file not found"):
            load_local_settings(tmp_path, tmp_path / "other.json")

    def test_environment_wins_and_connection_strings_are_exported(self, tmp_path: Path) -> None:
        write(tmp_path / "local.settings.json", {"Values": {"A": "file", "B": "file", "N": None},
                                                 "ConnectionStrings": {"Db": "Server=x"}})
        environ = {"A": "env", "B": ""}
        said: list[str] = []
        apply_to_environment(load_local_settings(tmp_path), {"EXTRA": "1"}, environ, said.append)
        assert environ == {"A": "env", "B": "file", "ConnectionStrings:Db": "Server=x", "EXTRA": "1"}
        assert said == ["Skipping 'A' from local settings as it's already defined in current environment variables.",
                        "Skipping 'N' because value is null"]


def test_connection_lookup_follows_webjobs_order() -> None:
    assert resolve_connection("Storage", {"AzureWebJobsStorage": "a", "Storage": "b"}) == "a"
    assert resolve_connection("Bus", {"Bus": "plain", "ConnectionStrings:Bus": "cs"}) == "cs"
    assert resolve_connection("Bus", {"Bus": "plain"}) == "plain"
    assert resolve_connection("Bus", {}) is None


def test_host_id_is_stable_short_and_overridable(tmp_path: Path) -> None:
    assert host_id(tmp_path, {}) == host_id(tmp_path, {})
    assert len(host_id(tmp_path, {})) <= 32
    assert host_id(tmp_path, {}) != host_id(tmp_path / "other", {})
    assert host_id(tmp_path, {"AzureFunctionsWebHost__hostid": "MyHost"}) == "myhost"


class TestHostJson:
    def test_defaults_are_the_functions_defaults(self, tmp_path: Path) -> None:
        options = load_host_json(tmp_path, {})
        cores = os.cpu_count() or 1
        assert options.route_prefix == "api"
        assert options.service_bus.max_concurrent_calls == 16 * cores
        assert options.service_bus.max_concurrent_sessions == 8
        assert options.service_bus.auto_complete_messages is True
        assert options.service_bus.max_auto_lock_renewal == timedelta(minutes=5)
        assert options.blobs.poison_blob_threshold == 5
        assert options.blobs.max_degree_of_parallelism == 8 * cores

    def test_values_are_read_case_insensitively(self, tmp_path: Path) -> None:
        write(tmp_path / "host.json", {"version": "2.0", "extensions": {
            "http": {"routePrefix": ""},
            "ServiceBus": {"MaxConcurrentCalls": 3, "maxAutoLockRenewalDuration": "00:00:30",
                           "autoCompleteMessages": False},
            "blobs": {"poisonBlobThreshold": 2}}})
        options = load_host_json(tmp_path, {"DEVHOST_BLOB_POLL_SECONDS": "0.25"})
        assert options.route_prefix == ""
        assert options.service_bus.max_concurrent_calls == 3
        assert options.service_bus.max_auto_lock_renewal == timedelta(seconds=30)
        assert options.service_bus.auto_complete_messages is False
        assert options.blobs.poison_blob_threshold == 2
        assert options.blobs.poll_interval == 0.25
        assert options.http_body_timeout == 30.0
        assert load_host_json(tmp_path, {"DEVHOST_HTTP_BODY_TIMEOUT_SECONDS": "1.5"}).http_body_timeout == 1.5
        for bad in ("soon", "0"):
            with pytest.raises(SettingsError, match="DEVHOST_HTTP_BODY_TIMEOUT_SECONDS"):
                load_host_json(tmp_path, {"DEVHOST_HTTP_BODY_TIMEOUT_SECONDS": bad})

    def test_bad_values_are_errors(self, tmp_path: Path) -> None:
        write(tmp_path / "host.json", {"version": "2.0", "extensions": {"serviceBus": {"maxConcurrentCalls": "x"}}})
        with pytest.raises(SettingsError, match="maxConcurrentCalls"):
            load_host_json(tmp_path, {})

    def test_timespans(self) -> None:
        assert parse_timespan("00:05:00") == timedelta(minutes=5)
        assert parse_timespan("1.02:03:04.5") == timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=500)
        with pytest.raises(ValueError, match="5 minutes"):
            parse_timespan("5 minutes")


class TestBindingTable:
    def test_entries_carry_trigger_outputs_and_call_style(self) -> None:
        app = func.FunctionApp()

        @app.service_bus_topic_trigger(arg_name="msg", topic_name="t", subscription_name="s", connection="C",
                                       is_sessions_enabled=True)
        @app.event_grid_output(arg_name="out", topic_endpoint_uri="U", topic_key_setting="K")
        async def handler(msg: func.ServiceBusMessage, out: func.Out[str], context: func.Context) -> None:
            pass

        [entry] = build_table(app)
        assert entry.name == "handler" and entry.is_async and entry.requires_context
        assert entry.trigger.type == "serviceBusTrigger"
        assert entry.trigger.props == {"connection": "C", "topicName": "t", "subscriptionName": "s",
                                       "isSessionsEnabled": True}
        assert [(b.name, b.type, b.direction) for b in entry.outputs] == [("out", "eventGrid", "out")]
        assert entry.full_name == "Host.Functions.handler"

    def test_get_functions_is_called_once(self) -> None:
        app = func.FunctionApp()

        @app.route(route="a")
        def a(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse()

        build_table(app)
        with pytest.raises(ValueError, match=r"(?i)function"):  # azure-functions refuses a second indexing
            app.get_functions()

    def test_out_binding_needs_an_out_annotation(self) -> None:
        app = func.FunctionApp()

        @app.route(route="a")
        @app.event_grid_output(arg_name="out", topic_endpoint_uri="U", topic_key_setting="K")
        def a(req: func.HttpRequest, out: str) -> func.HttpResponse:
            return func.HttpResponse()

        with pytest.raises(LoadError, match=r"not a subclass of azure\.functions\.Out"):
            build_table(app)
