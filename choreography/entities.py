"""Names of the Service Bus entities, tables and blob containers both workloads use: the one place
they are written.

Routing is by message type: every message's ``subject`` (Service Bus ``Label``) is its type name,
and the subscriptions of topic ``deliveries`` filter on it (emulators/servicebus/config.json):

===========================  ===========================================  ========================
subscription                 label filter                                 function
===========================  ===========================================  ========================
``package``                  ``DeliveryRequested``                        package_on_delivery_requested
``package-compensation``     ``CancelPackage``                            package_on_cancel_package
``drone-scheduler``          ``DeliveryRequested``, ``RetryDroneScheduling``  drone_scheduler_on_request
``drone-release``            ``ReleaseDrone``                             drone_scheduler_on_release_drone
===========================  ===========================================  ========================

Compensation commands have subscriptions of their own so that a backlog of requests or
scheduling retries never holds up the compensations that free drones and packages.
Outcomes for the Delivery saga go to the session queue ``delivery-events`` (session = delivery
id); permanent failures go to the queue ``deadletter`` (see :mod:`choreography.handling`), and so
does every entity's own dead-letter queue (``ForwardDeadLetteredMessagesTo``). Each
subscription's filter also takes a message whose ``ResubmitTo`` names it, and no other's, so
remediation can send a dead letter back to the one subscription it failed in.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Destination:
    """Where the publisher sends: a queue or a topic."""

    name: str
    kind: str  # "queue" | "topic" (Service Bus) | "eventgrid" (an Event Grid topic)
    sessions: bool = False


@dataclass(frozen=True)
class Subscription:
    topic: str
    name: str

    @property
    def path(self) -> str:
        return f"{self.topic}/subscriptions/{self.name}"


DELIVERIES_TOPIC = Destination("deliveries", "topic")
DELIVERY_EVENTS_QUEUE = Destination("delivery-events", "queue", sessions=True)
DEADLETTER_QUEUE = Destination("deadletter", "queue")
# Event Grid topics (CloudEvents 1.0): delivery outcomes, and payment-file outcomes.
DELIVERY_NOTICES_TOPIC = Destination("deliveries", "eventgrid")
PAYMENT_NOTICES_TOPIC = Destination("payments", "eventgrid")

PACKAGE_SUBSCRIPTION = Subscription(DELIVERIES_TOPIC.name, "package")
PACKAGE_COMPENSATION_SUBSCRIPTION = Subscription(DELIVERIES_TOPIC.name, "package-compensation")
DRONE_SCHEDULER_SUBSCRIPTION = Subscription(DELIVERIES_TOPIC.name, "drone-scheduler")
DRONE_RELEASE_SUBSCRIPTION = Subscription(DELIVERIES_TOPIC.name, "drone-release")

# Azure Table Storage (the AzureWebJobsStorage account).
DELIVERIES_TABLE = "deliveries"
PACKAGES_TABLE = "packages"
DRONES_TABLE = "drones"
NOTIFICATIONS_TABLE = "notifications"
REMEDIATIONS_TABLE = "remediations"  # every decision on a dead letter (remediation/)

# The payment-file pipeline: its hand-offs (queues, no sessions, duplicate detection on), its
# blob containers and its tables, all in the AzureWebJobsStorage account.
VALIDATED_QUEUE = Destination("payment-files-validated", "queue")
ADAPTED_QUEUE = Destination("payment-files-adapted", "queue")
COMPENSATION_QUEUE = Destination("payment-files-compensation", "queue")
INPUT_CONTAINER = "payment-files-in"
WORK_CONTAINER = "payment-files-work"
OUTPUT_CONTAINER = "payment-files-out"
REPORTS_CONTAINER = "payment-status-reports"
REJECTED_CONTAINER = "payment-files-rejected"
CONTAINERS = (INPUT_CONTAINER, WORK_CONTAINER, OUTPUT_CONTAINER, REPORTS_CONTAINER, REJECTED_CONTAINER)
FILES_TABLE = "paymentfiles"
REFERENCE_TABLE = "paymentreference"
# Every table the app uses (infra/main.bicep declares the same; tests/infra checks it).
TABLES = (DELIVERIES_TABLE, PACKAGES_TABLE, DRONES_TABLE, NOTIFICATIONS_TABLE, FILES_TABLE, REFERENCE_TABLE)
