"""An in-memory SQLite database (`create_engine("sqlite://")`, as many test suites use)
gives each thread one connection, so statekit's unit and any read it makes share it.
A keyed fire must work there: it used to fail with "cannot start a transaction within
a transaction" whenever it carried an idempotency key."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import Engine, create_engine

from models.order import OrderWorkflow
from models.orm import ENTITIES, Base, OrderRow
from statekit import IdempotencyConflictError, Runner
from statekit.store.sqlalchemy import SQLAlchemyStore


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
