"""Faults outside statekit's control come out as `StatekitError`: a database that cannot be
reached, opened or written, a history payload that is not JSON, a stored version that
cannot be.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, make_url, select, text, update
from sqlalchemy.orm import Session, make_transient_to_detached

from models.order import OrderWorkflow
from models.orm import ENTITIES, Base, OrderRow
from statekit import (
    DefinitionMismatchError,
    ManualClock,
    Runner,
    StatekitError,
    StoreError,
    Sweeper,
)
from statekit.store.sqlalchemy import SQLAlchemyStore
from tests.sql_support import engine_for, kill_other_connections


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    """The module's database, with the example tables."""
    engine = engine_for(database_url)
    Base.metadata.create_all(engine)
    SQLAlchemyStore(engine, ENTITIES).create_tables()
    yield engine
    engine.dispose()


@pytest.fixture
def orders(engine: Engine) -> Runner:
    """A runner on a store over the module's database, its orders emptied first."""
    store = SQLAlchemyStore(engine, ENTITIES)
    with engine.begin() as conn:
        conn.execute(store.tables.transitions.delete())
        conn.execute(OrderRow.__table__.delete())
    return Runner(OrderWorkflow.machine, store, clock=ManualClock())


def _unreachable(database_url: str, tmp_path: Path) -> Engine:
    """An engine on the same kind of database that cannot connect: a server port nobody
    listens on, or a SQLite file in a directory that does not exist."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return create_engine(f"sqlite+pysqlite:///{tmp_path / 'gone' / 'app.db'}")
    return create_engine(url.set(port=1))


def _calls(runner: Runner, sweeper: Sweeper) -> dict[str, Callable[[], Any]]:
    """Every entry point that reaches the database, on order 1."""
    store: Any = runner.store

    def in_a_session() -> Any:
        order = OrderRow(id=1, total=Decimal(10), state="pending", state_version=0)
        for column in OrderRow.__table__.columns:  # all loaded: nothing to lazy-load
            order.__dict__.setdefault(column.key, None)
        make_transient_to_detached(order)
        with Session(store.engine) as session:
            session.add(order)
            return runner.fire(order, "reserve")

    def in_a_unit() -> Any:
        with store.transaction("order", "1") as order:
            return runner.fire(order, "reserve")

    detached = OrderRow(id=1, total=Decimal(10), state="pending", state_version=0)
    return {
        "fire_by_key": lambda: runner.fire_by_key(1, "reserve"),
        "fire_by_key with a key": lambda: runner.fire_by_key(1, "reserve", idempotency_key="a"),
        "fire detached": lambda: runner.fire(detached, "reserve"),
        "fire in a Session": in_a_session,
        "store.transaction": in_a_unit,
        "start": lambda: runner.start(OrderRow(id=2, total=Decimal(10))),
        "load": lambda: store.load("order", "1"),
        "history": lambda: runner.history(detached),
        "last_transition": lambda: store.last_transition("order", "1"),
        "count_by_state": lambda: store.count_by_state("order"),
        "run_once": sweeper.run_once,
        "stuck": lambda: list(sweeper.stuck()),
        "compensate": lambda: sweeper.compensate("order", "1", reason="why", actor="ops"),
        "retry": lambda: sweeper.retry("order", "1", actor="ops"),
        "resolve": lambda: sweeper.resolve("order", "1", "cancelled", note="n", actor="ops"),
    }


def _outcomes(calls: dict[str, Callable[[], Any]]) -> dict[str, str]:
    """What each call did: "ok", "statekit" (a StatekitError carrying the backend's
    error, if any) or the foreign exception that escaped."""
    outcomes = {}
    for name, call in calls.items():
        try:
            call()
        except StatekitError as exc:
            backend = exc.__cause__
            outcomes[name] = (
                "store error" if isinstance(exc, StoreError) and backend else "statekit"
            )
        except Exception as exc:
            outcomes[name] = f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
        else:
            outcomes[name] = "ok"
    return outcomes


@pytest.mark.parametrize("driver_path", [True, False], ids=["driver", "connection"])
def test_a_database_that_cannot_be_reached_is_a_store_error_everywhere(
    database_url: str, tmp_path: Path, driver_path: bool
) -> None:
    broken = _unreachable(database_url, tmp_path)
    store = SQLAlchemyStore(broken, ENTITIES, driver_path=driver_path)
    runner = Runner(OrderWorkflow.machine, store)
    calls = _calls(runner, Sweeper([runner]))
    assert _outcomes(calls) == dict.fromkeys(calls, "store error")
    broken.dispose()


@pytest.mark.parametrize("driver_path", [True, False], ids=["driver", "connection"])
def test_a_server_that_ended_every_session_is_a_store_error_or_a_reconnect(
    database_url: str, engine: Engine, orders: Runner, driver_path: bool
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("a server's sessions")
    store = SQLAlchemyStore(engine, ENTITIES, driver_path=driver_path)
    runner = Runner(OrderWorkflow.machine, store, clock=ManualClock())
    runner.start(OrderRow(id=1, total=Decimal(10)))
    outcomes = {}
    try:
        for name, call in _calls(runner, Sweeper([runner], clock=runner.clock)).items():
            _outcomes({name: call})  # the pool holds a connection this call uses...
            kill_other_connections(database_url)  # ...which the server then ends
            outcomes.update(_outcomes({name: call}))
    finally:
        engine.dispose()  # the module's other tests get live connections
    assert "store error" in outcomes.values()  # the dead connections were met
    assert {n: o for n, o in outcomes.items() if o not in {"ok", "statekit", "store error"}} == {}


def test_an_expired_entity_whose_database_went_away_is_a_store_error(
    database_url: str, tmp_path: Path, engine: Engine, orders: Runner
) -> None:
    orders.start(OrderRow(id=1, total=Decimal(10)))
    with Session(engine) as session:
        order = session.get(OrderRow, 1)
        session.commit()  # expires the entity: reading its state reloads it
        session.bind = broken = _unreachable(database_url, tmp_path)
        with pytest.raises(StoreError) as caught:
            orders.fire(order, "reserve")
    assert caught.value.__cause__ is not None
    assert "order 1" in str(caught.value)
    broken.dispose()
    assert orders.store.load("order", "1").state == "pending"


@pytest.fixture
def sqlite_only(database_url: str) -> str:
    if not database_url.startswith("sqlite"):
        pytest.skip("a fault made with SQLite's own file")
    return make_url(database_url).database or ""


def test_a_sqlite_file_that_cannot_be_written_is_a_store_error(
    sqlite_only: str, orders: Runner
) -> None:
    orders.start(OrderRow(id=1, total=Decimal(10)))
    read_only = create_engine(f"sqlite+pysqlite:///file:{sqlite_only}?mode=ro&uri=true")
    for driver_path in (True, False):
        runner = Runner(
            OrderWorkflow.machine, SQLAlchemyStore(read_only, ENTITIES, driver_path=driver_path)
        )
        assert runner.store.load("order", "1").state == "pending"  # reads still work
        with pytest.raises(StoreError, match="readonly") as fired:
            runner.fire_by_key(1, "reserve", idempotency_key="a")
        with pytest.raises(StoreError, match="readonly") as started:
            runner.start(OrderRow(id=2, total=Decimal(10)))
        assert fired.value.__cause__ is not None
        assert started.value.__cause__ is not None
    read_only.dispose()
    assert [r.event for r in orders.store.history("order", "1")] == []


def test_a_full_sqlite_disk_is_a_store_error(sqlite_only: str, orders: Runner) -> None:
    full = engine_for(f"sqlite+pysqlite:///{sqlite_only}")

    @event.listens_for(full, "connect")
    def _no_room_to_grow(dbapi_connection: Any, record: Any) -> None:
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count={pages}")

    runner = Runner(OrderWorkflow.machine, SQLAlchemyStore(full, ENTITIES))

    def until_it_fails(call: Callable[[int], Any], count: int) -> tuple[int, BaseException]:
        for number in range(1, count + 1):
            try:
                call(number)
            except Exception as exc:
                return number, exc
        raise AssertionError(f"{count} calls all found room")

    def start(number: int) -> Any:  # each order takes room, until there is none
        return runner.start(OrderRow(id=number, total=Decimal(10), sku="X" * 30))

    def fire(number: int) -> Any:  # and so does each history row
        return runner.fire_by_key(number, "reserve", idempotency_key="k" * 60)

    started, refused = until_it_fails(start, 10_000)
    _, fire_refused = until_it_fails(fire, started - 1)
    for error in (refused, fire_refused):
        assert isinstance(error, StoreError)
        assert "full" in str(error)
        assert error.__cause__ is not None
    full.dispose()


def test_a_history_payload_that_is_not_json_names_its_row(sqlite_only: str, orders: Runner) -> None:
    # PostgreSQL and MariaDB check JSON columns themselves; SQLite stores any text.
    store: Any = orders.store
    orders.start(OrderRow(id=1, total=Decimal(10)))
    orders.fire_by_key(1, "reserve", idempotency_key="a")
    history = store.tables.transitions
    with store.engine.begin() as conn:
        conn.execute(update(history).values(payload=text("'{\"amount\": 1'")))
    for call in (
        lambda: store.history("order", "1"),
        lambda: store.last_transition("order", "1"),
        lambda: orders.fire_by_key(1, "reserve", idempotency_key="a"),
    ):
        with pytest.raises(StoreError, match="order 1") as caught:
            call()
        assert "seq 1" in str(caught.value)
        assert "not valid JSON" in str(caught.value)
        assert caught.value.__cause__ is not None


def _set_version(engine: Engine, version: int, **values: Any) -> None:
    table = OrderRow.__table__
    with engine.begin() as conn:
        conn.execute(update(table).values(state_version=version, **values))


@pytest.mark.parametrize("driver_path", [True, False], ids=["driver", "connection"])
def test_an_impossible_stored_version_is_refused_before_anything_is_written(
    engine: Engine, orders: Runner, driver_path: bool
) -> None:
    runner = Runner(
        OrderWorkflow.machine, SQLAlchemyStore(engine, ENTITIES, driver_path=driver_path)
    )
    store: Any = runner.store
    runner.start(OrderRow(id=1, total=Decimal(10)))
    _set_version(engine, -5)

    def in_a_session() -> Any:
        with Session(engine) as session, session.begin():
            order = session.get(OrderRow, 1)
            return runner.fire(order, "reserve")

    for call in (
        lambda: runner.fire_by_key(1, "reserve"),
        lambda: runner.fire_by_key(1, "reserve", idempotency_key="a"),
        in_a_session,
        lambda: store.load("order", "1"),
    ):
        with pytest.raises(DefinitionMismatchError, match="order 1 has state version -5"):
            call()
    # the sweeper meets it too: a paid order past its deadline
    clock = ManualClock()
    _set_version(engine, -5, state="paid", state_deadline_at=clock.now() - timedelta(days=1))
    sweeper = Sweeper([Runner(OrderWorkflow.machine, store, clock=clock)], clock=clock)
    with contextlib.suppress(DefinitionMismatchError):  # it may refuse the row (or set
        sweeper.run_once()  # it aside), but never write it
    seqs = select(store.tables.transitions.c.seq)
    with engine.connect() as conn:
        assert conn.execute(seqs).scalars().all() == []
