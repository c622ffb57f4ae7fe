"""Driving the app's decorated functions by hand, hop by hop, with real trigger objects.

Each call hands a function exactly what the Functions host would (``func.HttpRequest``,
``func.ServiceBusMessage`` built from a message really received from the Service Bus emulator,
``func.CloudEvent`` from the Event Grid emulator); the function's adapters talk to the real
emulators. The test decides which message goes to which function and when, so each hop, each
order and each redelivery is explicit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
from azure.data.tables import TableServiceClient

from delivery.handlers import delivery_on_event
from devstack.stack import EventGridEmulator
from drone_scheduler.adapters import FLEET, TableDroneFleet
from drone_scheduler.domain import Drone
from drone_scheduler.handlers import drone_scheduler_on_release_drone, drone_scheduler_on_request
from ingestion.handlers import ingestion_get_delivery, ingestion_health, ingestion_submit_delivery
from notifications.handlers import notifications_on_delivery_event
from package.handlers import package_on_cancel_package, package_on_delivery_requested
from tests.support.waiting import wait_until
from tests.unit.delivery_app.samples import request_body

from .conftest import Mailbox, Received

BASE = "http://127.0.0.1:7071/api"
PACKAGE = "deliveries/subscriptions/package"
PACKAGE_COMPENSATION = "deliveries/subscriptions/package-compensation"
DRONE_SCHEDULER = "deliveries/subscriptions/drone-scheduler"
DRONE_RELEASE = "deliveries/subscriptions/drone-release"
EVENTS = "delivery-events"
DEADLETTER = "deadletter"


def post(body: Any, content_type: str | None = "application/json") -> func.HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": content_type} if content_type else {}
    return ingestion_submit_delivery(func.HttpRequest("POST", f"{BASE}/deliveries", headers=headers, body=raw))


def get_status(delivery_id: str) -> func.HttpResponse:
    return ingestion_get_delivery(func.HttpRequest("GET", f"{BASE}/deliveries/{delivery_id}", body=b"",
                                                   route_params={"deliveryId": delivery_id}))


def health() -> func.HttpResponse:
    return ingestion_health(func.HttpRequest("GET", f"{BASE}/health", body=b""))


def json_of(response: func.HttpResponse) -> Any:
    return json.loads(response.get_body())


def set_fleet(tables: TableServiceClient, drones: Sequence[Drone]) -> TableDroneFleet:
    """Make the app's ``drones`` table hold exactly ``drones``, all free."""
    table = tables.create_table_if_not_exists("drones")
    for entity in table.query_entities("PartitionKey eq @pk", parameters={"pk": FLEET}):
        table.delete_entity(FLEET, entity["RowKey"])
    fleet = TableDroneFleet(table)
    for drone in drones:
        fleet.add(drone)
    return fleet


class Hops:
    def __init__(self, mailbox: Mailbox, eventgrid: EventGridEmulator) -> None:
        self.mailbox = mailbox
        self.eventgrid = eventgrid

    # ingestion
    def submit(self, **overrides: Any) -> str:
        response = post(request_body(datetime.now(UTC), **overrides))
        assert response.status_code == 202, response.get_body()
        return str(json_of(response)["deliveryId"])

    def status(self, delivery_id: str) -> dict[str, Any]:
        response = get_status(delivery_id)
        assert response.status_code == 200, response.get_body()
        return dict(json_of(response))

    # taking messages the functions sent
    def take(self, entity: str, subject: str, delivery_id: str) -> Received:
        return self.mailbox.one(entity, subject, delivery_id, session=entity == EVENTS)

    # feeding messages to the functions
    def package(self, delivery_id: str) -> Received:
        request = self.take(PACKAGE, "DeliveryRequested", delivery_id)
        package_on_delivery_requested(request.trigger())
        return request

    def drone(self, delivery_id: str) -> Received:
        request = self.take(DRONE_SCHEDULER, "DeliveryRequested", delivery_id)
        drone_scheduler_on_request(request.trigger())
        return request

    def deliver(self, message: Received, delivery_count: int = 1) -> None:
        delivery_on_event(message.trigger(delivery_count))

    def outcome(self, delivery_id: str, subject: str) -> Received:
        """Take ``subject`` from the delivery's session and feed it to the Delivery function."""
        message = self.take(EVENTS, subject, delivery_id)
        self.deliver(message)
        return message

    def cancel_package(self, delivery_id: str) -> Received:
        command = self.take(PACKAGE_COMPENSATION, "CancelPackage", delivery_id)
        package_on_cancel_package(command.trigger())
        return command

    def release_drone(self, delivery_id: str) -> Received:
        command = self.take(DRONE_RELEASE, "ReleaseDrone", delivery_id)
        drone_scheduler_on_release_drone(command.trigger())
        return command

    # Event Grid
    def announced(self, delivery_id: str, event_type: str) -> list[dict[str, Any]]:
        return list(wait_until(lambda: [e for e in self.eventgrid.events(type=event_type)
                                        if e["event"].get("subject") == f"deliveries/{delivery_id}"],
                               f"{event_type} for {delivery_id} on Event Grid"))

    def notify(self, stored_event: dict[str, Any]) -> None:
        """Hand an event the emulator stored to the Event Grid-triggered function, as the worker
        would (CloudEvents arrive as ``func.CloudEvent``)."""
        event = stored_event["event"]
        notifications_on_delivery_event(func.CloudEvent(
            id=event["id"], source=event["source"], type=event["type"], specversion=event["specversion"],
            data=event.get("data"), subject=event.get("subject"),
            time=datetime.fromisoformat(event["time"].replace("Z", "+00:00")) if event.get("time") else None))

    def history(self, delivery_id: str) -> list[str]:
        return [h["status"] for h in self.status(delivery_id)["history"]]

