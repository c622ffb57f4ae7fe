"""Package's contracts: the events it publishes and the compensation command it executes."""

from __future__ import annotations

from choreography.contracts import Contract, DeliveryId
from choreography.reason_codes import ReasonCode


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
