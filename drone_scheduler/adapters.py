"""The drone fleet in Azure Table Storage, table ``drones``.

* PartitionKey ``fleet``, RowKey = drone id: ``capacityKg``, ``deliveryId`` ("" when free),
  ``wanted`` (a waiting delivery could use it). Assignments replace the entity with
  ``If-Match: <etag>``, so two schedulers racing for the same drone cannot both win: the loser
  gets 412 and tries another drone.
* PartitionKey ``closed``, RowKey = delivery id: deliveries that ended (tombstones).
* PartitionKey ``waiting``, RowKey = delivery id: the waiting list (``weightKg``, ``since``,
  ``deadline``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from .domain import Drone, Waiter

FLEET, CLOSED, WAITING = "fleet", "closed", "waiting"


def _drone(entity: Any) -> Drone:
    return Drone(entity["RowKey"], float(entity["capacityKg"]), entity.get("deliveryId") or None,
                 entity.metadata["etag"], bool(entity.get("wanted", False)))


def _waiter(entity: Any) -> Waiter:
    claimed = entity.get("claimedAt") or None
    return Waiter(entity["RowKey"], float(entity["weightKg"]), datetime.fromisoformat(entity["since"]),
                  datetime.fromisoformat(entity["deadline"]), datetime.fromisoformat(claimed) if claimed else None,
                  entity.metadata["etag"])


def _waiter_entity(waiter: Waiter, claimed_at: datetime | None) -> dict[str, Any]:
    return {"PartitionKey": WAITING, "RowKey": waiter.delivery_id, "weightKg": float(waiter.weight_kg),
            "since": waiter.since.isoformat(), "deadline": waiter.deadline.isoformat(),
            "claimedAt": claimed_at.isoformat() if claimed_at else ""}


class TableDroneFleet:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def drones(self) -> list[Drone]:
        entities = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": FLEET})
        return sorted((_drone(e) for e in entities), key=lambda d: d.drone_id)

    def held_by(self, delivery_id: str) -> list[Drone]:
        # Filtered on the server: the answer is the few drones of this delivery, not the fleet.
        entities = self._table.query_entities("PartitionKey eq @pk and deliveryId eq @d",
                                              parameters={"pk": FLEET, "d": delivery_id})
        return sorted((_drone(e) for e in entities), key=lambda d: d.drone_id)

    def _replace(self, drone: Drone, delivery_id: str | None, wanted: bool) -> Drone | None:
        entity = {"PartitionKey": FLEET, "RowKey": drone.drone_id, "capacityKg": float(drone.capacity_kg),
                  "deliveryId": delivery_id or "", "wanted": wanted}
        try:
            meta = self._table.update_entity(entity, mode=UpdateMode.REPLACE, etag=drone.version,
                                             match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        return Drone(drone.drone_id, drone.capacity_kg, delivery_id, meta["etag"], wanted)

    def try_assign(self, drone: Drone, delivery_id: str) -> Drone | None:
        return self._replace(drone, delivery_id, drone.wanted)

    def try_release(self, drone: Drone) -> Drone | None:
        return self._replace(drone, None, False)

    def try_want(self, drone: Drone) -> Drone | None:
        return self._replace(drone, drone.delivery_id, True)

    def wait(self, waiter: Waiter) -> None:
        self._table.upsert_entity(_waiter_entity(waiter, None), mode=UpdateMode.REPLACE)

    def waiters(self) -> list[Waiter]:
        return [_waiter(e) for e in self._table.query_entities("PartitionKey eq @pk", parameters={"pk": WAITING})]

    def waiter(self, delivery_id: str) -> Waiter | None:
        try:
            return _waiter(self._table.get_entity(WAITING, delivery_id))
        except ResourceNotFoundError:
            return None

    def try_claim(self, waiter: Waiter, at: datetime) -> Waiter | None:
        # An update, not a delete: a conditional delete of a row already gone does not fail.
        try:
            meta = self._table.update_entity(_waiter_entity(waiter, at), mode=UpdateMode.REPLACE,
                                             etag=waiter.version, match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        return replace(waiter, claimed_at=at, version=meta["etag"])

    def stop_waiting(self, delivery_id: str) -> None:
        self._table.delete_entity(WAITING, delivery_id)  # no error when it is not there

    def add(self, drone: Drone) -> bool:
        try:
            self._table.create_entity({"PartitionKey": FLEET, "RowKey": drone.drone_id,
                                       "capacityKg": float(drone.capacity_kg), "deliveryId": drone.delivery_id or ""})
        except ResourceExistsError:
            return False
        return True

    def close(self, delivery_id: str, at: datetime) -> None:
        self._table.upsert_entity({"PartitionKey": CLOSED, "RowKey": delivery_id, "closedAt": at.isoformat()},
                                  mode=UpdateMode.REPLACE)

    def is_closed(self, delivery_id: str) -> bool:
        try:
            self._table.get_entity(CLOSED, delivery_id)
        except ResourceNotFoundError:
            return False
        return True
