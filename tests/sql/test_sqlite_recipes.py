"""Engines set up the way SQLAlchemy's documentation shows for SQLite work with the store.

SQLAlchemy's pysqlite notes show how to get real transactions from the stdlib driver: a
"connect" listener that turns the driver's own transaction handling off and a "begin"
listener that emits BEGIN. An application that followed them before building the store
must not have its first write fail with "cannot start a transaction within a transaction".
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session

from models.order import OrderWorkflow
from models.orm import ENTITIES, Base, OrderRow
from statekit import Runner
from statekit.store.sqlalchemy import SQLAlchemyStore


@pytest.fixture
def recipe_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'recipe.db'}")

    @event.listens_for(engine, "connect")
    def do_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver sends no BEGIN of its own

    @event.listens_for(engine, "begin")
    def do_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("driver_path", [True, False], ids=["driver", "connection"])
def test_the_documented_pysqlite_recipe_works_on_every_write_path(
    recipe_engine: Engine, driver_path: bool
) -> None:
    store = SQLAlchemyStore(recipe_engine, ENTITIES, driver_path=driver_path)
    store.create_tables()
    orders = Runner(OrderWorkflow.machine, store)
    with Session(recipe_engine, expire_on_commit=False) as session, session.begin():
        order = OrderRow(id=1, total=Decimal(10))
        session.add(order)
        orders.start(order)  # in the application's Session
    orders.start(OrderRow(id=2, total=Decimal(20)))  # in statekit's own transaction
    orders.fire_by_key(1, "reserve", idempotency_key="k-1")
    assert orders.fire_by_key(1, "reserve", idempotency_key="k-1").replayed
    with store.transaction("order", "2") as loaded:
        orders.fire(loaded, "reserve")
    with Session(recipe_engine, expire_on_commit=False) as session, session.begin():
        row = session.get(OrderRow, 1)
        assert row is not None
        orders.fire(row, "cancel")
    assert [r.event for r in store.history("order", "1")] == ["reserve", "cancel"]
    assert store.load("order", "2").state == "stock_reserved"


def test_a_watched_engine_says_once_why_the_driver_path_is_off(
    recipe_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLAlchemyStore(recipe_engine, ENTITIES)
    store.create_tables()
    orders = Runner(OrderWorkflow.machine, store)
    orders.start(OrderRow(id=1, total=Decimal(10)))
    with caplog.at_level("INFO", logger="statekit"):
        orders.fire_by_key(1, "reserve")
        orders.fire_by_key(1, "cancel")
    told = [r.getMessage() for r in caplog.records if "write through SQLAlchemy" in r.getMessage()]
    assert len(told) == 1
    assert "a 'begin' listener" in told[0]
    assert "do_begin" in told[0]
