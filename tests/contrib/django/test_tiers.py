"""`DjangoStore` against the reads, outbox and sweeper contracts on SQLite,
PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from models.order import OrderWorkflow
from statekit.contrib.django.store import DjangoStore
from tests.contract.reads_contract import ReadsContract
from tests.contrib.django.conftest import empty_tables
from tests.contrib.django.testapp.models import Order


class TestDjangoReads(ReadsContract):
    @pytest.fixture
    def store(self, alias: str) -> Iterator[DjangoStore]:
        yield DjangoStore({OrderWorkflow.machine: Order}, using=alias)
        empty_tables(alias)

    @pytest.fixture
    def new_order(self) -> Callable[[int], Any]:
        return lambda n: Order(id=str(n), total=Decimal(10 * n))
