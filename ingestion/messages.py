"""Ingestion's contracts: the HTTP request body it accepts and the event it publishes.

Events are owned by the service that publishes them (``DeliveryRequested`` here); commands by
the service that executes them (``CancelPackage`` in package/, ``ReleaseDrone`` in
drone_scheduler/).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from choreography.contracts import Contract, Data, DeliveryId

ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Location = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore")


class PackageInfoRequest(_Body):
    package_id: ShortText
    size: Literal["small", "medium", "large"]
    weight: Annotated[float, Field(gt=0, allow_inf_nan=False, description="kilograms")]
    tag: Annotated[str, StringConstraints(max_length=64)] | None = None


class DeliveryRequest(_Body):
    """``POST /api/deliveries`` body. Shape and types only: business rules (a size's weight
    limit, what the fleet can carry) belong to the services that own them."""

    delivery_id: DeliveryId | None = None
    owner_id: ShortText
    pickup_location: Location
    dropoff_location: Location
    deadline: AwareDatetime
    expedited: bool = False
    confirmation_required: bool = False
    package_info: PackageInfoRequest


class PackageInfo(Data):
    package_id: str
    size: str
    weight: float
    tag: str | None = None


class DeliveryRequested(Contract):
    """Published to topic ``deliveries``; read by Package and Drone Scheduler."""

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
