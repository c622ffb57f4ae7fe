"""Drone delivery: who says what to whom.

========================  =======  ================================  ===============================
contract                  kind     sent by -> to                      over
========================  =======  ================================  ===============================
``DeliveryRequested``     event    Ingestion -> Package, Scheduler    topic ``deliveries``
``PackageReady``          event    Package -> Delivery                session queue ``delivery-events``
``PackageRejected``       event    Package -> Delivery                session queue ``delivery-events``
``DroneScheduled``        event    Drone Scheduler -> Delivery        session queue ``delivery-events``
``DroneUnavailable``      event    Drone Scheduler -> Delivery        session queue ``delivery-events``
``JoinTimeout``           timer    Ingestion -> Delivery              ``delivery-events``, scheduled
``CancelPackage``         command  Delivery -> Package                topic ``deliveries``
``PackageCancelled``      event    Package -> Delivery                session queue ``delivery-events``
``ReleaseDrone``          command  Delivery -> Drone Scheduler        topic ``deliveries``
``DroneReleased``         event    Drone Scheduler -> Delivery        session queue ``delivery-events``
========================  =======  ================================  ===============================

Events are past tense, commands imperative. ``DeliveryShipped`` / ``DeliveryFailed`` go out on
Event Grid as CloudEvents (see :mod:`delivery.domain`). :class:`DeliveryRecords` is the one
in-process interface between two services: Ingestion opens and reads the record Delivery keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import AwareDatetime, Field

from choreography.contracts import Contract, Data, DeliveryId
from choreography.entities import DELIVERY_EVENTS_QUEUE, DRONE_SCHEDULER_SUBSCRIPTION, PACKAGE_SUBSCRIPTION
from choreography.idempotency import message_id
from choreography.keys import TableKey
from choreography.messaging import Outgoing
from choreography.reason_codes import ReasonCode


class PackageInfo(Data):
    package_id: str
    size: str
    weight: float
    tag: str | None = None


class DeliveryRequested(Contract):
    """A delivery was accepted: Package checks the parcel, Drone Scheduler finds a drone."""

    TYPE = "DeliveryRequested"
    SCHEMA_VERSION = 1

    delivery_id: DeliveryId
    owner_id: str
    pickup_location: str
    dropoff_location: str
    deadline: AwareDatetime
    expedited: bool = False
    confirmation_required: bool = False
    package_info: PackageInfo


class PackageReady(Contract):
    TYPE = "PackageReady"

    delivery_id: DeliveryId
    package_id: str
    size: str
    weight: float


class PackageRejected(Contract):
    TYPE = "PackageRejected"

    delivery_id: DeliveryId
    package_id: str | None = None
    reason: ReasonCode
    description: str = ""


class CancelPackage(Contract):
    """Compensation: the delivery will not happen, so the package is no longer needed.
    ``packageId`` is absent when the delivery was cancelled before Package answered."""

    TYPE = "CancelPackage"

    delivery_id: DeliveryId
    package_id: str | None = None
    reason: ReasonCode | None = None


class PackageCancelled(Contract):
    TYPE = "PackageCancelled"

    delivery_id: DeliveryId
    package_id: str | None = None


class DroneScheduled(Contract):
    TYPE = "DroneScheduled"

    delivery_id: DeliveryId
    drone_id: TableKey
    capacity_kg: float
    queued_seconds: float | None = None  # how long the delivery waited for a drone, if it did


class DroneUnavailable(Contract):
    TYPE = "DroneUnavailable"

    delivery_id: DeliveryId
    reason: ReasonCode
    description: str = ""


class ReleaseDrone(Contract):
    """The delivery ended (shipped or cancelled): return its drone to the pool. ``droneId`` is
    absent when the delivery was cancelled before a drone was known; the scheduler then also
    stops scheduling for that delivery."""

    TYPE = "ReleaseDrone"

    delivery_id: DeliveryId
    drone_id: TableKey | None = None
    reason: ReasonCode | None = None


class DroneReleased(Contract):
    TYPE = "DroneReleased"

    delivery_id: DeliveryId
    drone_ids: list[str] = Field(default_factory=list)


class JoinTimeout(Contract):
    """Scheduled on the delivery's session by Ingestion before it records the delivery: if both
    outcomes have not arrived by then (or none, because the request never went out), the delivery
    is cancelled and whatever succeeded is compensated."""

    TYPE = "JoinTimeout"

    delivery_id: DeliveryId


# ------------------------------------------------------------------ in process: Ingestion -> Delivery
class Opening(StrEnum):
    """What opening a delivery's record found (:meth:`DeliveryRecords.open`)."""

    OPENED = "opened"  # a new delivery, recorded Requested
    REQUESTED = "requested"  # the same request was recorded before and nothing has happened yet
    UNDER_WAY = "under-way"  # the same request was recorded before and is under way or ended
    CONFLICT = "conflict"  # the id belongs to a different request


class DeliveryRecords(Protocol):
    """The delivery records Delivery keeps, as Ingestion uses them in process: Ingestion opens a
    delivery's record before it publishes ``DeliveryRequested`` (so the same request sent twice
    is one delivery) and answers ``GET /api/deliveries/{id}`` from it."""

    def open(self, delivery_id: str, request_fingerprint: str, at: datetime) -> Opening: ...

    def status(self, delivery_id: str) -> dict[str, Any] | None:
        """``{deliveryId, status, reason?, droneId?, history}``, or None if there is no such delivery."""
        ...


# What the owner of a subscription would have said had it been able to finish: the remediation
# service publishes these for a failed message whose saga has not been compensated yet. The
# message ids are the ones the owning service uses, so the two can never both count.
def _package_rejected(delivery_id: str, reason: ReasonCode, description: str) -> Outgoing:
    rejected = PackageRejected(delivery_id=delivery_id, reason=reason, description=description)
    return Outgoing(DELIVERY_EVENTS_QUEUE, rejected, message_id("PackageRejected", delivery_id), delivery_id,
                    session_id=delivery_id)


def _drone_unavailable(delivery_id: str, reason: ReasonCode, description: str) -> Outgoing:
    unavailable = DroneUnavailable(delivery_id=delivery_id, reason=reason, description=description)
    return Outgoing(DELIVERY_EVENTS_QUEUE, unavailable, message_id("DroneUnavailable", delivery_id), delivery_id,
                    session_id=delivery_id)


COMPENSATIONS: dict[tuple[str, str], Callable[[str, ReasonCode, str], Outgoing]] = {
    (PACKAGE_SUBSCRIPTION.path, DeliveryRequested.TYPE): _package_rejected,
    (DRONE_SCHEDULER_SUBSCRIPTION.path, DeliveryRequested.TYPE): _drone_unavailable,
    (DRONE_SCHEDULER_SUBSCRIPTION.path, "RetryDroneScheduling"): _drone_unavailable,
}
