"""`DjangoStore` against the store contract on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from statekit import Machine, ManualClock, Store
from statekit.contrib.django.store import DjangoStore
from tests.contract.store_contract import NewEntity, RemoveEntity, StoreContract
from tests.contrib.django.conftest import empty_tables
from tests.contrib.django.testapp.models import Order

# Microseconds, so a column that drops fractions of a second fails the contract.
CLOCK_START = datetime(2026, 3, 29, 0, 59, 58, 123456, tzinfo=UTC)


class TestDjangoStore(StoreContract):
    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock(CLOCK_START)

    @pytest.fixture
    def new_entity(self) -> NewEntity:
        return lambda key: Order(id=key)

    @pytest.fixture
    def store(self, alias: str, machine: Machine) -> Iterator[Store]:
        yield DjangoStore({machine: Order}, using=alias)
        empty_tables(alias)

    @pytest.fixture
    def remove_entity(self, alias: str) -> RemoveEntity:
        """The application deletes its row with the ORM, behind statekit's back."""
        return lambda key: Order.objects.using(alias).filter(pk=key).delete() and None
