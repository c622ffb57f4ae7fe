"""One topology: the Service Bus entities Bicep deploys are those the local emulator serves.

infra/modules/servicebus*.bicep name no entity; they loop over emulators/servicebus/config.json
(``loadJsonContent``). These tests render, from the parsed Bicep and that file, the queues,
topics, subscriptions and rules ARM would receive, and compare them with what the emulator builds
from the same file, so a property the Bicep forgets, or maps to the wrong ARM name, fails here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from devstack.stack import Stack
from emulators.servicebus import config as emulator
from emulators.servicebus.config import EntityConfig, parse_config, parse_duration_ms

from .bicep import INFRA, ROOT, evaluate, parse

MODULES = INFRA / "modules"
CONFIG = ROOT / "emulators" / "servicebus" / "config.json"

# ARM's defaults for a property left out (Azure's, which the emulator mirrors).
DEFAULTS = {"lockDuration": "PT1M", "maxDeliveryCount": 10, "requiresSession": False,
            "deadLetteringOnMessageExpiration": False, "requiresDuplicateDetection": False,
            "duplicateDetectionHistoryTimeWindow": "PT10M"}


def _loop(config: dict[str, Any]) -> tuple[str, str]:
    detail = config["loop_type"]["detail"]
    return detail["item_name"], detail["array_name"]


def _children(item: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = item.get(key) or []
    assert isinstance(value, list)
    return value


def _variable_source(module: dict[str, Any], name: str) -> str:
    """Which key of the topology a list variable (``var queues = topology.?Queues ?? []``) reads."""
    text = json.dumps(module["variables"][name])
    keys = [key for key in ("Queues", "Topics", "Subscriptions", "Rules") if f'"{key}"' in text]
    assert len(keys) == 1, f"variable {name} reads {keys}"
    return keys[0]


def render() -> dict[str, Any]:
    """The Service Bus entities the Bicep deploys, as ARM resource bodies."""
    namespace_module = parse(MODULES / "servicebus.bicep")
    topic_module = parse(MODULES / "servicebus-topic.bicep")
    subscription_module = parse(MODULES / "servicebus-subscription.bicep")
    document = json.loads(CONFIG.read_text(encoding="utf-8"))
    namespace = document["UserConfig"]["Namespaces"][0]

    queue = namespace_module["resources"]["queue"]["config"]
    item, array = _loop(queue)
    queues = [{"name": evaluate(queue["config"]["name"], {item: q}),
               "properties": evaluate(queue["config"]["properties"], {item: q})}
              for q in _children(namespace, _variable_source(namespace_module, array))]

    topic_call = namespace_module["modules"]["topic"]["config"]
    topic_item, array = _loop(topic_call)
    assert topic_call["config"]["params"]["topic"] == topic_item
    topic_resource = topic_module["resources"]["serviceBusTopic"]["config"]
    sub_call = topic_module["modules"]["subscription"]["config"]
    sub_item, sub_array = _loop(sub_call)
    assert sub_call["config"]["params"]["subscription"] == sub_item
    sub_resource = subscription_module["resources"]["serviceBusSubscription"]["config"]
    rule_resource = subscription_module["resources"]["rule"]["config"]
    rule_item, rule_array = _loop(rule_resource)

    topics = []
    for t in _children(namespace, _variable_source(namespace_module, array)):
        subscriptions = []
        for s in _children(t, _variable_source(topic_module, sub_array)):
            rules = [{"name": evaluate(rule_resource["config"]["name"], {rule_item: r}),
                      "properties": evaluate(rule_resource["config"]["properties"], {rule_item: r})}
                     for r in _children(s, _variable_source(subscription_module, rule_array))]
            subscriptions.append({"name": evaluate(sub_resource["name"], {"subscription": s}),
                                  "properties": evaluate(sub_resource["properties"], {"subscription": s}),
                                  "rules": rules})
        topics.append({"name": evaluate(topic_resource["name"], {"topic": t}),
                       "properties": evaluate(topic_resource["properties"], {"topic": t}),
                       "subscriptions": subscriptions})
    return {"queues": queues, "topics": topics}


def _holder_facts(name: str, props: dict[str, Any]) -> tuple[Any, ...]:
    """What an ARM queue or subscription body means, in the emulator's terms and units."""
    p = {**DEFAULTS, **props}
    ttl = p.get("defaultMessageTimeToLive")
    return (name, parse_duration_ms(p["lockDuration"], name), p["maxDeliveryCount"], p["requiresSession"],
            min(parse_duration_ms(ttl, name), emulator.MAX_TTL_MS) if ttl else emulator.MAX_TTL_MS,
            p["deadLetteringOnMessageExpiration"], p.get("forwardTo"), p.get("forwardDeadLetteredMessagesTo"),
            p["requiresDuplicateDetection"], parse_duration_ms(p["duplicateDetectionHistoryTimeWindow"], name))


def _emulator_facts(entity: EntityConfig) -> tuple[Any, ...]:
    return (entity.name, entity.lock_duration_ms, entity.max_delivery_count, entity.requires_session,
            entity.default_ttl_ms, entity.dead_lettering_on_expiration, entity.forward_to,
            entity.forward_dead_lettered_to, entity.requires_duplicate_detection, entity.duplicate_window_ms)


def _as_config_rule(arm: dict[str, Any]) -> dict[str, Any]:
    """An ARM rule body back in Config.json's shape (the round trip must lose nothing)."""
    props = arm["properties"]
    back: dict[str, Any] = {"FilterType": props["filterType"].removesuffix("Filter")}
    if "sqlFilter" in props:
        back["SqlFilter"] = {"SqlExpression": props["sqlFilter"]["sqlExpression"]}
    if "correlationFilter" in props:
        back["CorrelationFilter"] = {key[0].upper() + key[1:]: value
                                     for key, value in props["correlationFilter"].items()}
    if "action" in props:
        back["Action"] = {"SqlExpression": props["action"]["sqlExpression"]}
    return {"Name": arm["name"], "Properties": back}


def test_the_bicep_reads_the_file_the_local_stack_loads() -> None:
    variable = parse(MODULES / "servicebus.bicep")["variables"]["topology"]["value"]
    loads = json.dumps(variable)
    path = json.loads(loads[loads.index('{"file_path"'):].split("}", 1)[0] + "}")["file_path"]
    assert (MODULES / path).resolve() == CONFIG.resolve()
    assert Stack().servicebus_config.resolve() == CONFIG.resolve()
    assert '"UserConfig"' in loads and '"Namespaces"' in loads


def test_queues_are_the_emulators() -> None:
    emulated = parse_config(json.loads(CONFIG.read_text(encoding="utf-8")), str(CONFIG))
    deployed = render()["queues"]
    assert [_holder_facts(q["name"], q["properties"]) for q in deployed] == \
        [_emulator_facts(q) for q in emulated.queues.values()]
    assert {q["name"] for q in deployed} >= {"delivery-events", "deadletter", "payment-files-validated"}


def test_topics_subscriptions_and_rules_are_the_emulators() -> None:
    document = json.loads(CONFIG.read_text(encoding="utf-8"))
    emulated = parse_config(document, str(CONFIG))
    deployed = render()["topics"]
    assert [t["name"] for t in deployed] == [t.name for t in emulated.topics.values()]
    for topic, emulated_topic in zip(deployed, emulated.topics.values(), strict=True):
        props = {"duplicateDetectionHistoryTimeWindow": "PT10M", "requiresDuplicateDetection": False,
                 **topic["properties"]}
        assert props["requiresDuplicateDetection"] == emulated_topic.requires_duplicate_detection
        assert parse_duration_ms(props["duplicateDetectionHistoryTimeWindow"], topic["name"]) == \
            emulated_topic.duplicate_window_ms
        assert [_holder_facts(s["name"], s["properties"]) for s in topic["subscriptions"]] == \
            [_emulator_facts(s) for s in emulated_topic.subscriptions.values()]
        for sub, emulated_sub in zip(topic["subscriptions"], emulated_topic.subscriptions.values(), strict=True):
            # Azure keeps $Default (1=1) only on a subscription given no rule, as the emulator does.
            names = [r["name"] for r in sub["rules"]] or ["$Default"]
            assert names == [r.name for r in emulated_sub.rules]
    source = {t["Name"]: t for t in document["UserConfig"]["Namespaces"][0]["Topics"]}
    for topic in deployed:
        for sub, config_sub in zip(topic["subscriptions"], source[topic["name"]]["Subscriptions"], strict=True):
            assert [_as_config_rule(r) for r in sub["rules"]] == config_sub.get("Rules", [])


def test_the_session_queue_and_filtered_subscriptions_are_deployed_as_the_app_needs_them() -> None:
    deployed = render()
    sessions = {q["name"]: q["properties"].get("requiresSession", False) for q in deployed["queues"]}
    assert sessions["delivery-events"] is True
    deliveries = next(t for t in deployed["topics"] if t["name"] == "deliveries")
    filters = {s["name"]: [r["properties"]["sqlFilter"]["sqlExpression"] for r in s["rules"]]
               for s in deliveries["subscriptions"]}
    assert filters["package"] == ["(sys.Label = 'DeliveryRequested' AND ResubmitTo IS NULL) OR ResubmitTo = 'package'"]
    assert all(filters.values()), "a subscription without a rule would receive every message"
    # every entity's dead letters go to the one place remediation reads (issue 13)
    forwards = [q["properties"].get("forwardDeadLetteredMessagesTo") for q in deployed["queues"]
                if q["name"] != "deadletter"]
    forwards += [s["properties"].get("forwardDeadLetteredMessagesTo") for s in deliveries["subscriptions"]]
    assert set(forwards) == {"deadletter"}


@pytest.mark.parametrize(("module", "resource", "known"), [
    ("servicebus.bicep", "queue", emulator._QUEUE_PROPS),
    ("servicebus-topic.bicep", "serviceBusTopic", emulator._TOPIC_PROPS),
    ("servicebus-subscription.bicep", "serviceBusSubscription", emulator._SUB_PROPS),
])
def test_every_property_the_emulator_accepts_is_deployed(module: str, resource: str, known: set[str]) -> None:
    """A property added to config.json later reaches Azure too (or this names it)."""
    config = parse(MODULES / module)["resources"][resource]["config"]
    body = config["config"] if "loop_type" in config else config
    mapped = {arm: json.dumps(value) for arm, value in body["properties"].items()}
    for name in sorted(known):
        arm_name = name[0].lower() + name[1:]
        assert arm_name in mapped, f"{module}: {resource} does not deploy {name}"
        assert f'"{name}"' in mapped[arm_name], f"{module}: {arm_name} is not read from {name}"


def test_containers_and_tables_are_the_apps() -> None:
    from choreography.entities import CONTAINERS, TABLES

    main = parse(INFRA / "main.bicep")["variables"]
    assert tuple(main["containers"]["value"]) == CONTAINERS
    assert tuple(main["tables"]["value"]) == TABLES


