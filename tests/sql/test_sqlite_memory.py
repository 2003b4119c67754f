"""An in-memory SQLite database (`create_engine("sqlite://")`, as many test suites use)
gives each thread one connection, so statekit's unit and any read it makes share it.
A keyed fire must work there: it used to fail with "cannot start a transaction within
a transaction" whenever it carried an idempotency key."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from models.order import OrderWorkflow
from models.orm import ENTITIES, Base, OrderRow
from statekit import IdempotencyConflictError, Runner
from statekit.store.sqlalchemy import SQLAlchemyStore, statekit_tables


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("driver_path", [True, False], ids=["driver", "connection"])
def test_idempotent_fires_by_key_on_an_in_memory_database(
    engine: Engine, driver_path: bool
) -> None:
    store = SQLAlchemyStore(engine, ENTITIES, driver_path=driver_path)
    store.create_tables()
    orders = Runner(OrderWorkflow.machine, store)
    orders.start(OrderRow(id=1, total=Decimal(10)))
    first = orders.fire_by_key(1, "reserve", idempotency_key="msg-1")
    again = orders.fire_by_key(1, "reserve", idempotency_key="msg-1")
    assert (first.seq, first.replayed, again.seq, again.replayed) == (1, False, 1, True)
    with pytest.raises(IdempotencyConflictError) as caught:
        orders.fire_by_key(1, "cancel", idempotency_key="msg-1")
    assert caught.value.state == "stock_reserved"
    assert orders.fire_by_key(1, "cancel", idempotency_key="msg-2").seq == 2
    assert [r.event for r in store.history("order", "1")] == ["reserve", "cancel"]


def test_idempotent_fires_in_a_session_on_an_in_memory_database(engine: Engine) -> None:
    store = SQLAlchemyStore(engine, ENTITIES)
    store.create_tables()
    orders = Runner(OrderWorkflow.machine, store)
    with Session(engine) as session, session.begin():
        order = OrderRow(id=1, total=Decimal(10))
        session.add(order)
        orders.start(order)
        assert orders.fire(order, "reserve", idempotency_key="msg-1").seq == 1
        assert orders.fire(order, "reserve", idempotency_key="msg-1").replayed
    with store.transaction("order", "1") as loaded:
        assert orders.fire(loaded, "cancel", idempotency_key="msg-2").seq == 2
    assert [r.event for r in store.history("order", "1")] == ["reserve", "cancel"]


def test_a_key_used_earlier_in_the_same_transaction_replays(database_url: str) -> None:
    """Within one Session transaction, a second delivery of a message sees the first
    one's uncommitted transition and is answered with it, on every database."""
    from tests.sql_support import engine_for

    engine = engine_for(database_url)
    try:
        Base.metadata.create_all(engine)
        store = SQLAlchemyStore(engine, ENTITIES)
        store.create_tables()
        orders = Runner(OrderWorkflow.machine, store)
        with Session(engine, expire_on_commit=False) as session, session.begin():
            order = OrderRow(id=77, total=Decimal(10))
            session.add(order)
            orders.start(order)
            first = orders.fire(order, "reserve", idempotency_key="once")
            again = orders.fire(order, "reserve", idempotency_key="once")
        assert (first.replayed, again.replayed, again.seq) == (False, True, 1)
        assert [r.seq for r in store.history("order", "77")] == [1]
    finally:
        with engine.begin() as conn:
            for table in (*statekit_tables().all, *reversed(Base.metadata.sorted_tables)):
                conn.execute(table.delete())
        engine.dispose()
