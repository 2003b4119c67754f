"""SQLite done right: WAL, a busy timeout, and write transactions that isolate."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from models.order import OrderWorkflow
from models.orm import ENTITIES, Base, OrderRow
from statekit import Runner, StoreError
from statekit.store.sqlalchemy import SQLAlchemyStore, sqlite_engine


def test_connections_use_wal_a_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    engine = sqlite_engine(str(tmp_path / "app.db"), busy_timeout_ms=1234)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 1234
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    engine.dispose()
    with pytest.raises(ValueError, match="unknown SQLite synchronous"):
        sqlite_engine(str(tmp_path / "x.db"), synchronous="SOMETIMES")


def test_a_unit_that_reads_then_writes_holds_the_write_lock_from_its_first_read(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "shop.db")
    engine = sqlite_engine(path)
    Base.metadata.create_all(engine)
    store = SQLAlchemyStore(engine, ENTITIES)
    store.create_tables()
    orders = Runner(OrderWorkflow.machine, store)
    orders.start(OrderRow(id=1, total=Decimal(10)))
    impatient = sqlite_engine(path, busy_timeout_ms=100)  # another process, say
    other = Runner(OrderWorkflow.machine, SQLAlchemyStore(impatient, ENTITIES))

    with Session(engine) as session, session.begin():
        order = session.get(OrderRow, 1)  # a read: with the stdlib's legacy mode, no lock
        assert order is not None
        with pytest.raises(StoreError, match="database is locked"):
            other.fire_by_key(1, "cancel")  # a writer cannot slip in between
        assert other.store.load("order", "1").state == "pending"  # readers are not blocked
        orders.fire(order, "reserve")  # so this read-then-write cannot lose its read
    assert store.load("order", "1").state == "stock_reserved"
    assert other.fire_by_key(1, "cancel").seq == 2  # once committed, the other goes ahead
    engine.dispose()
    impatient.dispose()
