"""Packages in Azure Table Storage, table ``packages``: PartitionKey = delivery id, RowKey ``package``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from .domain import Package, PackageStatus

ROW_KEY = "package"


class TablePackageRepository:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get(self, delivery_id: str) -> Package | None:
        try:
            entity = self._table.get_entity(delivery_id, ROW_KEY)
        except ResourceNotFoundError:
            return None
        return Package(
            delivery_id=entity["PartitionKey"],
            package_id=entity.get("packageId") or None,
            size=entity.get("size") or None,
            weight_kg=entity.get("weightKg"),
            tag=entity.get("tag") or None,
            status=PackageStatus(entity["status"]),
            updated_at=datetime.fromisoformat(entity["updatedAt"]),
        )

    def add(self, package: Package) -> bool:
        try:
            self._table.create_entity(_entity(package))
        except ResourceExistsError:
            return False
        return True

    def upsert(self, package: Package) -> None:
        self._table.upsert_entity(_entity(package), mode=UpdateMode.REPLACE)


def _entity(package: Package) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": package.delivery_id,
        "RowKey": ROW_KEY,
        "packageId": package.package_id or "",
        "size": package.size or "",
        "tag": package.tag or "",
        "status": package.status.value,
        "updatedAt": package.updated_at.isoformat(),
    }
    if package.weight_kg is not None:
        entity["weightKg"] = float(package.weight_kg)
    return entity
