"""The administration API, through the SDK's own ``ServiceBusAdministrationClient`` (sync and aio).

Each test module gets an emulator of its own (the tests create and delete entities).  The client
speaks HTTPS to the emulator's administration port, trusting its self-signed certificate.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.exceptions import MessagingEntityNotFoundError
from azure.servicebus.management import (
    CorrelationRuleFilter,
    ServiceBusAdministrationClient,
    SqlRuleFilter,
)

from devstack.stack import ServiceBusEmulator

CONFIG = Path(__file__).with_name("config.json")


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def emulator() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator(CONFIG) as running:
        yield running


@pytest.fixture
def admin(emulator: ServiceBusEmulator) -> Iterator[ServiceBusAdministrationClient]:
    with ServiceBusAdministrationClient.from_connection_string(
            emulator.admin_connection_string, connection_verify=emulator.admin_certificate) as client:
        yield client


@pytest.fixture
def sb(emulator: ServiceBusEmulator) -> Iterator[ServiceBusClient]:
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        yield client


def test_the_configuration_files_entities_are_described(admin: ServiceBusAdministrationClient) -> None:
    queues = {q.name: q for q in admin.list_queues()}
    assert queues["max-delivery"].max_delivery_count == 2
    assert queues["sessions"].requires_session is True
    assert queues["lock-expiry"].lock_duration == dt.timedelta(seconds=1)
    assert queues["forward-source"].forward_to.endswith("/forward-target")
    topic = admin.get_topic("fanout")
    assert topic.requires_duplicate_detection is True
    subscriptions = {s.name for s in admin.list_subscriptions("fanout")}
    assert {"all", "correlation", "sql-compare"} <= subscriptions
    (rule,) = admin.list_rules("fanout", "sql-compare")
    assert isinstance(rule.filter, SqlRuleFilter)
    assert rule.filter.sql_expression == "priority > 5 AND region IN ('eu', 'us')"
    (correlation,) = admin.list_rules("fanout", "correlation")
    assert isinstance(correlation.filter, CorrelationRuleFilter)
    assert correlation.filter.correlation_id == "order-1"
    assert correlation.filter.properties == {"color": "red"}
    (default,) = admin.list_rules("fanout", "all")
    assert default.name == "$Default"


def test_a_created_queue_is_usable_over_amqp_at_once_and_counted(
        admin: ServiceBusAdministrationClient, sb: ServiceBusClient) -> None:
    queue = name("made")
    created = admin.create_queue(queue, max_delivery_count=1, lock_duration=dt.timedelta(seconds=30))
    assert created.name == queue and created.max_delivery_count == 1
    with sb.get_queue_sender(queue) as sender:
        sender.send_messages([ServiceBusMessage("one"), ServiceBusMessage("two"), ServiceBusMessage("three")])
        sender.schedule_messages(ServiceBusMessage("later"), dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    with sb.get_queue_receiver(queue, max_wait_time=5) as receiver:
        (first,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.abandon_message(first)  # MaxDeliveryCount 1: straight to the dead-letter queue

    runtime = admin.get_queue_runtime_properties(queue)
    assert (runtime.active_message_count, runtime.dead_letter_message_count,
            runtime.scheduled_message_count, runtime.total_message_count) == (2, 1, 1, 4)
    assert runtime.size_in_bytes > 0
    assert runtime.created_at_utc <= runtime.updated_at_utc
    assert runtime.accessed_at_utc >= runtime.created_at_utc
    with sb.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=5) as dead:
        (parked,) = dead.receive_messages(max_wait_time=5)
        assert str(parked) == "one" and parked.dead_letter_reason == "MaxDeliveryCountExceeded"

    admin.delete_queue(queue)
    with pytest.raises(ResourceNotFoundError):
        admin.get_queue(queue)
    with pytest.raises(MessagingEntityNotFoundError):
        with sb.get_queue_sender(queue) as sender:
            sender.send_messages(ServiceBusMessage("nobody home"))


def test_errors_are_azures(admin: ServiceBusAdministrationClient) -> None:
    queue = name("errors")
    admin.create_queue(queue)
    with pytest.raises(ResourceExistsError):
        admin.create_queue(queue)
    with pytest.raises(ResourceNotFoundError):
        admin.get_queue(name("missing"))
    with pytest.raises(ResourceNotFoundError):
        admin.delete_topic(name("missing"))
    with pytest.raises(HttpResponseError) as too_long:
        admin.create_queue(name("lock"), lock_duration=dt.timedelta(minutes=10))
    assert too_long.value.status_code == 400 and "LockDuration" in str(too_long.value)
    described = admin.get_queue(queue)
    described.requires_session = True
    with pytest.raises(HttpResponseError) as session:
        admin.update_queue(described)
    assert session.value.status_code == 400
    with pytest.raises(HttpResponseError) as invalid_name:
        admin.create_queue("bad name*")
    assert invalid_name.value.status_code == 400


def test_an_update_takes_effect_on_the_live_entity(admin: ServiceBusAdministrationClient, sb: ServiceBusClient) -> None:
    queue = name("update")
    admin.create_queue(queue, max_delivery_count=5)
    described = admin.get_queue(queue)
    described.max_delivery_count = 1
    described.default_message_time_to_live = dt.timedelta(hours=2)
    admin.update_queue(described)
    again = admin.get_queue(queue)
    assert again.max_delivery_count == 1 and again.default_message_time_to_live == dt.timedelta(hours=2)
    with sb.get_queue_sender(queue) as sender:
        sender.send_messages(ServiceBusMessage("x"))
    with sb.get_queue_receiver(queue, max_wait_time=5) as receiver:
        (message,) = receiver.receive_messages(max_wait_time=5)
        receiver.abandon_message(message)
    assert admin.get_queue_runtime_properties(queue).dead_letter_message_count == 1


def test_subscriptions_and_rules_route_messages(admin: ServiceBusAdministrationClient, sb: ServiceBusClient) -> None:
    topic, subscription = name("topic"), "reds"
    admin.create_topic(topic)
    admin.create_subscription(topic, subscription)
    assert [r.name for r in admin.list_rules(topic, subscription)] == ["$Default"]
    admin.create_rule(topic, subscription, "red-only", filter=SqlRuleFilter("color = @c", parameters={"@c": "red"}))
    admin.delete_rule(topic, subscription, "$Default")
    (rule,) = admin.list_rules(topic, subscription)
    assert rule.name == "red-only"
    with pytest.raises(ResourceExistsError):
        admin.create_rule(topic, subscription, "red-only")
    with sb.get_topic_sender(topic) as sender:
        sender.send_messages([ServiceBusMessage("r", application_properties={"color": "red"}),
                              ServiceBusMessage("b", application_properties={"color": "blue"})])
    with sb.get_subscription_receiver(topic, subscription, max_wait_time=3) as receiver:
        got = [str(m) for m in receiver.receive_messages(max_message_count=10, max_wait_time=3)]
    assert got == ["r"]
    runtime = admin.get_topic_runtime_properties(topic)
    assert runtime.subscription_count == 1
    admin.delete_topic(topic)
    with pytest.raises(ResourceNotFoundError):
        admin.get_subscription(topic, subscription)


def test_the_async_client_speaks_the_same_api(emulator: ServiceBusEmulator) -> None:
    from azure.servicebus.aio.management import ServiceBusAdministrationClient as AsyncAdmin

    async def scenario() -> tuple[list[str], int]:
        async with AsyncAdmin.from_connection_string(emulator.admin_connection_string,
                                                     connection_verify=emulator.admin_certificate) as client:
            queue = name("aio")
            await client.create_queue(queue)
            names = [q.name async for q in client.list_queues()]
            runtime = await client.get_queue_runtime_properties(queue)
            await client.delete_queue(queue)
            return names, runtime.total_message_count

    names, total = asyncio.run(scenario())
    assert any(n.startswith("aio-") for n in names) and "basic" in names
    assert total == 0


def test_listing_pages_with_skip_and_top(emulator: ServiceBusEmulator) -> None:
    base = f"https://127.0.0.1:{emulator.admin_port}/$Resources/queues?api-version=2021-05"
    first = requests.get(base + "&$top=2", verify=emulator.admin_certificate, timeout=10)
    assert first.status_code == 200 and first.text.count("<entry") == 2 and 'rel="next"' in first.text
    everything = requests.get(base + "&$top=1000", verify=emulator.admin_certificate, timeout=10)
    assert 'rel="next"' not in everything.text
    bad = requests.get(base + "&$top=0", verify=emulator.admin_certificate, timeout=10)
    assert bad.status_code == 400 and "<Error>" in bad.text


def test_plain_http_is_served_on_the_same_port(emulator: ServiceBusEmulator) -> None:
    # What Microsoft's emulator offers, for clients that can be told to use http://.
    answer = requests.get(f"http://127.0.0.1:{emulator.admin_port}/basic?api-version=2021-05", timeout=10)
    assert answer.status_code == 200 and "<QueueDescription" in answer.text
    broken = requests.put(f"http://127.0.0.1:{emulator.admin_port}/{name('junk')}?api-version=2021-05",
                          data=b"<entry><not-closed>", timeout=10)
    assert broken.status_code == 400 and "not valid XML" in broken.text


def test_entities_made_through_the_api_outlive_a_restart(tmp_path: Path) -> None:
    emulator = ServiceBusEmulator(CONFIG, data_dir=tmp_path / "sb").start()
    try:
        with ServiceBusAdministrationClient.from_connection_string(
                emulator.admin_connection_string, connection_verify=emulator.admin_certificate) as admin:
            admin.create_queue("kept", max_delivery_count=7)
            admin.delete_queue("basic")  # from the configuration file: stays deleted
            admin.create_topic("kept-topic")
            admin.create_subscription("kept-topic", "s")
            admin.create_rule("kept-topic", "s", "only-a", filter=CorrelationRuleFilter(label="a"))
        with ServiceBusClient.from_connection_string(emulator.connection_string) as sb:
            with sb.get_queue_sender("kept") as sender:
                sender.send_messages(ServiceBusMessage("survives"))
        emulator.kill()
        emulator.start()
        with ServiceBusAdministrationClient.from_connection_string(
                emulator.admin_connection_string, connection_verify=emulator.admin_certificate) as admin:
            names = {q.name for q in admin.list_queues()}
            assert "kept" in names and "basic" not in names
            assert admin.get_queue("kept").max_delivery_count == 7
            assert admin.get_queue_runtime_properties("kept").active_message_count == 1
            assert {r.name for r in admin.list_rules("kept-topic", "s")} == {"$Default", "only-a"}
        with ServiceBusClient.from_connection_string(emulator.connection_string) as sb:
            with sb.get_queue_receiver("kept", max_wait_time=5) as receiver:
                (message,) = receiver.receive_messages(max_wait_time=5)
                assert str(message) == "survives"
                receiver.complete_message(message)
    finally:
        emulator.stop()
