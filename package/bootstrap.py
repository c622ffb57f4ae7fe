"""Wiring: the Package service on the process's shared adapters."""

from __future__ import annotations

from choreography.entities import PACKAGES_TABLE
from choreography.runtime import Runtime

from .adapters import TablePackageRepository
from .service import PackageService


def build(rt: Runtime) -> PackageService:
    return PackageService(TablePackageRepository(rt.table(PACKAGES_TABLE)), rt.publisher, rt.clock)
