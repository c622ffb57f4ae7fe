"""Adapters are built lazily, once; the Service Bus message the publisher builds carries everything."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from choreography.entities import DELIVERY_EVENTS_QUEUE
from choreography.messaging import Cause, Outgoing, stamp
from choreography.publishing import EventGridPublisher, ServiceBusPublisher, to_service_bus_message
from choreography.runtime import Runtime
from choreography.settings import Settings, SettingsError
from contracts.deliveries import PackageReady

from .fakes import T0

ROOT = Path(__file__).resolve().parents[3]
NOWHERE = ("Endpoint=sb://127.0.0.1:9;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=x;"
           "UseDevelopmentEmulator=true;")


def test_importing_the_app_needs_no_settings_and_builds_nothing():
    env = {k: v for k, v in os.environ.items() if k not in {"ServiceBusConnection", "AzureWebJobsStorage",
                                                              "EventGridTopicEndpoint", "EventGridTopicKey"}}
    script = ("import function_app, choreography.runtime as r; "
              "assert r._current is None, 'runtime built at import'; print(len(function_app.app.get_functions()))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 9


def test_clients_are_created_on_first_use_not_on_construction():
    calls: list[str] = []

    def factory(connection: str):
        calls.append(connection)
        raise ConnectionError("would connect now")

    publisher = ServiceBusPublisher(NOWHERE, client_factory=factory)
    assert calls == []
    with pytest.raises(ConnectionError):
        publisher.send([Outgoing(DELIVERY_EVENTS_QUEUE, PackageReady(delivery_id="d-1", package_id="p", size="small",
                                                                     weight=1), "m", "d-1", "d-1")], Cause("c", None))
    assert calls == [NOWHERE]
    EventGridPublisher("http://127.0.0.1:9/api/events", "key").close()  # constructing opens nothing


def test_the_runtime_builds_each_service_once():
    runtime = Runtime(Settings(service_bus_connection=NOWHERE))
    built: list[object] = []

    def build(rt: Runtime) -> object:
        built.append(object())
        return built[-1]

    assert runtime.service(build) is runtime.service(build)
    assert len(built) == 1
    assert runtime.publisher is runtime.publisher
    runtime.close()


def test_a_missing_setting_is_named_when_first_needed():
    runtime = Runtime(Settings())
    with pytest.raises(SettingsError, match="ServiceBusConnection"):
        _ = runtime.publisher
    with pytest.raises(SettingsError, match="EventGridTopicEndpoint"):
        _ = runtime.events
    with pytest.raises(SettingsError, match="AzureWebJobsStorage"):
        runtime.table("deliveries")


def test_the_service_bus_message_carries_subject_ids_session_schedule_and_envelope():
    out = Outgoing(DELIVERY_EVENTS_QUEUE, PackageReady(delivery_id="d-1", package_id="p", size="small", weight=1),
                   "PackageReady:d-1", "d-1", session_id="d-1", scheduled_at=T0 + timedelta(seconds=5))
    envelope = stamp(out, Cause("DeliveryRequested:d-1", None), T0)
    message = to_service_bus_message(out, envelope)
    assert message.subject == "PackageReady"
    assert message.message_id == "PackageReady:d-1"
    assert message.correlation_id == "d-1" and message.session_id == "d-1"
    assert message.scheduled_enqueue_time_utc == T0 + timedelta(seconds=5)
    assert message.content_type == "application/json"
    assert message.application_properties == envelope.properties()
    assert b"".join(message.body) == envelope.to_json().encode()
