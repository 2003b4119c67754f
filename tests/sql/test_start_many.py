"""`Runner.start_many`: many new instances at once, the same rows `start` writes,
all of them or none, on MemoryStore and SQLAlchemyStore on each database."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from models.order import OrderWorkflow
from models.orm import ENTITIES, Base, OrderRow
from statekit import ConcurrentTransitionError, ManualClock, MemoryStore, Runner
from statekit.store.sqlalchemy import SQLAlchemyStore, statekit_tables
from tests.sql_support import engine_for
from tests.support import new_order

STATE_COLUMNS = ("state", "state_version", "state_entered_at", "state_deadline_at", "stuck_at",
                 "stuck_reason", "state_definition_version")  # fmt: skip


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = engine_for(database_url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    statekit_tables().metadata.create_all(engine)
    yield engine
    with engine.begin() as conn:
        for table in (*statekit_tables().all, *reversed(Base.metadata.sorted_tables)):
            conn.execute(table.delete())
    engine.dispose()


def _rows(engine: Engine) -> dict[int, tuple[Any, ...]]:
    columns = [getattr(OrderRow, name) for name in STATE_COLUMNS]
    with engine.connect() as conn:
        return {row[0]: tuple(row[1:]) for row in conn.execute(select(OrderRow.id, *columns))}


def test_start_many_writes_the_rows_start_writes(engine: Engine) -> None:
    store = SQLAlchemyStore(engine, ENTITIES)
    runner = Runner(OrderWorkflow.machine, store, clock=ManualClock())
    runner.start(OrderRow(id=1, total=Decimal(10)))
    snapshots = runner.start_many([OrderRow(id=n, total=Decimal(10)) for n in range(2, 302)])
    assert [s.key for s in snapshots] == [str(n) for n in range(2, 302)]
    rows = _rows(engine)
    assert len(rows) == 301
    assert {rows[n] for n in rows} == {rows[1]}  # the same state columns as `start`
    assert runner.fire_by_key(300, "reserve").seq == 1


def test_start_many_is_all_or_nothing(engine: Engine) -> None:
    store = SQLAlchemyStore(engine, ENTITIES)
    runner = Runner(OrderWorkflow.machine, store, clock=ManualClock())
    runner.start(OrderRow(id=7, total=Decimal(10)))
    batch = [OrderRow(id=n, total=Decimal(10)) for n in (5, 6, 7, 8)]
    with pytest.raises(ConcurrentTransitionError) as caught:
        runner.start_many(batch)
    assert caught.value.key == "7"
    assert sorted(_rows(engine)) == [7]  # none of the others was stored
    assert all(order.state is None for order in batch)  # and the objects are as they were


def test_start_many_in_the_callers_session_commits_with_it(engine: Engine) -> None:
    store = SQLAlchemyStore(engine, ENTITIES)
    runner = Runner(OrderWorkflow.machine, store, clock=ManualClock())
    with Session(engine, expire_on_commit=False) as session:
        batch = [OrderRow(id=n, total=Decimal(10)) for n in range(1, 4)]
        session.add_all(batch)
        runner.start_many(batch)
        session.rollback()
    assert _rows(engine) == {}


def test_start_many_on_the_reference_store() -> None:
    store = MemoryStore()
    runner = Runner(OrderWorkflow.machine, store, clock=ManualClock())
    runner.start(new_order("o3"))
    batch = [new_order(key) for key in ("o1", "o2", "o3")]
    with pytest.raises(ConcurrentTransitionError):
        runner.start_many(batch)
    with pytest.raises(Exception, match="not found"):
        store.load("order", "o1")
    assert [o.state for o in batch] == [None, None, None]
    started = runner.start_many(batch[:2])
    assert [s.state for s in started] == ["pending", "pending"]
