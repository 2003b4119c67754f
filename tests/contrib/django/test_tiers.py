"""`DjangoStore` against the reads, outbox and sweeper contracts on SQLite,
PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from models.order import OrderWorkflow
from statekit.contrib.django.store import DjangoStore
from tests.contract.jobs import JobWorkflow
from tests.contract.outbox_contract import OutboxContract
from tests.contract.reads_contract import ReadsContract
from tests.contract.sweeper_contract import SweeperContract
from tests.contrib.django.conftest import empty_tables
from tests.contrib.django.testapp.models import Job, Order


class TestDjangoReads(ReadsContract):
    @pytest.fixture
    def store(self, alias: str) -> Iterator[DjangoStore]:
        yield DjangoStore({OrderWorkflow.machine: Order}, using=alias)
        empty_tables(alias)

    @pytest.fixture
    def new_order(self) -> Callable[[int], Any]:
        return lambda n: Order(id=str(n), total=Decimal(10 * n))


class DjangoJobs:
    """The job fixtures both job contracts take: the store and its rows."""

    @pytest.fixture
    def store(self, alias: str) -> Iterator[DjangoStore]:
        yield DjangoStore({JobWorkflow.machine: Job}, using=alias)
        empty_tables(alias)

    @pytest.fixture
    def new_job(self) -> Callable[..., Any]:
        return lambda key, frozen=False: Job(id=key, frozen=frozen)


class TestDjangoOutbox(DjangoJobs, OutboxContract):
    pass


class TestDjangoSweeper(DjangoJobs, SweeperContract):
    @pytest.fixture
    def read_job(self, alias: str) -> Callable[[str], Any]:
        """The job row as committed now, read with a fresh query."""
        return lambda key: Job.objects.using(alias).get(pk=key)
