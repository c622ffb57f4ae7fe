"""Package use cases: accept (or reject) the package of a requested delivery; cancel it."""

from __future__ import annotations

from choreography.clock import Clock
from choreography.contracts import Contract, ContractRegistry
from choreography.entities import DELIVERY_EVENTS_QUEUE
from choreography.errors import PermanentFailure
from choreography.handling import unexpected
from choreography.idempotency import message_id, short_hash
from choreography.messaging import Cause, Incoming, Outgoing, Publisher, Received
from choreography.reason_codes import ReasonCode
from contracts.deliveries import CancelPackage, DeliveryRequested, PackageCancelled, PackageReady, PackageRejected

from .domain import Package, PackageStatus, check_package
from .ports import PackageRepository


def to_delivery(payload: Contract, delivery_id: str, msg_id: str) -> Outgoing:
    return Outgoing(DELIVERY_EVENTS_QUEUE, payload, msg_id, delivery_id, session_id=delivery_id)


class PackageService:
    def __init__(self, packages: PackageRepository, publisher: Publisher, clock: Clock) -> None:
        self.packages = packages
        self.publisher = publisher
        self.clock = clock
        self.requests = PackageRequests(self)
        self.compensations = PackageCompensations(self)

    def accept(self, request: DeliveryRequested, cause: Cause) -> None:
        """Check and record the package, then tell Delivery ``PackageReady``.
        Raises BusinessRuleViolation for an impossible package."""
        info = request.package_info
        check_package(info.size, info.weight)
        package = Package(request.delivery_id, info.package_id, info.size, info.weight, info.tag,
                          PackageStatus.READY, self.clock.now())
        if not self.packages.add(package):  # a redelivery, or a tombstone left by a cancellation
            existing = self.packages.get(request.delivery_id)
            if existing is not None and existing.status is PackageStatus.CANCELLED:
                return  # the delivery was called off before this request was processed
        ready = PackageReady(delivery_id=request.delivery_id, package_id=info.package_id, size=info.size,
                             weight=info.weight)
        self.publisher.send([to_delivery(ready, request.delivery_id, message_id("PackageReady", request.delivery_id))],
                            cause)

    def reject(self, delivery_id: str, package_id: str | None, reason: ReasonCode, description: str,
               cause: Cause) -> None:
        rejected = PackageRejected(delivery_id=delivery_id, package_id=package_id, reason=reason,
                                   description=description)
        self.publisher.send([to_delivery(rejected, delivery_id, message_id("PackageRejected", delivery_id))], cause)

    def cancel(self, command: CancelPackage, cause: Cause) -> None:
        """Compensation, idempotent: mark the package cancelled (a tombstone if it was never
        recorded, so a late request cannot resurrect it) and acknowledge."""
        existing = self.packages.get(command.delivery_id)
        if existing is None or existing.status is not PackageStatus.CANCELLED:
            base = existing or Package(command.delivery_id, command.package_id, None, None, None,
                                       PackageStatus.CANCELLED, self.clock.now())
            self.packages.upsert(Package(base.delivery_id, base.package_id, base.size, base.weight_kg, base.tag,
                                         PackageStatus.CANCELLED, self.clock.now()))
        cancelled = PackageCancelled(delivery_id=command.delivery_id,
                                     package_id=existing.package_id if existing else command.package_id)
        self.publisher.send([to_delivery(cancelled, command.delivery_id,
                                         message_id("PackageCancelled", command.delivery_id,
                                                    short_hash(cause.message_id)))], cause)


class PackageRequests:
    """Consumer of subscription ``package`` (``DeliveryRequested``)."""

    contracts = ContractRegistry(DeliveryRequested)

    def __init__(self, service: PackageService) -> None:
        self.service = service

    def handle(self, received: Received) -> None:
        match received.payload:
            case DeliveryRequested() as request:
                self.service.accept(request, received.cause)
            case _:
                unexpected(received)

    def on_permanent_failure(self, incoming: Incoming, received: Received | None,
                             failure: PermanentFailure) -> None:
        """Whatever made the request unusable, Delivery hears ``PackageRejected`` and compensates."""
        delivery_id = received.envelope.correlation_id if received else incoming.delivery_id
        if not delivery_id:
            return
        payload = received.payload if received else None
        package_id = payload.package_info.package_id if isinstance(payload, DeliveryRequested) else None
        cause = received.cause if received else incoming.cause
        self.service.reject(delivery_id, package_id, failure.reason, failure.description, cause)


class PackageCompensations:
    """Consumer of subscription ``package-compensation`` (``CancelPackage``)."""

    contracts = ContractRegistry(CancelPackage)

    def __init__(self, service: PackageService) -> None:
        self.service = service

    def handle(self, received: Received) -> None:
        match received.payload:
            case CancelPackage() as command:
                self.service.cancel(command, received.cause)
            case _:
                unexpected(received)

    def on_permanent_failure(self, incoming: Incoming, received: Received | None,
                             failure: PermanentFailure) -> None:
        """A compensation command nobody can read is only dead-lettered: nothing to compensate."""

