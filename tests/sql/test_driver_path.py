"""`fire_by_key` on the DBAPI connection (SQLite and PostgreSQL), and when it is not used.

The driver path compiles statekit's statements with SQLAlchemy and runs the
columns' bind and result processors itself, so these tests compare what it loads
and writes with what the ORM loads, for column types that need processing.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Engine,
    Enum,
    Numeric,
    String,
    TypeDecorator,
    Uuid,
    cast,
    create_engine,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from statekit import (
    ConcurrentTransitionError,
    Context,
    InstanceNotFoundError,
    Listener,
    ManualClock,
    Runner,
    State,
    StoreError,
    TransitionRecord,
    Workflow,
)
from statekit.store.sqlalchemy import SQLAlchemyStore, StateMixin
from statekit.store.sqlalchemy.driver import (
    DriverFiring,
    driver_connection,
    driver_path_allowed,
    supports_driver_path,
)
from statekit.store.sqlalchemy.history import history_row
from tests.sql_support import engine_for, kill_other_connections


class Shouted(TypeDecorator[str]):
    """Stored upper case, loaded lower case: only its processors make the round trip."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else value.upper()

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else value.lower()


class Size(enum.Enum):
    SMALL = "s"
    LARGE = "l"


def double_price(gadget: Any, ctx: Context) -> None:
    gadget.price = gadget.price * 2
    gadget.tags = [*gadget.tags, "live"]
    gadget.size = Size.LARGE


def lose_a_race(gadget: Any, ctx: Context) -> bool:
    """Guard of `retire`: another writer moves the row while this one decides."""
    hook = RACES.pop(str(gadget.id), None)
    if hook is not None:
        hook()
    return True


RACES: dict[str, Any] = {}


class GadgetWorkflow(Workflow, name="gadget"):
    draft = State(initial=True)
    live = State()
    retired = State(final=True)

    publish = draft.to(live, action=double_price)
    retire = live.to(retired, guard=lose_a_race)


class Base(DeclarativeBase):
    pass


class Gadget(StateMixin, Base):
    __tablename__ = "gadgets"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    label: Mapped[str] = mapped_column(Shouted())
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    tags: Mapped[list[str]] = mapped_column(JSON)
    size: Mapped[Size] = mapped_column(Enum(Size, native_enum=False, length=8))
    made_at: Mapped[datetime]


TOUCHES: list[int] = []


def _touch() -> int:
    TOUCHES.append(1)
    return len(TOUCHES)


class Stamped(StateMixin, Base):
    """A Python-side `onupdate`: SQLAlchemy computes it for every UPDATE it runs."""

    __tablename__ = "stamped"

    id: Mapped[int] = mapped_column(primary_key=True)
    touches: Mapped[int] = mapped_column(default=0, onupdate=_touch)


class StampedWorkflow(Workflow, name="stamped"):
    draft = State(initial=True)
    live = State(final=True)

    publish = draft.to(live)


class Seen(Listener):
    """Records, after commit, the entity's columns and the committed row version."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.columns: list[dict[str, Any]] = []
        self.versions: list[int] = []

    def on_transition(self, record: TransitionRecord, entity: object) -> None:
        self.columns.append(_columns(entity))
        with self.engine.connect() as conn:
            key = uuid.UUID(record.key)
            version = conn.execute(select(Gadget.state_version).where(Gadget.id == key)).scalar()
        self.versions.append(int(version or 0))


def _columns(entity: object) -> dict[str, Any]:
    return {name: getattr(entity, name) for name in Gadget.__table__.columns.keys()}


@dataclass
class Env:
    url: str
    engine: Engine
    store: SQLAlchemyStore
    runner: Runner
    seen: Seen

    def new(self, label: str = "Widget") -> uuid.UUID:
        key = uuid.uuid4()
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            gadget = Gadget(
                id=key,
                label=label,
                price=Decimal("12.50"),
                tags=["new"],
                size=Size.SMALL,
                made_at=datetime(2026, 11, 1, 9, 30),
            )
            session.add(gadget)
            self.runner.start(gadget)
        return key

    def loaded(self, key: uuid.UUID) -> Gadget:
        with Session(self.engine) as session:
            gadget = session.get(Gadget, key)
            assert gadget is not None
            session.expunge(gadget)
            return gadget

    def history(self, key: uuid.UUID) -> list[int]:
        return [r.seq for r in self.store.history("gadget", str(key))]

    @property
    def on_driver(self) -> bool:
        return supports_driver_path(self.engine)


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    engine = engine_for(database_url)
    Base.metadata.create_all(engine)
    SQLAlchemyStore(engine).create_tables()
    yield engine
    engine.dispose()


@pytest.fixture
def env(engine: Engine, database_url: str) -> Env:
    store = SQLAlchemyStore(engine, {GadgetWorkflow.machine: Gadget})
    seen = Seen(engine)
    runner = Runner(GadgetWorkflow.machine, store, clock=ManualClock(), listeners=[seen])
    return Env(database_url, engine, store, runner, seen)


def _sent(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The statements statekit logged as sent on a DBAPI connection."""
    return [r.getMessage() for r in caplog.records if r.name == "statekit.sql"]


def _verbs(statements: list[str]) -> list[str]:
    return [statement.split()[0] for statement in statements]


def test_the_driver_path_loads_and_writes_what_the_orm_would(env: Env) -> None:
    key = env.new(label="Widget")
    record = env.runner.fire_by_key(key, "publish")
    assert (record.seq, record.target) == (1, "live")
    stored = env.loaded(key)
    assert (stored.state, stored.state_version) == ("live", 1)
    # the action's changes went through each column's processors, both ways
    assert (stored.label, stored.price, stored.tags, stored.size) == (
        "widget",
        Decimal("25.00"),
        ["new", "live"],
        Size.LARGE,
    )
    gadgets = Gadget.__table__
    as_stored = select(cast(gadgets.c.label, String)).where(gadgets.c.id == key)
    with env.engine.connect() as conn:
        assert conn.execute(as_stored).scalar() == "WIDGET"
    # the entity the listener got, after commit, holds what a fresh ORM load holds
    assert env.seen.versions == [1]
    [columns] = env.seen.columns
    assert columns == _columns(stored)
    assert env.history(key) == [1]


def test_by_key_fires_run_on_the_driver_for_sqlite3_and_psycopg(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    key = env.new()
    with caplog.at_level(logging.DEBUG, logger="statekit.sql"):
        env.runner.fire_by_key(key, "publish")
        env.runner.fire_by_key(key, "retire")
    sent = _sent(caplog)
    if env.engine.dialect.name == "sqlite":
        assert _verbs(sent) == ["BEGIN", "SELECT", "UPDATE", "INSERT", "COMMIT"] * 2
    elif env.engine.dialect.name == "postgresql":
        assert _verbs(sent) == ["SELECT", "WITH"] * 2  # the write commits by itself
        assert "INSERT INTO statekit_transitions" in sent[1]
    else:
        assert not env.on_driver
        assert sent == []  # MariaDB keeps SQLAlchemy's Connection
    assert env.history(key) == [1, 2]


def test_a_detached_entity_is_written_in_one_transaction_of_its_own(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    key = env.new()
    gadget, stale = env.loaded(key), env.loaded(key)
    with caplog.at_level(logging.DEBUG, logger="statekit.sql"):
        record = env.runner.fire(gadget, "publish")
    expected = {
        "sqlite": ["BEGIN", "UPDATE", "INSERT", "COMMIT"],
        "postgresql": ["WITH"],  # compare-and-set and history row, committing by itself
    }.get(env.engine.dialect.name, [])
    assert _verbs(_sent(caplog)) == expected
    assert (record.seq, env.seen.versions) == (1, [1])  # the listener ran after the commit
    assert (gadget.state, gadget.state_version) == ("live", 1)
    with pytest.raises(ConcurrentTransitionError) as caught:
        env.runner.fire(stale, "publish")
    assert (caught.value.expected_version, caught.value.actual_version) == (0, 1)
    assert (stale.state, stale.state_version) == ("draft", 0)  # put back as it was
    assert env.history(key) == [1]


def test_a_detached_fire_writes_what_the_connection_path_writes(env: Env) -> None:
    plain = SQLAlchemyStore(env.engine, {GadgetWorkflow.machine: Gadget}, driver_path=False)
    stored = []
    for runner in (env.runner, Runner(GadgetWorkflow.machine, plain, clock=ManualClock())):
        key = env.new()
        gadget = env.loaded(key)
        runner.fire(gadget, "publish")  # its action changes price, tags and size
        stored.append(_columns(env.loaded(key)) | {"id": None, "state_entered_at": None})
    assert stored[0] == stored[1]
    assert stored[0]["price"] == Decimal("12.50")  # only the state columns are written


def test_a_watched_engine_keeps_sqlalchemys_connection(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def watch(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement.split()[0])

    key = env.new()
    event.listen(env.engine, "before_cursor_execute", watch)
    try:
        with caplog.at_level(logging.DEBUG, logger="statekit.sql"):
            env.runner.fire_by_key(key, "publish")
    finally:
        event.remove(env.engine, "before_cursor_execute", watch)
    assert _sent(caplog) == []
    assert {"UPDATE", "INSERT"} <= set(seen)  # the listener saw the transition
    assert env.loaded(key).state == "live"


def test_driver_path_false_keeps_sqlalchemys_connection(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLAlchemyStore(env.engine, {GadgetWorkflow.machine: Gadget}, driver_path=False)
    key = env.new()
    with caplog.at_level(logging.DEBUG, logger="statekit.sql"):
        Runner(GadgetWorkflow.machine, store).fire_by_key(key, "publish")
    assert _sent(caplog) == []
    assert env.loaded(key).price == Decimal("25.00")


def test_what_counts_as_watching_an_engine(tmp_path: Any) -> None:
    engine = engine_for(f"sqlite+pysqlite:///{tmp_path / 'watched.db'}")
    assert supports_driver_path(engine)
    assert driver_path_allowed(engine)  # statekit's own SQLite "begin" listener is fine
    assert not driver_path_allowed(engine.execution_options(schema_translate_map={None: "x"}))
    assert not driver_path_allowed(create_engine("sqlite://", echo=True))
    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)
    try:
        assert not driver_path_allowed(engine)  # statement logging turned on by config
    finally:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.NOTSET)
    for name in ("after_cursor_execute", "commit", "begin", "handle_error"):
        listener = _ignore
        event.listen(engine, name, listener)
        assert not driver_path_allowed(engine), name
        event.remove(engine, name, listener)
    assert driver_path_allowed(engine)
    engine.dispose()


def _ignore(*args: Any) -> None:
    return None


def _phantom_history_row(env: Env, key: uuid.UUID) -> None:
    """Record seq 1 by hand, so the next transition's history INSERT fails."""
    row = history_row(
        TransitionRecord(
            entity_type="gadget",
            key=str(key),
            seq=1,  # what the next transition would write
            event="imported",
            source="draft",
            target="draft",
            at=datetime.now(UTC),
        )
    )
    with env.engine.begin() as conn:
        conn.execute(insert(env.store.tables.transitions), row)


def test_a_history_row_that_fails_takes_the_update_down(env: Env) -> None:
    key = env.new()
    _phantom_history_row(env, key)
    with pytest.raises(ConcurrentTransitionError) as caught:
        env.runner.fire_by_key(key, "publish")
    assert (caught.value.expected_version, caught.value.actual_version) == (0, 0)
    stored = env.loaded(key)
    assert (stored.state, stored.state_version, stored.price) == ("draft", 0, Decimal("12.50"))
    assert env.history(key) == [1]  # only the row put there by hand
    assert env.seen.columns == []


def test_a_failed_write_caught_inside_the_block_commits_nothing(env: Env) -> None:
    key = env.new()
    _phantom_history_row(env, key)
    machine = GadgetWorkflow.machine
    refused: list[str] = []
    try:
        with env.store.firing("gadget", str(key)) as gadget:
            plan = machine.decide(gadget, "publish", now=datetime.now(UTC))
            machine.stage(gadget, plan)
            with pytest.raises(ConcurrentTransitionError):
                env.store.apply(plan, entity=gadget)  # the UPDATE ran, the INSERT failed
    except StoreError as exc:  # SQLAlchemy's Connection path refuses to commit
        refused.append(str(exc))
    if env.engine.dialect.name == "mysql":
        assert len(refused) == 1
        assert "commit refused" in refused[0]
    else:
        assert refused == []  # the driver path rolled back by itself
    stored = env.loaded(key)
    assert (stored.state, stored.state_version, stored.price) == ("draft", 0, Decimal("12.50"))
    assert env.history(key) == [1]


def test_a_firing_unit_writes_one_transition(env: Env) -> None:
    key = env.new()
    machine = GadgetWorkflow.machine

    def fire_twice() -> None:
        with env.store.firing("gadget", str(key)) as gadget:
            for event in ("publish", "retire"):
                plan = machine.decide(gadget, event, now=datetime.now(UTC))
                machine.stage(gadget, plan)
                env.store.apply(plan, entity=gadget)

    if not env.on_driver:  # elsewhere `firing` is `transaction`, which takes several
        fire_twice()
        assert env.history(key) == [1, 2]
        return
    with pytest.raises(StoreError, match="a firing unit writes one transition"):
        fire_twice()
    # SQLite rolled the unit back; PostgreSQL had committed the first write by itself
    expected = {"sqlite": [], "postgresql": [1]}[env.engine.dialect.name]
    assert env.history(key) == expected
    assert env.loaded(key).state_version == len(expected)


def _bump(env: Env, key: uuid.UUID) -> None:
    with env.engine.begin() as conn:
        conn.execute(
            update(Gadget.__table__)
            .where(Gadget.__table__.c.id == key)
            .values(state_version=Gadget.__table__.c.state_version + 1)
        )


def _delete(env: Env, key: uuid.UUID) -> None:
    with env.engine.begin() as conn:
        conn.execute(Gadget.__table__.delete().where(Gadget.__table__.c.id == key))


def test_a_writer_between_the_read_and_the_write_wins(env: Env) -> None:
    key = env.new()
    env.runner.fire_by_key(key, "publish")
    if env.engine.dialect.name == "sqlite":
        # A by-key fire holds SQLite's write lock from its first statement: the
        # other writer cannot get in between, and the fire goes through.
        locked_out: list[str] = []
        RACES[str(key)] = lambda: locked_out.append(_try_to_bump(env, key))
        assert env.runner.fire_by_key(key, "retire").seq == 2
        assert locked_out == ["database is locked"]
        return
    RACES[str(key)] = lambda: _bump(env, key)
    with pytest.raises(ConcurrentTransitionError) as caught:
        env.runner.fire_by_key(key, "retire")
    assert (caught.value.expected_version, caught.value.actual_version) == (1, 2)
    assert env.history(key) == [1]
    assert env.loaded(key).state == "live"
    RACES[str(key)] = lambda: _bump(env, key)
    record = env.runner.fire_by_key(key, "retire", retries=1)  # reloads and wins
    assert (record.seq, env.history(key)) == (4, [1, 4])
    other = env.new()
    env.runner.fire_by_key(other, "publish")
    RACES[str(other)] = lambda: _delete(env, other)
    with pytest.raises(InstanceNotFoundError):
        env.runner.fire_by_key(other, "retire")


def _try_to_bump(env: Env, key: uuid.UUID) -> str:
    impatient = engine_for(env.url, busy_timeout_ms=50)
    try:
        with impatient.begin() as conn:
            gadgets = Gadget.__table__
            conn.execute(update(gadgets).where(gadgets.c.id == key).values(state_version=99))
    except OperationalError as exc:
        return str(exc.orig)
    finally:
        impatient.dispose()
    return "written"


def _break_the_next_call(env: Env) -> Any:
    """Make the database refuse the next by-key fire; returns what undoes that."""
    name = env.engine.dialect.name
    if name == "sqlite":  # another writer holds the lock longer than we wait
        other = engine_for(env.url, begin="IMMEDIATE")
        blocker = other.connect()
        blocker.begin()  # takes the write lock at once

        def release() -> None:
            blocker.close()
            other.dispose()

        return release
    env.engine.dispose()
    with env.engine.connect() as conn:  # the pool's only connection from now on
        conn.execute(text("SELECT 1"))
    kill_other_connections(env.url)
    return env.engine.dispose


def test_a_failed_database_call_is_a_store_error_and_the_next_fire_works(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    key = env.new()
    if env.engine.dialect.name == "sqlite":
        impatient = engine_for(env.url, busy_timeout_ms=100)
        env.store = SQLAlchemyStore(impatient, {GadgetWorkflow.machine: Gadget})
        env.runner = Runner(GadgetWorkflow.machine, env.store)
    undo = _break_the_next_call(env)
    try:
        with pytest.raises(StoreError) as caught:
            env.runner.fire_by_key(key, "publish")
    finally:
        undo()
    assert type(caught.value) is StoreError
    assert f"gadget {key}" in str(caught.value)
    # a refused BEGIN leaves nothing to roll back: the connection is not dropped for it
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert env.loaded(key).state_version == 0
    assert env.runner.fire_by_key(key, "publish").seq == 1  # a working connection again
    assert env.history(key) == [1]


def test_history_columns_are_stored_as_sqlalchemy_stores_them(env: Env) -> None:
    by_driver, by_connection = env.new(), env.new()
    env.runner.fire_by_key(by_driver, "publish")
    plain = SQLAlchemyStore(env.engine, {GadgetWorkflow.machine: Gadget}, driver_path=False)
    Runner(GadgetWorkflow.machine, plain, clock=ManualClock()).fire_by_key(by_connection, "publish")
    t = env.store.tables.transitions
    stored = {}
    with env.engine.connect() as conn:
        for key in (by_driver, by_connection):
            row = conn.execute(
                select(t.c.payload.is_(None), text("CAST(payload AS CHAR(20))")).where(
                    t.c.entity_key == str(key)
                )
            ).one()
            stored[key] = tuple(row)
    # no payload: SQL NULL both ways (as DjangoStore stores it), not the JSON text 'null'
    assert stored[by_driver] == stored[by_connection] == (True, None)


def test_an_onupdate_computed_in_python_keeps_sqlalchemys_execution(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLAlchemyStore(engine, {StampedWorkflow.machine: Stamped})
    runner = Runner(StampedWorkflow.machine, store)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        row = Stamped(id=len(TOUCHES) + 100)
        session.add(row)
        runner.start(row)
    with caplog.at_level(logging.DEBUG, logger="statekit.sql"):
        runner.fire_by_key(row.id, "publish")
    assert _sent(caplog) == []
    with Session(engine) as session:
        stored = session.get(Stamped, row.id)
        assert stored is not None
        assert (stored.state, stored.touches) == ("live", len(TOUCHES))
        assert stored.touches > 0


def test_hidden_parameters_stay_out_of_errors(env: Env) -> None:
    if not env.on_driver:
        return  # SQLAlchemy's Connection hides them itself
    engine = engine_for(env.url, hide_parameters=True)
    firing = DriverFiring(
        env.store.binding("gadget"),
        env.store.tables.transitions,
        engine.dialect,
        hide_parameters=True,
    )
    key = env.new()
    try:
        with driver_connection(engine, firing, str(key)) as unit:
            lookup = "SELECT id FROM no_such_table WHERE id = " + (
                "?" if engine.dialect.name == "sqlite" else "%s"
            )
            with pytest.raises(DBAPIError) as caught:
                unit.send(lookup, ("secret-value",))
            unit.failed = True
    finally:
        engine.dispose()
    assert "no_such_table" in str(caught.value)
    assert "hide_parameters=True" in str(caught.value)
    assert "secret-value" not in str(caught.value)


def test_the_pooled_connection_goes_back_transactional(env: Env) -> None:
    key = env.new()
    env.runner.fire_by_key(key, "publish")  # on PostgreSQL: in autocommit
    with env.engine.connect() as conn:
        gadgets = Gadget.__table__
        conn.execute(update(gadgets).where(gadgets.c.id == key).values(label="changed"))
        conn.rollback()
    assert env.loaded(key).label == "widget"


def test_an_autocommit_engine_keeps_its_connections_in_autocommit(env: Env) -> None:
    if env.engine.dialect.name != "postgresql":
        return  # psycopg's autocommit is the mode the driver path switches
    engine = create_engine(env.url, isolation_level="AUTOCOMMIT")
    try:
        store = SQLAlchemyStore(engine, {GadgetWorkflow.machine: Gadget})
        key = env.new()
        Runner(GadgetWorkflow.machine, store).fire_by_key(key, "publish")
        with engine.connect() as conn:  # the same pooled connection, still autocommit
            gadgets = Gadget.__table__
            conn.execute(update(gadgets).where(gadgets.c.id == key).values(label="kept"))
            conn.rollback()  # nothing to roll back: the UPDATE committed by itself
    finally:
        engine.dispose()
    assert env.loaded(key).label == "kept"
