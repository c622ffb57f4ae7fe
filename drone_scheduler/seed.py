"""Seed the drone fleet in Table ``drones``, idempotently: ``python -m drone_scheduler.seed``.

Reads the storage account from ``AzureWebJobsStorage`` (or ``--connection``). Drones that
already exist are left as they are (an assigned drone stays assigned), so running it twice,
or against a running stack, is safe. ``--fleet-size N`` seeds N drones whose capacities repeat
5/10/20/40/60 kg. ``--reset`` frees every drone and forgets the deliveries' bookings: only for an
idle stack.
"""

from __future__ import annotations

import argparse
import os
import sys

from choreography.connections import storage_tables
from choreography.entities import DRONES_TABLE
from choreography.settings import STORAGE_CONNECTION

from .adapters import BOOKING_PREFIX, FLEET, TableDroneFleet
from .domain import Drone, default_fleet
from .ports import DroneFleet


def seed(fleet: DroneFleet, drones: list[Drone]) -> list[Drone]:
    """Add the drones that are missing; returns the ones added."""
    return [drone for drone in drones if fleet.add(drone)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drone_scheduler.seed", description=__doc__.splitlines()[0])
    parser.add_argument("--connection", default=os.environ.get(STORAGE_CONNECTION, ""),
                        help=f"storage connection string (default: ${STORAGE_CONNECTION} in either form, or Azurite)")
    parser.add_argument("--fleet-size", type=int, default=5)
    parser.add_argument("--table", default=DRONES_TABLE)
    parser.add_argument("--reset", action="store_true", help="free every drone first (idle stack only)")
    args = parser.parse_args(argv)
    if args.fleet_size < 1:
        parser.error("--fleet-size must be at least 1")
    with storage_tables(args.connection) as service:
        table = service.create_table_if_not_exists(args.table)
        fleet = TableDroneFleet(table)
        if args.reset:
            for drone in fleet.drones():
                if not drone.is_free:
                    fleet.try_release(drone)
            bookings = table.query_entities("PartitionKey eq @pk and RowKey ge @bookings",
                                            parameters={"pk": FLEET, "bookings": BOOKING_PREFIX})
            for entity in bookings:
                table.delete_entity(FLEET, entity["RowKey"])
        added = seed(fleet, default_fleet(args.fleet_size))
        drones = fleet.drones()
    print(f"drone fleet: {len(drones)} drones ({len(added)} added): "
          + ", ".join(f"{d.drone_id} {d.capacity_kg:g} kg{'' if d.is_free else ' (busy)'}" for d in drones))
    return 0


if __name__ == "__main__":
    sys.exit(main())
