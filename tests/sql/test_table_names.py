"""statekit's tables under a prefix and in a schema (issue 15): every statement the
store builds, the sweeper, error mapping and the CLI use the store's own tables, so
two applications sharing one database keep separate histories."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import ClassVar

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, MetaData, String, insert, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from statekit import Backoff, Machine, ManualClock, Runner, StoreError, Sweeper
from statekit.cli import cli
from statekit.store.sqlalchemy import SQLAlchemyStore, StateMixin, statekit_tables
from statekit.store.sqlalchemy.errors import is_conflict
from statekit.store.sqlalchemy.history import history_row
from tests.sql_support import engine_for
from tests.sweep_support import FAILURES, JobBase, JobRow, JobWorkflow, start_job


class OtherBase(DeclarativeBase):
    metadata = MetaData()


class OtherJob(StateMixin, OtherBase):
    """Another application's table, storing a machine of the same name ("job")."""

    __tablename__ = "other_jobs"
    __statekit_machine__: ClassVar[Machine] = JobWorkflow.machine

    id: Mapped[str] = mapped_column(String(64), primary_key=True)


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    """The module's database with the applications' tables."""
    engine = engine_for(database_url)
    JobBase.metadata.create_all(engine)
    OtherBase.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def space(engine: Engine) -> Iterator[str | None]:
    """A schema for statekit's tables: on PostgreSQL one in the test database, on
    MariaDB another database (dropped afterwards); None on SQLite."""
    if engine.dialect.name == "sqlite":
        yield None
        return
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("CREATE SCHEMA app_space"))
        yield "app_space"
        return
    name = f"{engine.url.database}_ns"
    with engine.begin() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield name
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))


def _namespace(space: str | None, schema: bool) -> tuple[str, str | None]:
    """A fresh prefix, and the schema when asked for (skipping where not supported)."""
    if schema and space is None:
        pytest.skip(
            "SQLite's schemas are attached databases, which an application attaches on "
            "every connection itself; not set up here"
        )
    return f"t{uuid.uuid4().hex[:6]}_", space if schema else None


def _store(engine: Engine, prefix: str, schema: str | None, **kwargs: object) -> SQLAlchemyStore:
    store = SQLAlchemyStore(
        engine,
        {JobWorkflow.machine: JobRow},
        table_prefix=prefix,
        schema=schema,
        **kwargs,  # type: ignore[arg-type]
    )
    store.create_tables()
    return store


def test_names_follow_the_prefix_and_the_defaults_stay() -> None:
    default = statekit_tables()
    assert default.transitions.name == "statekit_transitions"
    assert default.transitions.primary_key.name == "pk_statekit_transitions"
    tables = statekit_tables(prefix="shop_", schema="app")
    assert [t.fullname for t in tables.all] == [
        "app." + t.name.replace("statekit_", "shop_", 1) for t in default.all
    ]
    items = [c for t in tables.all for c in (*t.constraints, *t.indexes)]
    names = {str(n) for c in items if (n := getattr(c, "name", None)) is not None}
    assert len(names) == 10
    assert all(str(name).startswith(("pk_shop_", "uq_shop_", "ix_shop_")) for name in names)
    assert statekit_tables(tables.metadata, prefix="shop_", schema="app") == tables
    assert tables.retired(tables.compensations) is tables.retired_compensations


@pytest.mark.parametrize("prefix", ["", "1app_", "app-", "a" * 28])
def test_a_prefix_that_cannot_name_tables_is_refused(prefix: str) -> None:
    with pytest.raises(StoreError, match="table prefix"):
        statekit_tables(prefix=prefix)


def test_two_prefixes_keep_separate_histories_for_one_machine_and_key(engine: Engine) -> None:
    prefix_a, _ = _namespace(None, schema=False)
    prefix_b, _ = _namespace(None, schema=False)
    store_a = _store(engine, prefix_a, None)
    store_b = SQLAlchemyStore(engine, {JobWorkflow.machine: OtherJob}, table_prefix=prefix_b)
    store_b.create_tables()
    runner_a = Runner(JobWorkflow.machine, store_a, clock=ManualClock())
    runner_b = Runner(JobWorkflow.machine, store_b, clock=ManualClock())
    key = f"k-{uuid.uuid4().hex[:6]}"
    start_job(engine, runner_a, key, "advance", "continue_")
    with Session(engine, expire_on_commit=False) as session, session.begin():
        other = OtherJob(id=key)
        session.add(other)
        runner_b.start(other)
    runner_b.fire_by_key(key, "advance", idempotency_key="same-key")
    runner_a.fire_by_key(key, "finish", idempotency_key="same-key")

    events_a = [r.event for r in store_a.history("job", key)]
    events_b = [r.event for r in store_b.history("job", key)]
    assert events_a == ["advance", "continue_", "finish"]
    assert events_b == ["advance"]
    names = set(inspect(engine).get_table_names())
    assert {f"{prefix_a}transitions", f"{prefix_b}transitions"} <= names


@pytest.mark.parametrize("schema", [False, True], ids=["prefix", "schema"])
def test_a_duplicate_history_row_is_a_conflict_under_any_name(
    engine: Engine, space: str | None, schema: bool
) -> None:
    prefix, in_schema = _namespace(space, schema)
    store = _store(engine, prefix, in_schema)
    runner = Runner(JobWorkflow.machine, store, clock=ManualClock())
    key = f"c-{uuid.uuid4().hex[:6]}"
    start_job(engine, runner, key)
    runner.fire_by_key(key, "advance")
    (first,) = store.history("job", key)
    row = {"entity_type": "job", "entity_key": key, **history_row(first)}
    with pytest.raises(IntegrityError) as raised, engine.begin() as conn:
        conn.execute(insert(store.tables.transitions).values(row))
    assert is_conflict(raised.value)


@pytest.mark.parametrize("driver_path", [True, False], ids=["driver", "connection"])
@pytest.mark.parametrize("schema", [False, True], ids=["prefix", "schema"])
def test_a_full_cycle_in_a_namespace(
    engine: Engine, space: str | None, driver_path: bool, schema: bool
) -> None:
    prefix, in_schema = _namespace(space, schema)
    store = _store(engine, prefix, in_schema, driver_path=driver_path)
    on_driver = store._driver.firing(store._binding("job")) is not None
    assert on_driver == (driver_path and engine.dialect.name != "mysql")  # not on MariaDB
    clock = ManualClock()
    runner = Runner(JobWorkflow.machine, store, clock=clock)
    tag = uuid.uuid4().hex[:6]
    stuck, undone = f"s-{tag}", f"u-{tag}"
    start_job(engine, runner, stuck)
    start_job(engine, runner, undone, "advance")

    first = runner.fire_by_key(stuck, "advance", idempotency_key=f"once-{tag}")
    again = runner.fire_by_key(stuck, "advance", idempotency_key=f"once-{tag}")
    assert again == first
    with Session(engine, expire_on_commit=False) as session, session.begin():
        row = session.get(JobRow, stuck)
        assert row is not None
        runner.fire(row, "continue_")

    FAILURES[stuck, "undo_second"] = 3
    try:
        sweeper = Sweeper(
            [runner], clock=clock, backoff=Backoff(base=timedelta(seconds=1), jitter=0)
        )
        clock.advance(minutes=11)
        for _ in range(3):
            sweeper.run_once()
            clock.advance(minutes=1)
    finally:
        FAILURES.clear()

    assert [r.event for r in store.history("job", stuck)] == ["advance", "continue_", "@stuck"]
    assert store.load("job", undone).state == "undone"
    assert store.load("job", stuck).state == "second"
    with engine.connect() as conn:
        outbox = conn.execute(store.tables.compensations.select()).all()
    assert {(r.entity_key, r.action, r.status) for r in outbox} == {
        (undone, "undo_first", "done"),
        (stuck, "undo_second", "dead"),
        (stuck, "undo_first", "pending"),
    }
    assert f"{prefix}transitions" in inspect(engine).get_table_names(schema=in_schema)
    if schema:
        assert f"{prefix}transitions" not in inspect(engine).get_table_names()
    else:
        assert "statekit_transitions" not in inspect(engine).get_table_names()

    bare = ["--schema", str(in_schema)] if schema else []
    namespace = ["--table-prefix", prefix, *bare]
    env = {"STATEKIT_DB": engine.url.render_as_string(hide_password=False)}
    result = CliRunner().invoke(
        cli, ["history", "job", stuck, "-m", "tests.sweep_support", *namespace], env=env
    )
    assert result.exit_code == 0, result.output
    assert "continue_" in result.output
    assert "@stuck" in result.output
    result = CliRunner().invoke(cli, ["stuck", "-m", "tests.sweep_support", *namespace], env=env)
    assert result.exit_code == 0, result.output
    assert f"job {stuck} in second, stuck since" in result.output
    assert undone not in result.output
    env["STATEKIT_TABLE_PREFIX"] = prefix
    result = CliRunner().invoke(cli, ["stuck", "-m", "tests.sweep_support", *bare], env=env)
    assert result.exit_code == 0, result.output
    assert f"job {stuck} in second, stuck since" in result.output


def test_db_sql_prints_the_prefixed_ddl() -> None:
    result = CliRunner().invoke(
        cli, ["db", "sql", "--dialect", "postgresql", "--table-prefix", "shop_", "--schema", "app"]
    )
    assert result.exit_code == 0, result.output
    assert "CREATE TABLE app.shop_transitions" in result.output
    assert "CONSTRAINT pk_shop_transitions PRIMARY KEY" in result.output
    assert "statekit_" not in result.output
