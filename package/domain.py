"""Package rules: which packages a drone delivery can take at all.

Weight limits per size (kilograms, exclusive of zero, inclusive of the limit):

========  ==========
size      max weight
========  ==========
small     5 kg
medium    25 kg
large     100 kg
========  ==========

Any other size is unknown; a weight of zero or less is invalid. Whether a *drone* can carry
the weight is the Drone Scheduler's business, not this service's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from choreography.errors import BusinessRuleViolation
from choreography.reason_codes import ReasonCode

WEIGHT_LIMITS_KG: dict[str, float] = {"small": 5.0, "medium": 25.0, "large": 100.0}


class PackageStatus(StrEnum):
    READY = "Ready"
    CANCELLED = "Cancelled"


@dataclass(frozen=True)
class Package:
    delivery_id: str
    package_id: str | None
    size: str | None
    weight_kg: float | None
    tag: str | None
    status: PackageStatus
    updated_at: datetime


def check_package(size: str, weight_kg: float) -> None:
    """Raise BusinessRuleViolation (with its reason code) unless a drone delivery can take it."""
    limit = WEIGHT_LIMITS_KG.get(size)
    if limit is None:
        raise BusinessRuleViolation(f"package size {size!r} is not one of {', '.join(WEIGHT_LIMITS_KG)}",
                                    ReasonCode.UNKNOWN_PACKAGE_SIZE)
    if not math.isfinite(weight_kg) or weight_kg <= 0:
        raise BusinessRuleViolation(f"package weight {weight_kg} kg must be more than 0",
                                    ReasonCode.INVALID_PACKAGE_WEIGHT)
    if weight_kg > limit:
        raise BusinessRuleViolation(f"a {size} package weighs at most {limit:g} kg, this one {weight_kg:g} kg",
                                    ReasonCode.WEIGHT_EXCEEDS_SIZE_LIMIT)
