"""Package's triggers: requests on subscription ``package``; the compensation function on
``package-compensation``."""

from __future__ import annotations

import azure.functions as func

from choreography.entities import (
    DELIVERIES_TOPIC,
    DELIVERY_EVENTS_QUEUE,
    PACKAGE_COMPENSATION_SUBSCRIPTION,
    PACKAGE_SUBSCRIPTION,
)
from choreography.flow import flow, to
from choreography.handling import consume
from choreography.runtime import runtime
from choreography.settings import SERVICE_BUS_CONNECTION
from choreography.triggers import incoming
from contracts.deliveries import PackageCancelled, PackageReady, PackageRejected

from .bootstrap import build

bp = func.Blueprint()


@bp.function_name("package_on_delivery_requested")
@bp.service_bus_topic_trigger(arg_name="message", connection=SERVICE_BUS_CONNECTION,
                              topic_name=DELIVERIES_TOPIC.name, subscription_name=PACKAGE_SUBSCRIPTION.name)
@flow(to(DELIVERY_EVENTS_QUEUE, PackageReady, PackageRejected))
def package_on_delivery_requested(message: func.ServiceBusMessage) -> None:
    """DeliveryRequested → PackageReady, or PackageRejected (+ dead-letter) for an impossible package."""
    rt = runtime()
    consume(incoming(message, PACKAGE_SUBSCRIPTION), rt.service(build).requests, rt.publisher)


@bp.function_name("package_on_cancel_package")
@bp.service_bus_topic_trigger(arg_name="message", connection=SERVICE_BUS_CONNECTION,
                              topic_name=DELIVERIES_TOPIC.name,
                              subscription_name=PACKAGE_COMPENSATION_SUBSCRIPTION.name)
@flow(to(DELIVERY_EVENTS_QUEUE, PackageCancelled))
def package_on_cancel_package(message: func.ServiceBusMessage) -> None:
    """Compensation: CancelPackage → package marked cancelled → PackageCancelled."""
    rt = runtime()
    consume(incoming(message, PACKAGE_COMPENSATION_SUBSCRIPTION), rt.service(build).compensations, rt.publisher)
