"""The drone fleet in Azure Table Storage, table ``drones``.

* PartitionKey ``fleet``, RowKey = drone id: ``capacityKg``, ``deliveryId`` ("" when free),
  ``wanted`` (a waiting delivery could use it). Assignments replace the entity with
  ``If-Match: <etag>``, so two schedulers racing for the same drone cannot both win: the loser
  gets 412 and tries another drone.
* PartitionKey ``fleet``, RowKey = ``~`` + delivery id: the delivery's booking (``droneIds``, a
  JSON list; ``closed``). In the drones' partition so that an assignment writes the drone and the
  booking in one entity-group transaction: no crash can leave a drone assigned that its booking
  does not name. ``~`` sorts after every drone id, so the fleet is the RowKeys below it.
* PartitionKey ``waiting``, RowKey = delivery id: the waiting list (``weightKg``, ``since``,
  ``deadline``, ``claimedAt``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from .domain import Booking, Drone, Waiter
from .ports import BookingChanged

FLEET, WAITING = "fleet", "waiting"
BOOKING_PREFIX = "~"  # after every drone id in RowKey order: the fleet is RowKey lt '~'
# What a transaction's operation fails with when its entity is not as read: there is one now
# (409), it changed (412), it is gone (404).
_CHANGED = frozenset({404, 409, 412})


def _booking_key(delivery_id: str) -> str:
    return BOOKING_PREFIX + delivery_id


def _booking(entity: Any) -> Booking:
    return Booking(entity["RowKey"].removeprefix(BOOKING_PREFIX), tuple(json.loads(entity.get("droneIds") or "[]")),
                   bool(entity.get("closed", False)), entity.metadata["etag"])


def _booking_write(booking: Booking | None, entity: dict[str, Any]) -> tuple[Any, ...]:
    """The transaction operation writing ``entity`` over ``booking`` as read: create it when there
    was none, else replace it if unchanged."""
    if booking is None:
        return ("create", entity)
    return ("update", entity, {"mode": UpdateMode.REPLACE, "etag": booking.version,
                               "match_condition": MatchConditions.IfNotModified})


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
        entities = self._table.query_entities("PartitionKey eq @pk and RowKey lt @bookings",
                                              parameters={"pk": FLEET, "bookings": BOOKING_PREFIX})
        return sorted((_drone(e) for e in entities), key=lambda d: d.drone_id)

    def drone(self, drone_id: str) -> Drone | None:
        try:
            return _drone(self._table.get_entity(FLEET, drone_id))
        except ResourceNotFoundError:
            return None

    def booking(self, delivery_id: str) -> Booking | None:
        try:
            return _booking(self._table.get_entity(FLEET, _booking_key(delivery_id)))
        except ResourceNotFoundError:
            return None

    @staticmethod
    def _drone_entity(drone: Drone, delivery_id: str | None, wanted: bool) -> dict[str, Any]:
        return {"PartitionKey": FLEET, "RowKey": drone.drone_id, "capacityKg": float(drone.capacity_kg),
                "deliveryId": delivery_id or "", "wanted": wanted}

    def _replace(self, drone: Drone, delivery_id: str | None, wanted: bool) -> Drone | None:
        try:
            meta = self._table.update_entity(self._drone_entity(drone, delivery_id, wanted), mode=UpdateMode.REPLACE,
                                             etag=drone.version, match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        return Drone(drone.drone_id, drone.capacity_kg, delivery_id, meta["etag"], wanted)

    def try_assign(self, drone: Drone, delivery_id: str, booking: Booking | None) -> Drone | None:
        booked = (*(booking.drone_ids if booking else ()), drone.drone_id)
        booking_entity = {"PartitionKey": FLEET, "RowKey": _booking_key(delivery_id), "droneIds": json.dumps(booked),
                          "closed": False}
        drone_write = ("update", self._drone_entity(drone, delivery_id, drone.wanted),
                       {"mode": UpdateMode.REPLACE, "etag": drone.version,
                        "match_condition": MatchConditions.IfNotModified})
        try:
            # The booking first: when both changed, the delivery's own news (a drone, or closed)
            # is what the caller needs to hear.
            metas = self._table.submit_transaction([_booking_write(booking, booking_entity), drone_write])
        except TableTransactionError as failure:
            if failure.status_code not in _CHANGED:
                raise  # not a lost race: the caller's failure handling classifies it
            if failure.index == 0:
                raise BookingChanged(delivery_id) from None
            return None
        return Drone(drone.drone_id, drone.capacity_kg, delivery_id, metas[1]["etag"], drone.wanted)

    def try_close(self, delivery_id: str, booking: Booking | None) -> bool:
        entity = {"PartitionKey": FLEET, "RowKey": _booking_key(delivery_id),
                  "droneIds": json.dumps(booking.drone_ids if booking else ()), "closed": True}
        try:
            if booking is None:
                self._table.create_entity(entity)
            else:
                self._table.update_entity(entity, mode=UpdateMode.REPLACE, etag=booking.version,
                                          match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

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
        if drone.drone_id >= BOOKING_PREFIX:
            raise ValueError(f"a drone id must sort before {BOOKING_PREFIX!r}: the bookings' RowKeys start with it")
        try:
            self._table.create_entity({"PartitionKey": FLEET, "RowKey": drone.drone_id,
                                       "capacityKg": float(drone.capacity_kg), "deliveryId": drone.delivery_id or ""})
        except ResourceExistsError:
            return False
        return True
