"""The Delivery saga's rules: join two outcomes, in either order, exactly once each.

A delivery waits for one outcome from Package (``PackageReady`` / ``PackageRejected``) and one
from Drone Scheduler (``DroneScheduled`` / ``DroneUnavailable``):

* Ingestion schedules the join timeout before it records the delivery (so even a delivery whose
  request never went out ends); the first successful outcome moves it to ``Scheduling``;
* both OK: ``InTransit``, and a flight timer; when it fires: ``Shipped``, the drone is released
  and ``DeliveryShipped`` is announced;
* a side failed: ``Cancelled`` at once with that side's reason, whether or not the other side
  has answered; every side that did not fail is compensated (``CancelPackage`` /
  ``ReleaseDrone``, also to a side that has not answered yet, so it stops) and
  ``DeliveryFailed`` is announced;
* the join timeout fires first: ``Cancelled`` (``JoinTimeout``) and *both* sides that did not
  fail are compensated — a side that never answered gets the command too, so it stops working
  on a delivery that is over;
* an outcome that arrives after the end (late, e.g. after a join timeout) is recorded, and if
  it acquired something (a package, a drone) that is compensated at once.

Every method returns the effects to carry out; nothing here does I/O or imports ``azure``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from choreography.idempotency import ProcessedMessages
from choreography.messaging import Cause
from choreography.reason_codes import ReasonCode

PACKAGE, DRONE = "package", "drone"
BY_SERVICE = {PACKAGE: "package", DRONE: "drone-scheduler"}


class Status(StrEnum):
    REQUESTED = "Requested"
    SCHEDULING = "Scheduling"
    IN_TRANSIT = "InTransit"
    SHIPPED = "Shipped"
    CANCELLED = "Cancelled"


TERMINAL = frozenset({Status.SHIPPED, Status.CANCELLED})


@dataclass(frozen=True)
class Timing:
    flight_time: timedelta = timedelta(0)


@dataclass(frozen=True)
class HistoryEntry:
    status: str
    at: datetime
    by: str
    reason: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Outcome:
    """One side's answer: ``reference`` is the package id or drone id it concerns."""

    ok: bool
    reference: str | None
    reason: str | None
    at: datetime


# -- effects -------------------------------------------------------------------------------
@dataclass(frozen=True)
class StartFlight:
    drone_id: str | None
    lands_at: datetime


@dataclass(frozen=True)
class CancelPackage:
    package_id: str | None
    reason: str | None


@dataclass(frozen=True)
class ReleaseDrone:
    drone_id: str | None
    reason: str | None


@dataclass(frozen=True)
class Announce:
    event_type: str  # DeliveryShipped | DeliveryFailed
    reason: str | None = None


Effect = StartFlight | CancelPackage | ReleaseDrone | Announce

SHIPPED_EVENT, FAILED_EVENT = "DeliveryShipped", "DeliveryFailed"


@dataclass
class Delivery:
    """A delivery's state: created by Ingestion (``Requested``), advanced by the saga."""

    delivery_id: str
    status: Status = Status.REQUESTED
    reason: str | None = None
    package: Outcome | None = None
    drone: Outcome | None = None
    history: list[HistoryEntry] = field(default_factory=list)
    processed: ProcessedMessages = field(default_factory=ProcessedMessages)
    request_fingerprint: str | None = None
    created_at: datetime | None = None
    # The effects of the last change and the message that caused them, saved with that change
    # (an outbox in the record): sent after the write, and sent again by whoever finds them
    # without knowing they went out (after a crash between the write and the send).
    outbox: list[Effect] = field(default_factory=list)
    outbox_cause: Cause | None = None
    version: str | None = None  # the storage ETag this state was read with; None = never saved

    @classmethod
    def requested(cls, delivery_id: str, fingerprint: str, at: datetime) -> Delivery:
        return cls(delivery_id=delivery_id, request_fingerprint=fingerprint, created_at=at,
                   history=[HistoryEntry(Status.REQUESTED.value, at, "ingestion")])

    def fingerprint(self) -> tuple[object, ...]:
        """What a change can alter; equal before and after means the change was a no-op."""
        return (self.status, self.reason, self.package, self.drone, len(self.history))

    @property
    def never_requested(self) -> bool:
        """No record of a request and no outcome: nothing to end."""
        return self.request_fingerprint is None and self.package is None and self.drone is None

    @property
    def is_over(self) -> bool:
        return self.status in TERMINAL

    @property
    def drone_id(self) -> str | None:
        return self.drone.reference if self.drone and self.drone.ok else None

    @property
    def package_id(self) -> str | None:
        return self.package.reference if self.package else None

    # -- outcomes ---------------------------------------------------------------------------
    def package_ready(self, package_id: str, at: datetime, now: datetime, timing: Timing) -> list[Effect]:
        return self._outcome(PACKAGE, Outcome(True, package_id, None, at), "PackageReady", now, timing)

    def package_rejected(self, package_id: str | None, reason: str, at: datetime, now: datetime,
                         timing: Timing) -> list[Effect]:
        return self._outcome(PACKAGE, Outcome(False, package_id, reason, at), "PackageRejected", now, timing)

    def drone_scheduled(self, drone_id: str, at: datetime, now: datetime, timing: Timing,
                        queued_seconds: float | None = None) -> list[Effect]:
        """``queued_seconds``: how long the delivery waited in the scheduler's line, if it did."""
        return self._outcome(DRONE, Outcome(True, drone_id, None, at), "DroneScheduled", now, timing,
                             f"{drone_id} after {queued_seconds:.1f} s in line" if queued_seconds else None)

    def drone_unavailable(self, reason: str, at: datetime, now: datetime, timing: Timing) -> list[Effect]:
        return self._outcome(DRONE, Outcome(False, None, reason, at), "DroneUnavailable", now, timing)

    def _outcome(self, side: str, outcome: Outcome, name: str, now: datetime, timing: Timing,
                 detail: str | None = None) -> list[Effect]:
        known: Outcome | None = getattr(self, side)
        if known is not None:
            if outcome.ok and (not known.ok or outcome.reference != known.reference):
                # A second, different success (e.g. two scheduling chains): give it straight back.
                self._log(name, outcome.at, BY_SERVICE[side], detail=f"{outcome.reference} (extra)")
                return self._compensate_side(side, outcome.reference, None, now)
            return []  # the same answer again: already joined on it
        setattr(self, side, outcome)
        self._log(name, outcome.at, BY_SERVICE[side], reason=outcome.reason,
                  detail=detail or (outcome.reference if side == DRONE else None))
        if self.is_over:
            # A late answer: the delivery ended without it. Give back what it acquired.
            return self._compensate_side(side, outcome.reference, self.reason, now) if outcome.ok else []
        if not outcome.ok:
            # Nothing the other side says can save the delivery: end it now, with this side's
            # reason, rather than wait for the other (or the join timeout). The other side is
            # told to stop; if it has acquired something meanwhile, that is given back when its
            # answer arrives (a late answer, above).
            return self._cancel(outcome.reason or ReasonCode.MALFORMED_MESSAGE.value, now)
        other: Outcome | None = self.drone if side == PACKAGE else self.package
        if other is None:
            self.status = Status.SCHEDULING
            return []
        return self._join(now, timing)

    def _join(self, now: datetime, timing: Timing) -> list[Effect]:
        assert self.package is not None and self.package.ok and self.drone is not None and self.drone.ok
        self.status = Status.IN_TRANSIT
        self._log(Status.IN_TRANSIT.value, now, "delivery", detail=self.drone.reference)
        if timing.flight_time <= timedelta(0):
            return self.flight_completed(now)  # a flight of no length needs no timer message
        return [StartFlight(self.drone.reference, now + timing.flight_time)]

    # -- timers -----------------------------------------------------------------------------
    def join_timed_out(self, now: datetime) -> list[Effect]:
        if self.status not in (Status.REQUESTED, Status.SCHEDULING):
            return []  # joined (or over) before the timeout fired
        if self.never_requested:
            return []  # Ingestion failed before it recorded the request
        return self._cancel(ReasonCode.JOIN_TIMEOUT.value, now)

    def flight_completed(self, now: datetime) -> list[Effect]:
        if self.status is not Status.IN_TRANSIT:
            return []
        self.status = Status.SHIPPED
        self._log(Status.SHIPPED.value, now, "delivery")
        effects: list[Effect] = self._compensate_side(DRONE, self.drone_id, None, now)
        return [*effects, Announce(SHIPPED_EVENT)]

    def abort(self, reason: str, now: datetime) -> list[Effect]:
        """A message for this delivery can never be processed: end the delivery now (one nobody
        ever requested is left alone: a hostile message must not create a delivery)."""
        if self.is_over or self.never_requested:
            return []
        return self._cancel(reason, now)

    # -- compensation acknowledgements ------------------------------------------------------
    def package_cancelled(self, at: datetime) -> list[Effect]:
        self._log("PackageCancelled", at, "package", detail=self.package_id)
        return []

    def drone_released(self, drone_ids: list[str], at: datetime) -> list[Effect]:
        self._log("DroneReleased", at, "drone-scheduler", detail=",".join(drone_ids) or None)
        return []

    # -- helpers ----------------------------------------------------------------------------
    def _cancel(self, reason: str, now: datetime) -> list[Effect]:
        self.status = Status.CANCELLED
        self.reason = reason
        self._log(Status.CANCELLED.value, now, "delivery", reason=reason)
        effects: list[Effect] = []
        # Compensate every side that did not itself fail, including one that never answered.
        if self.package is None or self.package.ok:
            effects += self._compensate_side(PACKAGE, self.package_id, reason, now)
        if self.drone is None or self.drone.ok:
            effects += self._compensate_side(DRONE, self.drone_id, reason, now)
        return [*effects, Announce(FAILED_EVENT, reason)]

    def _compensate_side(self, side: str, reference: str | None, reason: str | None,
                         now: datetime) -> list[Effect]:
        if side == PACKAGE:
            self._log("CancelPackage", now, "delivery", reason=reason, detail=reference)
            return [CancelPackage(reference, reason)]
        self._log("ReleaseDrone", now, "delivery", reason=reason, detail=reference)
        return [ReleaseDrone(reference, reason)]

    def _log(self, status: str, at: datetime, by: str, reason: str | None = None,
             detail: str | None = None) -> None:
        self.history.append(HistoryEntry(status, at, by, reason, detail))
