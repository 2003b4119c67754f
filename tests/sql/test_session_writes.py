"""A fire on an entity in the caller's Session (or in statekit's own Session unit) sets
the entity's state attributes straight in its instance dict, as the light unit does:
`apply` writes the same values to the row in the Session's transaction, so the
Session has nothing to flush for them. These tests pin what that must keep, on
SQLite, PostgreSQL and MariaDB: the entity reads the new state, it is not dirty, the
caller's own changes are written (on the driver path in the same UPDATE, unless a
flush or update listener must see them; otherwise by the flush), a lost race puts
the loser back without touching the winner, expired attributes are loaded before
they are written, and a class that listens to its state attributes still hears the
writes.

Where the driver path may run (SQLite files, PostgreSQL), the UPDATE and the INSERT
go on the Session's DBAPI connection, in its transaction; an engine someone watches
(an execution listener, echo) or a connection of another engine or with execution
options of its own keeps SQLAlchemy's execution."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, event, inspect, select, text, update
from sqlalchemy.orm import Session

from models.order import OrderWorkflow
from models.orm import ENTITIES, Base, OrderRow, TicketRow
from statekit import ConcurrentTransitionError, Runner
from statekit.errors import StoreError
from statekit.store.sqlalchemy import SQLAlchemyStore
from statekit.store.sqlalchemy.driver import supports_driver_path
from statekit.store.sqlalchemy.units import SessionUnit
from tests.sql_support import example_engine, kill_other_connections

MACHINE = OrderWorkflow.machine


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    with example_engine(database_url) as engine:
        yield engine


@pytest.fixture
def store(engine: Engine) -> Iterator[SQLAlchemyStore]:
    store = SQLAlchemyStore(engine, ENTITIES)
    yield store
    with engine.begin() as conn:
        for table in (store.tables.transitions, *reversed(Base.metadata.sorted_tables)):
            conn.execute(table.delete())


@pytest.fixture
def orders(store: SQLAlchemyStore, engine: Engine) -> Runner:
    runner = Runner(MACHINE, store)
    with Session(engine) as session, session.begin():
        for key in (1, 2):
            order = OrderRow(id=key, total=Decimal(10))
            session.add(order)
            runner.start(order)
    return runner


def _row(engine: Engine, key: int) -> tuple[str, int, str | None]:
    with engine.connect() as conn:
        row = conn.execute(
            select(OrderRow.state, OrderRow.state_version, OrderRow.sku).where(OrderRow.id == key)
        ).one()
    return row[0], row[1], row[2]


def test_the_callers_session_unit_writes_the_state_into_the_instance_dict(
    store: SQLAlchemyStore, orders: Runner, engine: Engine
) -> None:
    with Session(engine) as session, session.begin():
        order = session.get(OrderRow, 1)
        assert order is not None
        unit = store.unit_of("order", "1", order)
        assert isinstance(unit, SessionUnit)
        assert unit.state_writer() is store.binding("order").write_state is not None
        record = orders.fire(order, "cancel")
        assert (order.state, order.state_version, order.state_entered_at) == (
            "cancelled",
            1,
            record.at,
        )
        assert not inspect(order).modified
        assert order not in session.dirty
        assert inspect(order).attrs.state.history.unchanged == ["cancelled"]
    assert _row(engine, 1)[:2] == ("cancelled", 1)


def test_the_callers_changes_of_the_same_entity_go_with_the_transition_or_flush(
    orders: Runner, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """On the driver path the compare-and-set UPDATE also sets the caller's changed
    columns (one UPDATE of the row, not two); elsewhere the Session flushes them."""
    driver = supports_driver_path(engine)
    with caplog.at_level(logging.DEBUG, logger="statekit.sql"):
        with Session(engine) as session, session.begin():
            order = session.get(OrderRow, 1)
            assert order is not None
            order.sku = "BEFORE"  # pending when the fire runs
            order.total = order.total  # set to what it was: no change
            orders.fire(order, "cancel")
            if driver:
                pending = set(inspect(order).committed_state)
                assert pending == {"total"}  # sku is written; total was never changed
                stored = session.connection().execute(select(OrderRow.sku).where(OrderRow.id == 1))
                assert stored.scalar() == "BEFORE"  # written in this transaction already
                [sent] = [r.getMessage() for r in caplog.records if r.name == "statekit.sql"][
                    :1
                ]  # the compare-and-set UPDATE (on PostgreSQL, in its WITH clause)
                assert "sku" in sent.split("WHERE")[0]
                assert "total" not in sent.split("WHERE")[0]
            else:
                assert inspect(order).modified  # the caller's change is still to be flushed
                assert "sku" in set(inspect(order).committed_state)
            order.in_stock = 3  # and one after: the commit's flush writes it
    assert _row(engine, 1) == ("cancelled", 1, "BEFORE")
    with Session(engine) as session:
        reloaded = session.get(OrderRow, 1)
        assert reloaded is not None
        assert (reloaded.in_stock, reloaded.state_version) == (3, 1)


def test_a_lost_race_leaves_the_callers_changes_pending_and_unwritten(
    orders: Runner, engine: Engine
) -> None:
    before = _row(engine, 1)[2]
    with Session(engine) as session:
        session.begin()
        order = session.get(OrderRow, 1)
        assert order is not None
        order.sku = "LOSER"
        with engine.begin() as conn:  # another writer moves the row on first
            conn.execute(update(OrderRow).where(OrderRow.id == 1).values(state_version=1))
        with pytest.raises(ConcurrentTransitionError):
            orders.fire(order, "cancel")
        assert set(inspect(order).committed_state) == {"sku"}  # still the caller's
        session.rollback()
    assert _row(engine, 1) == ("pending", 1, before)


@pytest.mark.parametrize("listener", ["before_update", "after_update", "after_flush"])
def test_listeners_of_the_flush_see_the_callers_changes_flushed(
    orders: Runner, engine: Engine, listener: str
) -> None:
    """A column change folded into statekit's UPDATE would never reach the ORM's
    update or flush events: with such a listener the Session flushes it."""
    heard: list[str] = []

    def hear(*args: Any) -> None:
        heard.append(listener)

    target: Any = OrderRow if listener.endswith("update") else Session
    event.listen(target, listener, hear)
    try:
        with Session(engine) as session, session.begin():
            order = session.get(OrderRow, 1)
            assert order is not None
            order.sku = "HEARD"
            orders.fire(order, "cancel")
            assert inspect(order).modified  # left for the flush
        assert heard == [listener]
    finally:
        event.remove(target, listener, hear)
    assert _row(engine, 1) == ("cancelled", 1, "HEARD")


def test_a_lost_race_in_the_callers_session_puts_the_entity_back(
    orders: Runner, engine: Engine
) -> None:
    with Session(engine) as session, session.begin():
        order = session.get(OrderRow, 1)
        assert order is not None
        with engine.begin() as conn:  # another writer moves the row on first
            conn.execute(
                update(OrderRow)
                .where(OrderRow.id == 1)
                .values(state="stock_reserved", state_version=1)
            )
        with pytest.raises(ConcurrentTransitionError) as caught:
            orders.fire(order, "cancel")
        assert (caught.value.expected_version, caught.value.actual_version) == (0, 1)
        assert (order.state, order.state_version) == ("pending", 0)
        assert order not in session.dirty  # nothing of the loser is flushed
    assert _row(engine, 1)[:2] == ("stock_reserved", 1)  # the winner stands


def test_expired_state_attributes_are_loaded_before_they_are_written(
    orders: Runner, engine: Engine
) -> None:
    with Session(engine) as session:
        with session.begin():
            order = session.get(OrderRow, 1)
            assert order is not None
            orders.fire(order, "reserve")
        assert inspect(order).expired  # expire_on_commit
        with session.begin():
            orders.fire(order, "cancel")  # reloads, then writes the dict
            assert (order.state, order.state_version) == ("cancelled", 2)
            assert order not in session.dirty
    assert _row(engine, 1)[:2] == ("cancelled", 2)


def test_another_entity_in_statekits_own_session_unit_gets_its_own_writer(
    store: SQLAlchemyStore, orders: Runner, engine: Engine
) -> None:
    """A block of `session_unit` may fire on any entity of its Session: each gets a
    unit with its own class's writer over the one transaction and after-commit list."""
    with Session(engine) as session, session.begin():
        ticket = TicketRow(id="T-1", subject="late")
        session.add(ticket)
        Runner(ENTITIES_BY_NAME["ticket"], store).start(ticket)
    with store.session_unit("order", "1") as order:
        own = store.unit_of("order", "1", order)
        session = Session.object_session(order)
        assert session is not None
        other = session.get(OrderRow, 2)
        assert other is not None
        shared = store.unit_of("order", "2", other)
        assert isinstance(own, SessionUnit)
        assert isinstance(shared, SessionUnit)
        assert shared is not own
        assert shared.entity is other
        assert shared.committed is own.committed  # run after the one commit
        held = session.get(TicketRow, "T-1")
        ticket_unit = store.unit_of("ticket", "T-1", held)
        assert isinstance(ticket_unit, SessionUnit)
        assert ticket_unit.state_writer() is store.binding("ticket").write_state
        orders.fire(other, "cancel")
    assert _row(engine, 2)[:2] == ("cancelled", 1)


def test_a_class_that_listens_to_its_state_hears_a_session_fire(
    orders: Runner, engine: Engine
) -> None:
    heard: list[object] = []

    def on_set(target: object, value: object, old: object, initiator: object) -> None:
        heard.append(value)

    event.listen(OrderRow.state, "set", on_set)
    try:
        store = SQLAlchemyStore(engine, ENTITIES)  # built while the listener is there
        assert store.binding("order").write_state is None
        with Session(engine) as session, session.begin():
            order = session.get(OrderRow, 1)
            assert order is not None
            Runner(MACHINE, store).fire(order, "cancel")
            assert order not in session.dirty  # committed attributes, as before
    finally:
        event.remove(OrderRow.state, "set", on_set)
    assert heard == ["cancelled"]
    assert _row(engine, 1)[:2] == ("cancelled", 1)


ENTITIES_BY_NAME = {machine.name: machine for machine in ENTITIES}


def _sent(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The verbs of the statements statekit logged as sent on a DBAPI connection."""
    return [r.getMessage().split()[0] for r in caplog.records if r.name == "statekit.sql"]


def test_an_unwatched_engine_gets_the_sessions_statements_on_its_dbapi_connection(
    orders: Runner, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    driver = supports_driver_path(engine)
    with caplog.at_level(logging.DEBUG, logger="statekit.sql"):
        with Session(engine) as session:
            with session.begin():
                order = session.get(OrderRow, 1)
                assert order is not None
                orders.fire(order, "cancel")
            # On PostgreSQL both rows in one statement (the UPDATE in a WITH clause).
            one = engine.dialect.name == "postgresql"
            assert _sent(caplog) == ((["WITH"] if one else ["UPDATE", "INSERT"]) if driver else [])
            caplog.clear()
            session.begin()
            other = session.get(OrderRow, 2)
            assert other is not None
            orders.fire(other, "cancel")
            session.rollback()  # the driver's statements were in the Session's transaction
    assert _row(engine, 1)[:2] == ("cancelled", 1)
    assert _row(engine, 2)[:2] == ("pending", 0)
    assert [r.seq for r in orders.store.history("order", "2")] == []


def test_a_watched_engine_sees_every_statement_of_a_session_fire(
    orders: Runner, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def watch(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement.split()[0])

    event.listen(engine, "before_cursor_execute", watch)
    try:
        with caplog.at_level(logging.DEBUG, logger="statekit.sql"):
            with Session(engine) as session, session.begin():
                order = session.get(OrderRow, 1)
                assert order is not None
                orders.fire(order, "cancel")
    finally:
        event.remove(engine, "before_cursor_execute", watch)
    assert _sent(caplog) == []
    assert seen[-2:] == ["UPDATE", "INSERT"]
    assert _row(engine, 1)[:2] == ("cancelled", 1)


def test_a_connection_with_options_of_its_own_keeps_sqlalchemys_execution(
    orders: Runner, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Options the Session's connection carries (here one statekit does not know)
    apply only to what SQLAlchemy sends: statekit does not step around them."""
    with caplog.at_level(logging.DEBUG, logger="statekit.sql"):
        with Session(engine) as session, session.begin():
            session.connection(execution_options={"statekit_test_option": True})
            order = session.get(OrderRow, 1)
            assert order is not None
            orders.fire(order, "cancel")
        with Session(engine.execution_options(statekit_test_option=True)) as session:
            with session.begin():
                order = session.get(OrderRow, 2)
                assert order is not None
                orders.fire(order, "cancel")
    assert _sent(caplog) == []
    assert (_row(engine, 1)[:2], _row(engine, 2)[:2]) == (("cancelled", 1), ("cancelled", 1))


def test_a_connection_lost_under_a_session_fire_is_a_store_error_and_a_rollback(
    database_url: str, orders: Runner, engine: Engine
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("a server's sessions")
    with Session(engine) as session:
        order = session.get(OrderRow, 1)
        assert order is not None
        kill_other_connections(database_url)  # the Session's connection is gone
        with pytest.raises(StoreError) as caught:
            orders.fire(order, "cancel")
        assert caught.value.__cause__ is not None
        assert (order.state, order.state_version) == ("pending", 0)
        session.rollback()
        assert session.execute(text("SELECT 1")).scalar() == 1  # a new connection
    assert _row(engine, 1)[:2] == ("pending", 0)
