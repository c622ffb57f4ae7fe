"""The HTTP request body Ingestion accepts. What it publishes (``DeliveryRequested``, the
``JoinTimeout`` it schedules) is in :mod:`contracts.deliveries`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from choreography.contracts import DeliveryId

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
