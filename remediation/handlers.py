"""Remediation's trigger: queue ``deadletter``, where every dead letter of the app ends."""

from __future__ import annotations

import azure.functions as func

from choreography.entities import DEADLETTER_QUEUE, DELIVERY_EVENTS_QUEUE, DELIVERY_NOTICES_TOPIC, PAYMENT_NOTICES_TOPIC
from choreography.flow import flow, to
from choreography.runtime import runtime
from choreography.settings import SERVICE_BUS_CONNECTION
from choreography.triggers import incoming
from contracts.deliveries import DroneUnavailable, PackageRejected
from contracts.remediation import MESSAGE_PARKED

from .bootstrap import build

bp = func.Blueprint()


@bp.function_name("remediation_on_dead_letter")
@bp.service_bus_queue_trigger(arg_name="message", connection=SERVICE_BUS_CONNECTION,
                              queue_name=DEADLETTER_QUEUE.name)
@flow(to(DELIVERY_EVENTS_QUEUE, PackageRejected, DroneUnavailable),
      to(DELIVERY_NOTICES_TOPIC, MESSAGE_PARKED), to(PAYMENT_NOTICES_TOPIC, MESSAGE_PARKED))
def remediation_on_dead_letter(message: func.ServiceBusMessage) -> None:
    """A dead letter → retry it where it failed, compensate, park it for a person, or close it."""
    runtime().service(build).handle(incoming(message, DEADLETTER_QUEUE))
