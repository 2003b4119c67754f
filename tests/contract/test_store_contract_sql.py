"""`SQLAlchemyStore` against the store contract on SQLite, PostgreSQL and MariaDB.

The contract runs unchanged: its entities are rows of `ContractOrder`, a mapped
twin of `models.order.Order` with a string key (the contract's keys are arbitrary
strings of up to 36 characters, so `models.orm.OrderRow`'s integer key will not do).
Tables are created once per module and backend and emptied after every test.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import Engine, Numeric, String, delete
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from statekit import Machine, ManualClock, Store
from statekit.store.sqlalchemy import SQLAlchemyStore, StateMixin, statekit_tables
from tests.contract.store_contract import NewEntity, RemoveEntity, StoreContract
from tests.sql_support import engine_for


class ContractBase(DeclarativeBase):
    """Declarative base of this module's own tables, apart from `models.orm.Base`."""


class ContractOrder(StateMixin, ContractBase):
    """An order row with the attributes of `models.order.Order` and a string key."""

    __tablename__ = "statekit_contract_orders"

    # Keys are exact: on MariaDB the column needs a binary collation for that.
    id: Mapped[str] = mapped_column(
        String(36).with_variant(
            mysql.VARCHAR(36, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
        ),
        primary_key=True,
    )
    total: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    sku: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[int]
    in_stock: Mapped[int]
    card_authorized: Mapped[bool]
    credit_approved: Mapped[bool]
    paid_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))


statekit_tables(ContractBase.metadata)  # the history table lives beside the orders

# Microseconds, so a column that drops fractions of a second (MariaDB's plain
# DATETIME) fails the contract's exact timestamp comparisons.
CLOCK_START = datetime(2026, 3, 29, 0, 59, 58, 123456, tzinfo=UTC)


def new_contract_order(key: str) -> ContractOrder:
    """A new, unstarted `ContractOrder` with the defaults of `tests.support.new_order`."""
    return ContractOrder(
        id=key,
        total=Decimal(10),
        sku="SKU-1",
        quantity=1,
        in_stock=10,
        card_authorized=True,
        credit_approved=False,
        paid_amount=Decimal(0),
    )


@pytest.fixture(scope="module")
def contract_engine(database_url: str) -> Iterator[Engine]:
    """An engine on this module's fresh database, with the tables created once."""
    engine = engine_for(database_url)
    ContractBase.metadata.create_all(engine)
    yield engine
    engine.dispose()


class TestSQLAlchemyStore(StoreContract):
    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock(CLOCK_START)

    @pytest.fixture
    def new_entity(self) -> NewEntity:
        return new_contract_order

    @pytest.fixture
    def store(self, contract_engine: Engine, machine: Machine) -> Iterator[Store]:
        store = SQLAlchemyStore(
            contract_engine, {machine: ContractOrder}, metadata=ContractBase.metadata
        )
        yield store
        with contract_engine.begin() as conn:
            for table in reversed(ContractBase.metadata.sorted_tables):
                conn.execute(table.delete())

    @pytest.fixture
    def remove_entity(self, contract_engine: Engine) -> RemoveEntity:
        """The application deletes its row with SQL of its own."""

        def remove(key: str) -> None:
            with contract_engine.begin() as conn:
                conn.execute(delete(ContractOrder).where(ContractOrder.id == key))

        return remove
