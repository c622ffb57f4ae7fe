"""FileValidator on the Event Grid-based blob trigger (``source=EventGrid``, what Flex
Consumption runs and infra/ deploys), locally: Azurite's new blob becomes a
``Microsoft.Storage.BlobCreated`` event (devstack/storage_events.py) on the Event Grid emulator's
``storage`` topic, which delivers it to devhost's ``/runtime/webhooks/blobs``. The polling
trigger (the default) is what test_payment_files.py drives."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import App, call, start_stack
from .test_payment_files import drop, settle


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    stack = start_stack(PAYMENT_FILES_BLOB_TRIGGER_SOURCE="EventGrid")
    try:
        yield App(stack)
    finally:
        stack.stop()


def _blob_created(app: App, name: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in app.events("storage", type_="Microsoft.Storage.BlobCreated"):
            event = entry.get("event", entry)
            if event["subject"].endswith(f"/blobs/ACME001/{name}"):
                return event
        time.sleep(0.2)
    raise AssertionError(f"no BlobCreated event for {name}")


def test_the_trigger_listens_to_event_grid_not_to_the_container(app: App) -> None:
    code, subscriptions, _ = call("GET", f"{app.stack.eventgrid_url}/topics/storage/subscriptions")
    assert code == 200, subscriptions
    listed = subscriptions if isinstance(subscriptions, list) else subscriptions.get("subscriptions", [])
    endpoints = [s.get("endpoint", "") for s in listed]
    assert any("/runtime/webhooks/blobs?functionName=Host.Functions.file_pipeline_validate" in e for e in endpoints)


def test_a_dropped_file_is_announced_by_event_grid_and_validated(app: App) -> None:
    name = drop(app, "ACME001", "csv_v1_valid.csv")
    event = _blob_created(app, name)
    assert event["eventType"] == "Microsoft.Storage.BlobCreated"
    assert event["subject"] == f"/blobServices/default/containers/payment-files-in/blobs/ACME001/{name}"
    assert event["data"]["url"].endswith(f"/payment-files-in/ACME001/{name}")
    assert settle(app, "ACME001", name)["state"] == "Completed"


def test_the_blobs_webhook_answers_event_grid_as_the_host_does(app: App) -> None:
    url = f"{app.stack.functions_url}/runtime/webhooks/blobs"
    validation = [{"id": "1", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "subject": "",
                   "data": {"validationCode": "abc"}, "eventTime": "2026-01-01T00:00:00Z", "dataVersion": "1"}]
    code, body, _ = call("POST", f"{url}?functionName=Host.Functions.file_pipeline_validate", validation,
                         headers={"aeg-event-type": "SubscriptionValidation"})
    assert (code, body) == (200, {"validationResponse": "abc"})
    code, _, _ = call("POST", f"{url}?functionName=Host.Functions.nope", [],
                      headers={"aeg-event-type": "Notification"})
    assert code == 404
    other = [{"id": "2", "eventType": "Microsoft.Storage.BlobDeleted", "subject": "/x", "data": {},
              "eventTime": "2026-01-01T00:00:00Z", "dataVersion": ""}]
    code, _, _ = call("POST", f"{url}?functionName=Host.Functions.file_pipeline_validate", other,
                      headers={"aeg-event-type": "Notification"})
    assert code == 202
