"""The Table Storage adapters on Azurite pass the same port tests as the in-memory fakes."""

from __future__ import annotations

import pytest

from delivery.adapters import TableDeliveryRepository
from drone_scheduler.adapters import TableDroneFleet
from notifications.adapters import TableNotificationStore
from package.adapters import TablePackageRepository
from tests.unit.delivery_app.ports_contract import (
    DeliveryRepositoryContract,
    DroneFleetContract,
    NotificationStoreContract,
    PackageRepositoryContract,
)


class TestTableDeliveryRepository(DeliveryRepositoryContract):
    @pytest.fixture
    def deliveries(self, fresh_table):
        return TableDeliveryRepository(fresh_table())


class TestTablePackageRepository(PackageRepositoryContract):
    @pytest.fixture
    def packages(self, fresh_table):
        return TablePackageRepository(fresh_table())


class TestTableDroneFleet(DroneFleetContract):
    @pytest.fixture
    def fleet(self, fresh_table):
        return TableDroneFleet(fresh_table())


class TestTableNotificationStore(NotificationStoreContract):
    @pytest.fixture
    def notifications(self, fresh_table):
        return TableNotificationStore(fresh_table())
