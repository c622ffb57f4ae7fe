"""Drone Scheduler's triggers: scheduling on ``drone-scheduler``; the compensation function
(``ReleaseDrone``) on ``drone-release``."""

from __future__ import annotations

import azure.functions as func

from choreography.entities import (
    DELIVERIES_TOPIC,
    DELIVERY_EVENTS_QUEUE,
    DRONE_RELEASE_SUBSCRIPTION,
    DRONE_SCHEDULER_SUBSCRIPTION,
)
from choreography.flow import flow, to
from choreography.handling import consume
from choreography.runtime import runtime
from choreography.settings import SERVICE_BUS_CONNECTION
from choreography.triggers import incoming
from contracts.deliveries import DroneReleased, DroneScheduled, DroneUnavailable

from .bootstrap import build
from .messages import RetryDroneScheduling

bp = func.Blueprint()


@bp.function_name("drone_scheduler_on_request")
@bp.service_bus_topic_trigger(arg_name="message", connection=SERVICE_BUS_CONNECTION,
                              topic_name=DELIVERIES_TOPIC.name, subscription_name=DRONE_SCHEDULER_SUBSCRIPTION.name)
@flow(to(DELIVERY_EVENTS_QUEUE, DroneScheduled, DroneUnavailable), to(DELIVERIES_TOPIC, RetryDroneScheduling))
def drone_scheduler_on_request(message: func.ServiceBusMessage) -> None:
    """DeliveryRequested / RetryDroneScheduling → DroneScheduled, a later retry, or DroneUnavailable."""
    rt = runtime()
    consume(incoming(message, DRONE_SCHEDULER_SUBSCRIPTION), rt.service(build).requests, rt.publisher)


@bp.function_name("drone_scheduler_on_release_drone")
@bp.service_bus_topic_trigger(arg_name="message", connection=SERVICE_BUS_CONNECTION,
                              topic_name=DELIVERIES_TOPIC.name, subscription_name=DRONE_RELEASE_SUBSCRIPTION.name)
@flow(to(DELIVERY_EVENTS_QUEUE, DroneReleased))
def drone_scheduler_on_release_drone(message: func.ServiceBusMessage) -> None:
    """Compensation / end of flight: ReleaseDrone → drone back in the pool → DroneReleased."""
    rt = runtime()
    consume(incoming(message, DRONE_RELEASE_SUBSCRIPTION), rt.service(build).releases, rt.publisher)
