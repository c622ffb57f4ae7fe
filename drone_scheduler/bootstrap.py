"""Wiring: the Drone Scheduler on the process's shared adapters."""

from __future__ import annotations

from choreography.entities import DRONES_TABLE
from choreography.runtime import Runtime

from .adapters import TableDroneFleet
from .service import DroneSchedulerService


def build(rt: Runtime) -> DroneSchedulerService:
    return DroneSchedulerService(TableDroneFleet(rt.table(DRONES_TABLE)), rt.publisher, rt.clock,
                                 rt.settings.drone_retry_base, rt.settings.drone_retry_max)
