"""Stand-in for the azure-servicebus tests' ``servicebus_preparer``: the same preparer names and
arguments, but the resources are the emulator's.

The namespace is the running emulator (``CONFORMANCE_SB_PORT``); each queue, topic and
subscription preparer gets an entity of its own, named at decoration time.  While the runner
collects (``CONFORMANCE_ENTITIES_OUT`` set), :func:`entity_config` turns what was registered into
the emulator's ``Config.json``, with the properties each preparer asked for.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from devtools_testutils import AzureMgmtPreparer, FakeResource
from devtools_testutils.resource_testcase import RESOURCE_GROUP_PARAM

SERVICEBUS_DEFAULT_AUTH_RULE_NAME = "RootManageSharedAccessKey"
SERVICEBUS_NAMESPACE_PARAM = "servicebus_namespace"
SERVICEBUS_TOPIC_PARAM = "servicebus_topic"
SERVICEBUS_SUBSCRIPTION_PARAM = "servicebus_subscription"
SERVICEBUS_QUEUE_PARAM = "servicebus_queue"
SERVICEBUS_AUTHORIZATION_RULE_PARAM = "servicebus_authorization_rule"
SERVICEBUS_QUEUE_AUTHORIZATION_RULE_PARAM = "servicebus_queue_authorization_rule"

EMULATOR_HOST = "127.0.0.1"
EMULATOR_PORT = int(os.environ.get("CONFORMANCE_SB_PORT", "5672"))
# Tests build the namespace address as f"{namespace.name}{SERVICEBUS_ENDPOINT_SUFFIX}"; the
# management tests compare it with the end of the addresses the administration API gives back.
SERVICEBUS_ENDPOINT_SUFFIX = f":{os.environ.get('CONFORMANCE_SB_ADMIN_PORT') or EMULATOR_PORT}"
KEY_NAME = SERVICEBUS_DEFAULT_AUTH_RULE_NAME
PRIMARY_KEY = "U0FTX0tFWV9WQUxVRQ=="
CONNECTION_STRING = (f"Endpoint=sb://{EMULATOR_HOST}:{EMULATOR_PORT};SharedAccessKeyName={KEY_NAME};"
                     f"SharedAccessKey={PRIMARY_KEY};UseDevelopmentEmulator=true;")

_registered: list[tuple[AzureMgmtPreparer, list[AzureMgmtPreparer]]] = []


def register(preparer: AzureMgmtPreparer, stack: list[AzureMgmtPreparer]) -> None:
    _registered.append((preparer, stack))


def _duration(value: Any) -> str:
    if hasattr(value, "total_seconds"):
        return f"PT{int(value.total_seconds())}S"
    return str(value)


def entity_config() -> dict[str, Any]:
    """The emulator's Config.json declaring every entity the collected tests will be handed."""
    queues: list[dict[str, Any]] = []
    topics: list[dict[str, Any]] = []
    for preparer, stack in _registered:
        if isinstance(preparer, ServiceBusQueuePreparer):
            queues.append({"Name": preparer.resource_name, "Properties": {
                "LockDuration": _duration(preparer.lock_duration),
                "RequiresDuplicateDetection": preparer.requires_duplicate_detection,
                "DeadLetteringOnMessageExpiration": preparer.dead_lettering_on_message_expiration,
                "RequiresSession": preparer.requires_session,
                "EnablePartitioning": preparer.enable_partitioning,
            }})
        elif isinstance(preparer, ServiceBusTopicPreparer):
            subscriptions = [{"Name": sub.resource_name, "Properties": {
                "LockDuration": _duration(sub.lock_duration), "RequiresSession": sub.requires_session}}
                for sub in stack if isinstance(sub, ServiceBusSubscriptionPreparer)
                and sub.servicebus_topic_parameter_name == preparer.parameter_name]
            topics.append({"Name": preparer.resource_name, "Properties": {}, "Subscriptions": subscriptions})
    return {"UserConfig": {"Namespaces": [{"Name": "sbemulatorns", "Queues": queues, "Topics": topics}],
                           "Logging": {"Type": "File"}}}


class ServiceBusResourceGroupPreparer(AzureMgmtPreparer):
    def __init__(self, name_prefix: str = "", parameter_name: str = RESOURCE_GROUP_PARAM,
                 parameter_name_for_location: str = "location", **kwargs: Any) -> None:
        super().__init__(name_prefix)
        self.parameter_name = parameter_name
        self.parameter_name_for_location = parameter_name_for_location

    def create_resource(self, name: str, **kwargs: Any) -> dict[str, Any]:
        return {self.parameter_name: FakeResource(name="rg-" + name, id="rg-" + name),
                self.parameter_name_for_location: "westus"}


class ServiceBusNamespacePreparer(AzureMgmtPreparer):
    def __init__(self, name_prefix: str = "", parameter_name: str = SERVICEBUS_NAMESPACE_PARAM,
                 **kwargs: Any) -> None:
        super().__init__(name_prefix)
        self.parameter_name = parameter_name

    def create_resource(self, name: str, **kwargs: Any) -> dict[str, Any]:
        return {
            self.parameter_name: FakeResource(name=EMULATOR_HOST, id=EMULATOR_HOST),
            f"{self.parameter_name}_connection_string": CONNECTION_STRING,
            f"{self.parameter_name}_key_name": KEY_NAME,
            f"{self.parameter_name}_primary_key": PRIMARY_KEY,
        }


class ServiceBusTopicPreparer(AzureMgmtPreparer):
    def __init__(self, name_prefix: str = "", parameter_name: str = SERVICEBUS_TOPIC_PARAM, **kwargs: Any) -> None:
        super().__init__(name_prefix)
        self.parameter_name = parameter_name

    def create_resource(self, name: str, **kwargs: Any) -> dict[str, Any]:
        return {self.parameter_name: FakeResource(name=name, id=name)}


class ServiceBusSubscriptionPreparer(AzureMgmtPreparer):
    def __init__(self, name_prefix: str = "", parameter_name: str = SERVICEBUS_SUBSCRIPTION_PARAM,
                 servicebus_topic_parameter_name: str = SERVICEBUS_TOPIC_PARAM, requires_session: bool = False,
                 lock_duration: Any = "PT60S", **kwargs: Any) -> None:
        super().__init__(name_prefix)
        self.parameter_name = parameter_name
        self.servicebus_topic_parameter_name = servicebus_topic_parameter_name
        self.requires_session = requires_session
        self.lock_duration = lock_duration

    def create_resource(self, name: str, **kwargs: Any) -> dict[str, Any]:
        return {self.parameter_name: FakeResource(name=name, id=name)}


class ServiceBusQueuePreparer(AzureMgmtPreparer):
    def __init__(self, name_prefix: str = "", requires_duplicate_detection: bool = False,
                 dead_lettering_on_message_expiration: bool = False, requires_session: bool = False,
                 enable_partitioning: bool = False, lock_duration: Any = "PT30S",
                 parameter_name: str = SERVICEBUS_QUEUE_PARAM, **kwargs: Any) -> None:
        super().__init__(name_prefix)
        self.parameter_name = parameter_name
        self.requires_duplicate_detection = requires_duplicate_detection
        self.dead_lettering_on_message_expiration = dead_lettering_on_message_expiration
        self.requires_session = requires_session
        self.enable_partitioning = enable_partitioning
        self.lock_duration = lock_duration

    def create_resource(self, name: str, **kwargs: Any) -> dict[str, Any]:
        return {self.parameter_name: FakeResource(name=name, id=name)}


class _AuthorizationRulePreparer(AzureMgmtPreparer):
    """Rights are not enforced by the emulator (README: no real authorization), so a rule's
    connection string is the namespace's; tests that expect a refusal cannot pass."""

    default_parameter = SERVICEBUS_AUTHORIZATION_RULE_PARAM

    def __init__(self, name_prefix: str = "", parameter_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name_prefix)
        self.parameter_name = parameter_name or self.default_parameter

    def create_resource(self, name: str, **kwargs: Any) -> dict[str, Any]:
        return {self.parameter_name: FakeResource(name=name, id=name),
                f"{self.parameter_name}_connection_string": CONNECTION_STRING}


class ServiceBusNamespaceAuthorizationRulePreparer(_AuthorizationRulePreparer):
    pass


class ServiceBusQueueAuthorizationRulePreparer(_AuthorizationRulePreparer):
    default_parameter = SERVICEBUS_QUEUE_AUTHORIZATION_RULE_PARAM

    def create_resource(self, name: str, **kwargs: Any) -> dict[str, Any]:
        found = super().create_resource(name, **kwargs)
        queue = kwargs.get(SERVICEBUS_QUEUE_PARAM)
        if queue is not None:
            found[f"{self.parameter_name}_connection_string"] = CONNECTION_STRING + f"EntityPath={queue.name};"
        return found


CachedServiceBusResourceGroupPreparer = functools.partial(ServiceBusResourceGroupPreparer, use_cache=True)
CachedServiceBusNamespacePreparer = functools.partial(ServiceBusNamespacePreparer, use_cache=True)
CachedServiceBusQueuePreparer = functools.partial(ServiceBusQueuePreparer, use_cache=True)
CachedServiceBusTopicPreparer = functools.partial(ServiceBusTopicPreparer, use_cache=True)
CachedServiceBusSubscriptionPreparer = functools.partial(ServiceBusSubscriptionPreparer, use_cache=True)
