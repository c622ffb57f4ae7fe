"""Delivery's storage port. The delivery record is owned by Delivery; Ingestion creates it."""

from __future__ import annotations

from typing import Protocol

from .domain import Delivery


class DeliveryExists(Exception):
    """``add`` found a delivery with that id already stored."""


class DeliveryRepository(Protocol):
    def get(self, delivery_id: str) -> Delivery | None:
        """The stored delivery with its ``version`` set, or None."""
        ...

    def add(self, delivery: Delivery) -> None:
        """Store a new delivery; DeliveryExists if the id is taken. Sets ``version``."""
        ...

    def save(self, delivery: Delivery) -> None:
        """Replace the stored delivery if it is still at ``delivery.version`` (add it when that is
        None); ConcurrencyConflict otherwise. Sets the new ``version``."""
        ...
