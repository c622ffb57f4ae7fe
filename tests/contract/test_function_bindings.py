"""The app's bindings, as ``app.get_functions()`` reports them, against the emulator's entities."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest

from choreography import entities
from choreography.settings import SERVICE_BUS_CONNECTION
from delivery.service import DeliveryService
from drone_scheduler.service import ReleaseRequests, SchedulingRequests
from emulators.servicebus.filters import MessageView
from package.service import PackageCompensations, PackageRequests

from .conftest import ROOT

EXPECTED_TRIGGERS = {
    "ingestion_submit_delivery": "httpTrigger",
    "ingestion_get_delivery": "httpTrigger",
    "ingestion_health": "httpTrigger",
    "package_on_delivery_requested": "serviceBusTrigger",
    "package_on_cancel_package": "serviceBusTrigger",
    "drone_scheduler_on_request": "serviceBusTrigger",
    "drone_scheduler_on_release_drone": "serviceBusTrigger",
    "delivery_on_event": "serviceBusTrigger",
    "notifications_on_delivery_event": "eventGridTrigger",
}

EXPECTED_HTTP = {
    "ingestion_submit_delivery": ("deliveries", ["POST"]),
    "ingestion_get_delivery": ("deliveries/{deliveryId}", ["GET"]),
    "ingestion_health": ("health", ["GET"]),
}

# Which Service Bus entity feeds which function, and which consumer (with its contracts) it runs.
EXPECTED_SERVICE_BUS = {
    "package_on_delivery_requested": (entities.PACKAGE_SUBSCRIPTION, PackageRequests),
    "package_on_cancel_package": (entities.PACKAGE_COMPENSATION_SUBSCRIPTION, PackageCompensations),
    "drone_scheduler_on_request": (entities.DRONE_SCHEDULER_SUBSCRIPTION, SchedulingRequests),
    "drone_scheduler_on_release_drone": (entities.DRONE_RELEASE_SUBSCRIPTION, ReleaseRequests),
    "delivery_on_event": (entities.DELIVERY_EVENTS_QUEUE, DeliveryService),
}

# Types published to the topic, and exactly the subscriptions that must receive each.
TOPIC_ROUTING = {
    "DeliveryRequested": {"package", "drone-scheduler"},
    "CancelPackage": {"package-compensation"},
    "ReleaseDrone": {"drone-release"},
    "RetryDroneScheduling": {"drone-scheduler"},
}


def trigger(bindings: list[dict[str, Any]]) -> dict[str, Any]:
    [found] = [b for b in bindings if b["direction"] == "IN" and b["type"].endswith("Trigger")]
    return found


def test_function_names_are_unique_and_as_expected(functions):
    names = [f.get_function_name() for f in functions]
    assert len(names) == len(set(names))
    assert set(names) >= set(EXPECTED_TRIGGERS)


def test_each_function_has_the_expected_trigger_type(bindings):
    for name, trigger_type in EXPECTED_TRIGGERS.items():
        assert trigger(bindings[name])["type"] == trigger_type, name


def test_every_function_names_its_service_as_a_prefix(functions):
    prefixes = ("ingestion_", "package_", "drone_scheduler_", "delivery_", "notifications_")
    for f in functions:
        if f.get_function_name() in EXPECTED_TRIGGERS:
            assert f.get_function_name().startswith(prefixes)


@pytest.mark.parametrize("name", sorted(EXPECTED_HTTP))
def test_http_routes_methods_and_function_level_auth(bindings, name):
    route, methods = EXPECTED_HTTP[name]
    binding = trigger(bindings[name])
    assert binding["route"] == route
    assert sorted(binding["methods"]) == methods
    assert binding["authLevel"] == "FUNCTION"
    assert any(b["type"] == "http" and b["direction"] == "OUT" for b in bindings[name])


def test_http_routes_do_not_collide(bindings):
    seen = set()
    for name, (route, methods) in EXPECTED_HTTP.items():
        for method in methods:
            assert (route, method) not in seen, name
            seen.add((route, method))


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICE_BUS))
def test_service_bus_triggers_match_the_emulator_entities(bindings, servicebus_config, name):
    source, _ = EXPECTED_SERVICE_BUS[name]
    binding = trigger(bindings[name])
    assert binding["connection"] == SERVICE_BUS_CONNECTION == "ServiceBusConnection"
    if isinstance(source, entities.Subscription):
        assert (binding["topicName"], binding["subscriptionName"]) == (source.topic, source.name)
        assert "queueName" not in binding
        topic = servicebus_config.topics[source.topic.lower()]
        holder = topic.subscriptions[source.name.lower()]
    else:
        assert binding["queueName"] == source.name and "topicName" not in binding
        holder = servicebus_config.queues[source.name.lower()]
    assert bool(binding.get("isSessionsEnabled", False)) == holder.requires_session, name


def test_no_two_functions_compete_for_one_entity(bindings):
    sources = []
    for name in EXPECTED_SERVICE_BUS:
        b = trigger(bindings[name])
        sources.append((b.get("topicName"), b.get("subscriptionName"), b.get("queueName")))
    assert len(sources) == len(set(sources))


def _receivers(servicebus_config, topic: str, label: str) -> set[str]:
    view = MessageView(system={"Label": label, "Subject": label}, user={"type": label})
    return {sub.name for sub in servicebus_config.topics[topic].subscriptions.values()
            if any(rule.matches(view) for rule in sub.rules)}


@pytest.mark.parametrize("label", sorted(TOPIC_ROUTING))
def test_topic_filters_route_each_type_to_exactly_its_consumers(servicebus_config, label):
    assert _receivers(servicebus_config, entities.DELIVERIES_TOPIC.name, label) == TOPIC_ROUTING[label]


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICE_BUS))
def test_every_subscription_receives_exactly_what_its_consumer_reads(servicebus_config, name):
    source, consumer = EXPECTED_SERVICE_BUS[name]
    accepted = consumer.contracts.types
    if isinstance(source, entities.Subscription):
        routed = {label for label, subs in TOPIC_ROUTING.items() if source.name in subs}
        assert routed == accepted, name
    else:
        # delivery-events is a queue: what reaches it is what Package, Drone Scheduler and
        # Delivery itself send there, all of which it must read.
        assert accepted == {"PackageReady", "PackageRejected", "PackageCancelled", "DroneScheduled",
                            "DroneUnavailable", "DroneReleased", "DeliveryInTransitTimer", "JoinTimeout"}


def test_every_entity_the_publisher_sends_to_exists_with_the_right_shape(servicebus_config):
    for destination in (entities.DELIVERIES_TOPIC, entities.DELIVERY_EVENTS_QUEUE, entities.DEADLETTER_QUEUE):
        if destination.kind == "topic":
            topic = servicebus_config.topics[destination.name]
            assert topic.requires_duplicate_detection, destination
        else:
            queue = servicebus_config.queues[destination.name]
            assert queue.requires_session == destination.sessions, destination
            assert queue.requires_duplicate_detection, destination
    for subscription in (entities.PACKAGE_SUBSCRIPTION, entities.PACKAGE_COMPENSATION_SUBSCRIPTION,
                         entities.DRONE_SCHEDULER_SUBSCRIPTION, entities.DRONE_RELEASE_SUBSCRIPTION):
        assert subscription.name in servicebus_config.topics[subscription.topic].subscriptions


def test_delivery_events_retries_then_dead_letters(servicebus_config):
    queue = servicebus_config.queues[entities.DELIVERY_EVENTS_QUEUE.name]
    assert queue.max_delivery_count == 5
    for subscription in servicebus_config.topics["deliveries"].subscriptions.values():
        assert subscription.max_delivery_count == 5


def test_every_queue_and_subscription_forwards_its_dead_letters_to_one_place(servicebus_config):
    """So remediation sees every dead letter, the broker's (MaxDeliveryCount, TTL) and the app's;
    the one place itself keeps its own (remediation failing), for ``ops dlq`` to show."""
    dead = entities.DEADLETTER_QUEUE.name
    for name, queue in servicebus_config.queues.items():
        assert queue.forward_dead_lettered_to == (None if name == dead else dead), name
    for topic in servicebus_config.topics.values():
        for name, subscription in topic.subscriptions.items():
            assert subscription.forward_dead_lettered_to == dead, name


def test_the_decorated_functions_stay_callable_with_one_trigger_argument(functions):
    for f in functions:
        if f.get_function_name() in EXPECTED_TRIGGERS:
            parameters = inspect.signature(f.get_user_function()).parameters
            assert list(parameters) == [trigger(json.loads(f.get_function_json())["bindings"])["name"]]


def test_host_json_matches_the_routes_and_service_bus_settings():
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensions"]["http"]["routePrefix"] == "api"
    service_bus = host["extensions"]["serviceBus"]
    assert service_bus["autoCompleteMessages"] is True  # complete on return, abandon on raise
    assert service_bus["maxConcurrentCalls"] >= 1 and service_bus["maxConcurrentSessions"] >= 1


def test_local_settings_example_has_every_setting_with_emulator_defaults():
    example = json.loads((ROOT / "local.settings.json.example").read_text())
    values = example["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    assert values["ServiceBusConnection"] == (
        "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;")
    # `python -m ops dlq` reads these: the emulator's administration port and the certificate it
    # keeps in `make up`'s data dir (.devstack/servicebus).
    assert values["ServiceBusAdminConnection"] == values["ServiceBusConnection"].replace(":5672;", ":5300;")
    assert values["ServiceBusAdminCertificate"] == ".devstack/servicebus/admin-cert.pem"
    assert values["EventGridTopicEndpoint"] == "http://127.0.0.1:6080/topics/deliveries/api/events"
    assert values["EventGridTopicKey"] == "local-eventgrid-key"
    for name in ("FLIGHT_TIME_SECONDS", "JOIN_TIMEOUT_SECONDS", "DRONE_RETRY_BASE_SECONDS", "DRONE_RETRY_MAX_SECONDS"):
        float(values[name])
    assert example["Host"]["LocalHttpPort"] == 7071
    assert all(isinstance(v, str) for v in values.values())  # app settings are strings


def test_the_event_grid_topic_the_app_publishes_to_takes_cloudevents():
    config = json.loads((ROOT / "emulators" / "eventgrid" / "config.json").read_text())
    [topic] = [t for t in config["topics"] if t["name"] == "deliveries"]
    assert topic["inputSchema"] == "CloudEventSchemaV1_0"
    assert "local-eventgrid-key" in topic["keys"]


def test_funcignore_keeps_local_tooling_out_of_the_deployment():
    ignored = set((ROOT / ".funcignore").read_text().split())
    assert {"tests", "emulators", "devhost", ".venv", "local.settings.json", "tools"} <= ignored
    for shipped in ("function_app.py", "host.json", "requirements.txt", "choreography", "ingestion", "package",
                    "drone_scheduler", "delivery", "notifications"):
        assert shipped not in ignored


def _requirement_pin(package: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip().lower() == package:
            return version.strip()
    raise AssertionError(f"{package} is not pinned in requirements.txt")


def test_file_validator_is_an_sdk_type_blob_trigger_so_the_host_downloads_nothing(functions, bindings):
    """With ``func.InputStream`` the host loads the whole upload into the worker before the function
    runs; bound to the blob extension's ``BlobClient`` it sends model binding data instead. What
    decides it is the worker's raw binding (the extension's ``get_raw_bindings``, as the worker
    calls it at indexing): ``properties.SupportsDeferredBinding`` must be true."""
    import importlib.metadata
    import typing
    from types import SimpleNamespace

    import azurefunctions.extensions.base as extensions
    import azurefunctions.extensions.bindings.blob as blob

    from choreography.entities import INPUT_CONTAINER

    [function] = [f for f in functions if f.get_function_name() == "file_pipeline_validate"]
    binding = trigger(bindings["file_pipeline_validate"])
    assert binding["type"] == "blobTrigger"
    assert binding["path"] == f"{INPUT_CONTAINER}/{{clientId}}/{{fileName}}"
    # The extension looks the connection up as an app setting by exactly this name.
    assert binding["connection"] == "AzureWebJobsStorage"
    assert "dataType" not in binding

    hints = typing.get_type_hints(function.get_user_function())
    assert hints[binding["name"]] is blob.BlobClient
    registry = extensions.get_binding_registry()
    assert registry.check_supported_type(hints[binding["name"]])
    assert registry.get("blobTrigger").check_input_type_annotation(hints[binding["name"]])
    input_types = {name: SimpleNamespace(pytype=pytype) for name, pytype in hints.items() if name != "return"}
    raw, _ = registry.get_raw_bindings(function, input_types)
    [raw_trigger] = [json.loads(r) for r in raw if json.loads(r)["type"] == "blobTrigger"]
    assert raw_trigger["properties"] == {"SupportsDeferredBinding": True}

    for package in ("azurefunctions-extensions-bindings-blob", "azurefunctions-extensions-base"):
        assert importlib.metadata.version(package) == _requirement_pin(package)
