"""Package's storage port."""

from __future__ import annotations

from typing import Protocol

from .domain import Package


class PackageRepository(Protocol):
    def get(self, delivery_id: str) -> Package | None:
        ...

    def add(self, package: Package) -> bool:
        """Insert the package unless one is stored for ``package.delivery_id``; True if inserted."""
        ...

    def upsert(self, package: Package) -> None:
        """Insert or replace the package of ``package.delivery_id`` (idempotent)."""
        ...
