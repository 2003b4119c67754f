"""SQLite done right: WAL, a busy timeout, and write transactions that isolate."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session

from models.order import OrderWorkflow
from models.orm import ENTITIES, Base, OrderRow
from statekit import ConcurrentTransitionError, Runner, StoreError
from statekit.store.sqlalchemy import SQLAlchemyStore, configure_sqlite, sqlite_engine


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


def _shop(engine: Engine) -> tuple[SQLAlchemyStore, Runner]:
    Base.metadata.create_all(engine)
    store = SQLAlchemyStore(engine, ENTITIES)
    store.create_tables()
    orders = Runner(OrderWorkflow.machine, store)
    orders.start(OrderRow(id=1, total=Decimal(10)))
    return store, orders


def test_an_engine_begun_immediate_holds_the_write_lock_from_the_first_read(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "shop.db")
    engine = sqlite_engine(path, begin="IMMEDIATE")
    store, orders = _shop(engine)
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
    with pytest.raises(ValueError, match="unknown SQLite BEGIN"):
        sqlite_engine(path, begin="LATER")


def test_the_apps_sessions_keep_deferred_transactions(tmp_path: Path) -> None:
    path = str(tmp_path / "shop.db")
    engine = create_engine(f"sqlite:///{path}")
    configure_sqlite(engine, busy_timeout_ms=200)  # a refused lock shows in 0.2 s, not 30
    store, orders = _shop(engine)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with Session(engine) as slow, Session(engine) as other:  # one thread, two Sessions
        assert slow.get(OrderRow, 1) is not None  # a slow read-only request, still open
        assert other.get(OrderRow, 1) is not None  # is not blocked by it
        assert other.scalar(text("SELECT count(*) FROM statekit_transitions")) == 0
    assert "BEGIN IMMEDIATE" not in statements
    assert statements.count("BEGIN") == 2
    # statekit's own units still take the write lock before their first read
    statements.clear()
    with store.transaction("order", "1") as order:
        orders.fire(order, "reserve")
    assert statements[0] == "BEGIN IMMEDIATE"
    statements.clear()  # and an app's Session can ask for the same
    with Session(engine.execution_options(statekit_begin="IMMEDIATE")) as locking:
        assert locking.get(OrderRow, 1) is not None
    assert statements[0] == "BEGIN IMMEDIATE"
    engine.dispose()


def test_a_write_that_lost_its_read_in_an_apps_session_is_a_lost_race(tmp_path: Path) -> None:
    path = str(tmp_path / "shop.db")
    engine = sqlite_engine(path)
    store, orders = _shop(engine)
    other = Runner(OrderWorkflow.machine, SQLAlchemyStore(sqlite_engine(path), ENTITIES))
    with Session(engine) as session, session.begin():
        order = session.get(OrderRow, 1)  # a deferred transaction: its read is a snapshot
        assert order is not None
        assert other.fire_by_key(1, "cancel").seq == 1  # another writer slips in
        with pytest.raises(ConcurrentTransitionError):
            orders.fire(order, "reserve")  # the stale read cannot be written over
        session.rollback()
    assert [r.event for r in store.history("order", "1")] == ["cancel"]
    assert store.load("order", "1").state == "cancelled"
    engine.dispose()
    other.store.engine.dispose()  # type: ignore[attr-defined]


def test_connections_pooled_before_the_store_get_its_settings(tmp_path: Path) -> None:
    # The README's order: the app's engine creates its tables, then the store is built.
    engine = create_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    Base.metadata.create_all(engine)  # leaves a connection in the pool, in legacy mode
    store = SQLAlchemyStore(engine, ENTITIES)
    store.create_tables()
    orders = Runner(OrderWorkflow.machine, store)
    orders.start(OrderRow(id=1, total=Decimal(10)))
    assert orders.fire_by_key(1, "reserve", idempotency_key="first").seq == 1
    assert orders.fire_by_key(1, "reserve", idempotency_key="first").replayed
    with engine.connect() as first, engine.connect() as second:  # the old one and a new one
        for conn in (first, second):
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30_000
            assert conn.connection.driver_connection.isolation_level is None  # type: ignore[union-attr]
    engine.dispose()
