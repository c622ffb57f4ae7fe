from __future__ import annotations

from . import RESOURCE_GROUP_PARAM

__all__ = ["RESOURCE_GROUP_PARAM"]
