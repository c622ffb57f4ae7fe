"""The in-memory fakes pass the same port tests as the Table Storage adapters."""

from __future__ import annotations

import pytest

from .fakes import InMemoryDeliveryRepository, InMemoryDroneFleet, InMemoryNotificationStore, InMemoryPackageRepository
from .ports_contract import (
    DeliveryRepositoryContract,
    DroneFleetContract,
    NotificationStoreContract,
    PackageRepositoryContract,
)


class TestInMemoryDeliveryRepository(DeliveryRepositoryContract):
    @pytest.fixture
    def deliveries(self):
        return InMemoryDeliveryRepository()


class TestInMemoryPackageRepository(PackageRepositoryContract):
    @pytest.fixture
    def packages(self):
        return InMemoryPackageRepository()


class TestInMemoryDroneFleet(DroneFleetContract):
    @pytest.fixture
    def fleet(self):
        return InMemoryDroneFleet()


class TestInMemoryNotificationStore(NotificationStoreContract):
    @pytest.fixture
    def notifications(self):
        return InMemoryNotificationStore()
