"""``AzureWebJobs.<FUNCTION_NAME>.Disabled``: the runtime ignores the events meant for a disabled
function (no listener, no route, no webhook) until a restart with the function enabled, which
then takes what waited for it, as after changing the app setting in Azure."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from azure.core.exceptions import ResourceExistsError
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.storage.blob import BlobServiceClient

from devhost.settings import function_disabled
from devstack.stack import Azurite, DevHost, EventGridEmulator, ServiceBusEmulator

from .conftest import Records, app_env
from .support import HERE, SAMPLE_APP, write_app


@pytest.fixture(scope="module")
def own_servicebus() -> Iterator[ServiceBusEmulator]:
    """A broker no other devhost listens to, so nobody else can take the waiting message."""
    with ServiceBusEmulator(HERE / "servicebus.json") as running:
        yield running


@pytest.mark.parametrize(("environ", "disabled"), [
    ({"AzureWebJobs.sb_orders.Disabled": "true"}, True),
    ({"AzureWebJobs.sb_orders.Disabled": "1"}, True),
    ({"azurewebjobs.SB_ORDERS.disabled": " True "}, True),  # the host's configuration ignores case
    ({"AzureWebJobs.sb_orders.Disabled": "false"}, False),
    ({"AzureWebJobs.sb_orders.Disabled": "0"}, False),
    ({"AzureWebJobs.sb_orders.Disabled": ""}, False),
    ({"AzureWebJobs.sb_orders.Disabled": "yes"}, False),
    ({"AzureWebJobs.sb_orders_v2.Disabled": "true"}, False),
    ({}, False),
])
def test_the_setting_is_true_or_1(environ: dict[str, str], disabled: bool) -> None:
    assert function_disabled("sb_orders", environ) is disabled


def test_a_disabled_function_ignores_its_events_until_it_is_enabled(
        azurite: Azurite, own_servicebus: ServiceBusEmulator, eventgrid: EventGridEmulator, tag: str) -> None:
    env = app_env(azurite, own_servicebus, eventgrid, AzureFunctionsWebHost__hostid=f"disabled-{uuid.uuid4().hex[:8]}")
    records = Records(azurite.connection_string, env["RECORD_TABLE"])
    uploads = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client("uploads")
    try:
        uploads.create_container()
    except ResourceExistsError:
        pass
    switched_off = {**env, "AzureWebJobs.sb_orders.Disabled": "true", "AzureWebJobs.blob_uploads.Disabled": "1",
                    "AzureWebJobs.http_item.Disabled": "True", "azurewebjobs.EG_NOTIFICATIONS.disabled": "true",
                    "AzureWebJobs.sb_events.Disabled": "false"}
    first = DevHost(switched_off, app_dir=SAMPLE_APP).start()
    try:
        for name in ("blob_uploads", "eg_notifications", "http_item", "sb_orders"):
            first.wait_for(f"Function '{name}' is disabled")
        assert first.count("is disabled") == 4
        assert "(Disabled)" in first.wait_for("        sb_orders: ")
        assert "(Disabled)" not in first.wait_for("        sb_events: ")
        listing = {f["name"]: f["isDisabled"] for f in requests.get(first.url("/admin/functions"), timeout=30).json()}
        assert {name for name, off in listing.items() if off} == {"sb_orders", "blob_uploads", "http_item",
                                                                  "eg_notifications"}

        assert requests.get(first.url("/api/items/7"), timeout=30).status_code == 404
        assert requests.get(first.url("/api/items/all"), timeout=30).text == "all items"  # still served
        webhook = requests.post(first.url("/runtime/webhooks/eventgrid?functionName=eg_notifications"),
                                headers={"aeg-event-type": "Notification"}, timeout=30,
                                json=[{"id": "1", "subject": "s", "eventType": "t", "dataVersion": "1",
                                       "eventTime": "2026-01-01T00:00:00Z", "data": {"tag": tag}}])
        assert webhook.status_code == 404 and "cannot find function" in webhook.text

        uploads.get_blob_client(f"{tag}/waiting.txt").upload_blob(b"waited for the enabled host")
        with ServiceBusClient.from_connection_string(own_servicebus.connection_string) as sb:
            with sb.get_queue_sender("orders") as sender:
                sender.send_messages(ServiceBusMessage(json.dumps({"tag": tag}), message_id=f"order-{tag}"))
            with sb.get_topic_sender("events") as sender:  # sent after the order, taken by an enabled function
                sender.send_messages(ServiceBusMessage(json.dumps({"tag": tag})))
        records.wait(tag, 1, "sb_events")
        assert first.signal() == 0
        assert records.all(tag, "sb_orders") == [] and records.all(tag, "blob_uploads") == []
        assert first.count("Executing 'Functions.sb_orders'") == 0
        assert first.count("Executing 'Functions.blob_uploads'") == 0
    finally:
        first.stop()

    second = DevHost(env, app_dir=SAMPLE_APP).start()  # the same app and host id, the setting gone
    try:
        assert second.count("is disabled") == 0
        [order] = records.wait(tag, 1, "sb_orders")
        assert order["message_id"] == f"order-{tag}"
        assert order["delivery_count"] == 1  # never locked while the function was disabled
        [blob] = records.wait(tag, 1, "blob_uploads")
        assert blob["content"] == "waited for the enabled host"
        assert requests.get(second.url("/api/items/7"), timeout=30).status_code == 200
    finally:
        assert second.stop() == 0


def test_a_disabled_function_needs_no_trigger_connection(tmp_path: Path) -> None:
    app = write_app(tmp_path, (
        "import azure.functions as func\napp = func.FunctionApp()\n"
        '@app.service_bus_queue_trigger(arg_name="m", queue_name="q", connection="NOPE")\n'
        "def sb(m) -> None: pass\n"
        '@app.route(route="ping")\n'
        'def ping(req: func.HttpRequest) -> str:\n    return "pong"\n'), settings={"Values": {}})
    host = DevHost({"AzureWebJobs.sb.Disabled": "true"}, app_dir=app).start()
    try:
        host.wait_for("Function 'sb' is disabled")
        assert requests.get(host.url("/api/ping"), timeout=30).text == "pong"
        assert requests.get(host.url("/admin/host/status"), timeout=30).status_code == 200
    finally:
        assert host.stop() == 0
