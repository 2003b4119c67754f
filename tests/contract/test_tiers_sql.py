"""`SQLAlchemyStore` against the outbox, reads and sweeper contracts on SQLite,
PostgreSQL and MariaDB.

The contracts run unchanged. Jobs are rows of `ContractJob`, a mapped twin of
`tests.contract.jobs.Job`; orders are `models.orm.OrderRow`. Tables are created
once per module and backend and emptied after every test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, String
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from models.order import OrderWorkflow
from models.orm import Base, OrderRow
from statekit.store.sqlalchemy import SQLAlchemyStore, StateMixin, statekit_tables
from tests.contract.drain_contract import ConcurrentDrainContract
from tests.contract.jobs import JobWorkflow
from tests.contract.reads_contract import ReadsContract
from tests.contract.retention_contract import RetentionContract
from tests.contract.sweeper_contract import SweeperContract
from tests.sql_support import engine_for


class JobContractBase(DeclarativeBase):
    """Declarative base of this module's job table, apart from `models.orm.Base`."""


class ContractJob(StateMixin, JobContractBase):
    """A job row with the attributes of `tests.contract.jobs.Job`."""

    __tablename__ = "statekit_contract_jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    frozen: Mapped[bool] = mapped_column(default=False)
    undone: Mapped[str | None] = mapped_column(String(16))


statekit_tables(JobContractBase.metadata)


def new_contract_job(key: str, *, frozen: bool = False) -> ContractJob:
    return ContractJob(id=key, frozen=frozen, undone=None)


@pytest.fixture(scope="module")
def tier_engine(database_url: str) -> Iterator[Engine]:
    """An engine on this module's fresh database, with every table created once."""
    engine = engine_for(database_url)
    JobContractBase.metadata.create_all(engine)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def empty(tier_engine: Engine) -> Iterator[Engine]:
    """The engine; every table is emptied after the test."""
    yield tier_engine
    with tier_engine.begin() as conn:
        for metadata in (JobContractBase.metadata, Base.metadata):
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())


class SQLJobs:
    """The job fixtures both job contracts take: the store and its rows."""

    @pytest.fixture
    def store(self, empty: Engine) -> SQLAlchemyStore:
        return SQLAlchemyStore(
            empty, {JobWorkflow.machine: ContractJob}, metadata=JobContractBase.metadata
        )

    @pytest.fixture
    def new_job(self) -> Callable[..., Any]:
        return new_contract_job


class TestSQLAlchemyOutbox(SQLJobs, RetentionContract):
    pass


class TestSQLAlchemyReads(ReadsContract):
    @pytest.fixture
    def store(self, empty: Engine) -> SQLAlchemyStore:
        return SQLAlchemyStore(empty, {OrderWorkflow.machine: OrderRow})

    @pytest.fixture
    def new_order(self) -> Callable[[int], object]:
        return lambda n: OrderRow(id=n, total=Decimal(10 * n))


class SQLSweeperJobs(SQLJobs):
    """The job fixtures of the sweeper contracts: the store, its rows, a fresh read."""

    @pytest.fixture
    def read_job(self, empty: Engine) -> Callable[[str], Any]:
        """The job row as committed now, read in a Session of its own."""

        def read(key: str) -> Any:
            with Session(empty, expire_on_commit=False) as session:
                return session.get(ContractJob, key)

        return read


class TestSQLAlchemySweeper(SQLSweeperJobs, SweeperContract):
    pass


class TestSQLAlchemyConcurrentDrain(SQLSweeperJobs, ConcurrentDrainContract):
    pass
