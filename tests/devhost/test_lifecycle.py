"""devhost as a process: settings the way func start reads them, startup errors, graceful stop."""

from __future__ import annotations

import json
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from devstack.stack import Azurite, DevHost, EventGridEmulator, ServiceBusEmulator, free_port

from .conftest import Records, app_env
from .support import HERE, SAMPLE_APP, run_devhost, wait_until, write_app

ENV_APP = '''
import json, os
import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

@app.route(route="env/{name}", methods=["GET"])
def env(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"value": os.environ.get(req.route_params["name"])}))
'''


def setting(host: DevHost, name: str) -> str | None:
    return requests.get(host.url(f"/api/env/{name}"), timeout=30).json()["value"]


def settings_doc(**values: str) -> dict:
    return {"IsEncrypted": False, "Values": values}


class TestSettings:
    def test_example_file_is_the_fallback_and_says_so(self, tmp_path: Path) -> None:
        app = write_app(tmp_path, ENV_APP, example=settings_doc(GREETING="from-example"))
        host = DevHost({}, app_dir=app).start()
        try:
            host.wait_for("local.settings.json not found")
            assert "local.settings.json.example" in host.wait_for("local.settings.json not found")
            assert setting(host, "GREETING") == "from-example"
            assert setting(host, "AZURE_FUNCTIONS_ENVIRONMENT") == "Development"
        finally:
            assert host.stop() == 0

    def test_local_settings_beat_the_example_and_the_environment_beats_both(self, tmp_path: Path) -> None:
        app = write_app(tmp_path, ENV_APP,
                        settings={"Values": {"GREETING": "from-local", "PRESET": "from-file", "EMPTY": ""},
                                  "ConnectionStrings": {"Db": "Server=local"}},
                        example=settings_doc(GREETING="from-example"))
        host = DevHost({"PRESET": "from-environment"}, app_dir=app).start()
        try:
            assert setting(host, "GREETING") == "from-local"
            assert setting(host, "PRESET") == "from-environment"
            assert setting(host, "EMPTY") == ""
            assert setting(host, "ConnectionStrings:Db") == "Server=local"
            host.wait_for("Skipping 'PRESET' from local settings as it's already defined in current environment")
            assert host.count("not found") == 0
        finally:
            host.stop()

    def test_local_http_port_is_used_unless_port_is_given(self, tmp_path: Path) -> None:
        port = free_port()
        app = write_app(tmp_path, ENV_APP, settings={"Values": {}, "Host": {"LocalHttpPort": port}})
        own = DevHost({}, app_dir=app, port=None).start()  # no --port: devhost picks
        try:
            assert own.port == port
        finally:
            assert own.stop() == 0
        other = DevHost({}, app_dir=app).start()  # passes --port
        try:
            assert other.port != port
        finally:
            other.stop()

    def test_missing_settings_file_is_one_line_and_exit_2(self, tmp_path: Path) -> None:
        app = write_app(tmp_path, ENV_APP)
        result = run_devhost(app, free_port())
        assert result.returncode == 2
        assert result.stderr.strip().count("\n") == 0
        assert "no local.settings.json" in result.stderr

    @pytest.mark.parametrize(("content", "problem"), [
        ("{not json", "is not valid JSON"),
        ('{"Values": {"A": {"nested": 1}}}', "Values.A must be a string"),
        ('{"Values": [] }', "\"Values\" must be an object"),
        ('{"IsEncrypted": true, "Values": {}}', "is encrypted"),
    ])
    def test_malformed_settings_file_is_one_line_and_exit_2(self, tmp_path: Path, content: str, problem: str) -> None:
        app = write_app(tmp_path, ENV_APP)
        (app / "local.settings.json").write_text(content)
        result = run_devhost(app, free_port())
        assert result.returncode == 2
        assert result.stderr.strip().count("\n") == 0
        assert problem in result.stderr


class TestStartupErrors:
    @pytest.mark.parametrize(("source", "expected"), [
        ('@app.timer_trigger(arg_name="t", schedule="0 */5 * * * *")\ndef tick(t) -> None: pass\n',
         "function 'tick': trigger type 'timerTrigger' is not supported"),
        ('@app.route(route="x")\ndef extra(req: func.HttpRequest, name: str) -> func.HttpResponse: pass\n',
         "the following parameters are declared in Python but not in the function definition"),
        ('@app.service_bus_queue_trigger(arg_name="m", queue_name="q", connection="NOPE")\ndef sb(m) -> None: pass\n',
         "connection setting 'NOPE' is not set"),
        ('@app.route(route="x")\n@app.blob_input(arg_name="b", path="c/x", connection="S")\n'
         'def inp(req: func.HttpRequest, b: bytes) -> func.HttpResponse: pass\n',
         "binding 'b' of type 'blob' is not supported"),
        ('import azurefunctions.extensions.bindings.blob as blob\n'
         '@app.service_bus_queue_trigger(arg_name="m", queue_name="q", connection="NOPE")\n'
         'def sdk(m: blob.BlobClient) -> None: pass\n',
         "devhost supports SDK types for blobTrigger only"),
    ])
    def test_unsupported_or_invalid_functions_exit_2_naming_them(self, tmp_path: Path, source: str,
                                                                 expected: str) -> None:
        app = write_app(tmp_path, "import azure.functions as func\napp = func.FunctionApp()\n" + source,
                        settings={"Values": {}})
        result = run_devhost(app, free_port())
        assert result.returncode == 2, result.stdout + result.stderr
        assert expected in result.stderr

    def test_an_app_that_fails_to_import_exits_1_with_its_traceback(self, tmp_path: Path) -> None:
        app = write_app(tmp_path, "raise RuntimeError('broken app')\n", settings={"Values": {}})
        result = run_devhost(app, free_port())
        assert result.returncode == 1
        assert "RuntimeError: broken app" in result.stderr


@pytest.fixture(scope="module")
def own_servicebus() -> Iterator[ServiceBusEmulator]:
    """A broker no other devhost listens to, so the message in flight is surely ours."""
    with ServiceBusEmulator(HERE / "servicebus.json") as running:
        yield running


def test_graceful_stop_lets_running_invocations_finish(
        azurite: Azurite, own_servicebus: ServiceBusEmulator, eventgrid: EventGridEmulator, tag: str) -> None:
    env = app_env(azurite, own_servicebus, eventgrid, AzureFunctionsWebHost__hostid=f"stop-{uuid.uuid4().hex[:8]}")
    host = DevHost(env, app_dir=SAMPLE_APP).start()
    try:
        answers: list[requests.Response] = []
        caller = threading.Thread(target=lambda: answers.append(
            requests.get(host.url("/api/slow/2"), timeout=60)))
        caller.start()
        with ServiceBusClient.from_connection_string(own_servicebus.connection_string) as sb:
            with sb.get_queue_sender("orders") as sender:
                sender.send_messages(ServiceBusMessage(json.dumps({"tag": tag, "sleep": 2})))
            host.wait_for("Executing 'Functions.http_slow'")
            host.wait_for("Executing 'Functions.sb_orders'")
            assert host.signal(signal.SIGTERM) == 0
            caller.join(60)
            assert [a.status_code for a in answers] == [200] and answers[0].text == "slept"
            host.wait_for("Executed 'Functions.sb_orders' (Succeeded")
            host.wait_for("Host stopped")
            # Completed before the link closed: the broker has nothing left to redeliver.
            with sb.get_queue_receiver("orders", max_wait_time=2) as receiver:
                assert receiver.peek_messages(max_message_count=10) == []
        records = Records(azurite.connection_string, env["RECORD_TABLE"])
        assert len(wait_until(lambda: records.all(tag, "sb_orders"), "the record")) == 1
    finally:
        host.stop()


def test_listeners_reconnect_when_the_broker_comes_back(
        azurite: Azurite, eventgrid: EventGridEmulator, tag: str) -> None:
    broker = ServiceBusEmulator(HERE / "servicebus.json").start()
    env = app_env(azurite, broker, eventgrid, AzureFunctionsWebHost__hostid=f"reconnect-{uuid.uuid4().hex[:8]}")
    host = DevHost(env, app_dir=SAMPLE_APP).start()
    try:
        broker.kill()  # SIGKILL: the connection just vanishes
        host.wait_for("Service Bus trigger sb_orders (orders): receiving failed")
        broker.start()  # same port; in memory, so an empty broker
        with ServiceBusClient.from_connection_string(broker.connection_string) as sb:
            with sb.get_queue_sender("orders") as sender:
                sender.send_messages(ServiceBusMessage(json.dumps({"tag": tag})))
        records = Records(azurite.connection_string, env["RECORD_TABLE"])
        assert len(records.wait(tag, 1, "sb_orders")) == 1
    finally:
        assert host.stop() == 0
        broker.stop()
