"""One bad overdue instance never stops the sweeper (SQLite, PostgreSQL, MariaDB).

Each poison kind sits in front of 30 healthy overdue instances (earliest deadline,
so it is claimed first, in the first batch): 15 whose timeout event fires and 15
that are marked stuck and compensated. The pass must process all 30, set the poison
row aside (stuck marker with its error, deadline pushed back by the backoff), not
retry it before the backoff ends, and retry it after.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import ClassVar

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, MetaData, String, delete, insert, select, text, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from statekit import (
    Backoff,
    CompensationContext,
    Context,
    Listener,
    Machine,
    ManualClock,
    Runner,
    Snapshot,
    State,
    Sweeper,
    Workflow,
)
from statekit.cli import cli
from statekit.limits import KEY_MAX
from statekit.store.sqlalchemy import SQLAlchemyStore, StateMixin
from statekit.store.sqlalchemy.tables import statekit_tables
from tests.processes import together
from tests.sql_support import engine_for
from tests.sweep_support import (
    JobRow,
    JobWorkflow,
    clear_jobs,
    job_engine,
    start_entity,
    start_job,
)

UNDONE: list[str] = []


def not_poisoned_guard(item: Item, ctx: Context) -> bool | str:
    if item.mode == "guard-raises":
        raise RuntimeError(f"the guard of {item.id} blew up")
    if item.mode == "guard-refuses":  # a reason longer than the stuck_reason column
        return "refused: " + "because " * 20
    return True


def expire_action(item: Item, ctx: Context) -> None:
    if item.mode == "action-raises":
        raise RuntimeError(f"the action of {item.id} blew up")
    item.mode = "expired"


def undo_park(item: Item, undo: CompensationContext) -> None:
    UNDONE.append(item.id)


class PoisonWorkflow(Workflow, name="poisoned", compensated_state="undone"):
    waiting = State(initial=True, timeout=timedelta(minutes=10), on_timeout="expire")
    parked = State(timeout=timedelta(minutes=10))
    expired = State(final=True)
    undone = State(final=True)

    expire = waiting.to(expired, guard=not_poisoned_guard, action=expire_action)
    park = waiting.to(parked, compensate=undo_park)
    finish = parked.to(expired)


class Base(DeclarativeBase):
    metadata = MetaData()


class Item(StateMixin, Base):
    __tablename__ = "poison_items"
    __statekit_machine__: ClassVar[Machine] = PoisonWorkflow.machine

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # longer than history's
    mode: Mapped[str] = mapped_column(String(32), default="ok")
    stuck_reason: Mapped[str | None] = mapped_column(String(100))  # the app's, not Text


LONG_KEY = "k" * 150  # statekit_transitions.entity_key is VARCHAR(128)
POISON = "p-0"
PARKED = "p-parked"


def _item_update(store: SQLAlchemyStore, key: str, **values: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(Item).where(Item.id == key).values(**values))


def _colliding_history(store: SQLAlchemyStore, key: str) -> None:
    """History left by an earlier instance with the same key, at the row's next seq."""
    version = _row(store, key).state_version
    with store.engine.begin() as conn:
        conn.execute(
            insert(store.tables.transitions).values(
                entity_type="poisoned",
                entity_key=key,
                seq=version + 1,
                event="expire",
                source="waiting",
                target="expired",
                at=ManualClock().now(),
            )
        )


def _drop_colliding_history(store: SQLAlchemyStore, key: str) -> None:
    t = store.tables.transitions
    with store.engine.begin() as conn:
        conn.execute(delete(t).where(t.c.entity_key == key, t.c.event == "expire"))


Poison = Callable[[SQLAlchemyStore, str], None]


def _columns(bad: dict[str, object], good: dict[str, object]) -> tuple[Poison, Poison]:
    """Set the row's columns to `bad` values, and back to `good` ones."""
    return (lambda s, k: _item_update(s, k, **bad)), (lambda s, k: _item_update(s, k, **good))


KINDS: dict[str, tuple[str, Poison, Poison | None]] = {
    # kind: (key, make it poison, fix it again or None); POISON is in `waiting`, PARKED in
    # `parked` (marked stuck set-based, with the healthy ones of its batch)
    "unknown state": (POISON, *_columns({"state": "vanished"}, {"state": "waiting"})),
    "unaccepted definition version": (
        POISON,
        *_columns({"state_definition_version": 99}, {"state_definition_version": 1}),
    ),
    "guard raises": (POISON, *_columns({"mode": "guard-raises"}, {"mode": "ok"})),
    "action raises": (POISON, *_columns({"mode": "action-raises"}, {"mode": "ok"})),
    "key too long for history": (LONG_KEY, lambda s, k: None, None),
    "history of another instance": (POISON, _colliding_history, _drop_colliding_history),
    "history of another instance when marked stuck": (
        PARKED,
        _colliding_history,
        _drop_colliding_history,
    ),
    "stuck reason too long for the column": (
        POISON,
        *_columns({"mode": "guard-refuses"}, {"mode": "ok"}),
    ),
}
SQLITE_IGNORES_LENGTHS = {"key too long for history", "stuck reason too long for the column"}


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    engine = job_engine(database_url, Base.metadata)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine) -> Iterator[SQLAlchemyStore]:
    UNDONE.clear()
    yield SQLAlchemyStore(engine, {PoisonWorkflow.machine: Item})
    clear_jobs(engine, Base.metadata)


def _create(store: SQLAlchemyStore, runner: Runner, key: str, *events: str) -> None:
    if len(key) > KEY_MAX:  # Runner.start refuses it: the application inserted it itself
        item = Item(id=key)
        runner.machine.start(item, now=runner.clock.now())
        with Session(store.engine) as session, session.begin():
            session.add(item)
        return
    start_entity(store.engine, runner, Item(id=key), *events)


class SetAside(Listener):
    def __init__(self) -> None:
        self.seen: list[tuple[Snapshot, BaseException]] = []

    def on_set_aside(self, snapshot: Snapshot, error: BaseException) -> None:
        self.seen.append((snapshot, error))


def _row(store: SQLAlchemyStore, key: str) -> Item:
    with Session(store.engine, expire_on_commit=False) as session:
        found = session.get(Item, key)
    assert found is not None
    return found


@pytest.mark.parametrize("kind", list(KINDS))
def test_one_poison_row_never_stops_the_sweep(
    store: SQLAlchemyStore, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    key, poison, fix = KINDS[kind]
    clock = ManualClock()
    runner = Runner(PoisonWorkflow.machine, store, clock=clock)
    _create(store, runner, key, *(["park"] if key == PARKED else []))  # claimed first
    poison(store, key)
    clock.advance(minutes=1)
    waiting = [f"w-{i:02d}" for i in range(15)]
    parked = [f"s-{i:02d}" for i in range(15)]
    for healthy in waiting:
        _create(store, runner, healthy)
    for healthy in parked:
        _create(store, runner, healthy, "park")
    clock.advance(minutes=11)
    backoff = Backoff(base=timedelta(seconds=30), cap=timedelta(minutes=10), jitter=0)
    hooks = SetAside()
    sweeper = Sweeper([runner], clock=clock, batch_size=10, backoff=backoff, listeners=[hooks])
    before = _row(store, key)

    with caplog.at_level(logging.WARNING, logger="statekit.sweeper"):
        result = sweeper.run_once()

    states = {k: _row(store, k).state for k in waiting + parked}
    assert sum(states[k] == "expired" for k in waiting) == 15, states
    assert sum(states[k] == "undone" for k in parked) == 15, states
    assert sorted(UNDONE) == parked
    after = _row(store, key)
    if kind in SQLITE_IGNORES_LENGTHS and store.engine.dialect.name == "sqlite":
        # SQLite does not enforce VARCHAR lengths: no poison there, handled like the rest.
        assert result.set_aside == 0
        assert result.timed_out + result.marked_stuck == 31
        return
    assert (result.timed_out, result.marked_stuck, result.compensated) == (15, 15, 15)
    assert result.set_aside == 1
    assert (after.state, after.state_version) == (before.state, before.state_version)
    assert after.state_entered_at == before.state_entered_at
    assert after.stuck_at == clock.now()
    assert after.state_deadline_at == clock.now() + timedelta(seconds=30)
    assert after.stuck_reason is not None
    assert after.stuck_reason.startswith("set aside by the")
    listed = {snapshot.key: snapshot.stuck_reason for snapshot, _ in sweeper.stuck()}
    assert listed[key] == after.stuck_reason
    assert any(key in r.getMessage() and "set aside" in r.getMessage() for r in caplog.records)
    [(seen, error)] = hooks.seen
    assert seen.key == key
    assert f"{type(error).__name__}: " in after.stuck_reason

    # Not retried before its backoff ends...
    assert sweeper.run_once().claimed == 0
    clock.advance(seconds=31)
    # ...retried after it, and set aside again for longer while still bad.
    again = sweeper.run_once()
    assert (again.claimed, again.set_aside) == (1, 1)
    row = _row(store, key)
    assert row.state_deadline_at is not None
    assert row.state_deadline_at - clock.now() == timedelta(seconds=31)
    assert row.stuck_at == after.stuck_at  # the first failure, which the backoff grows from
    if fix is None:
        return
    fix(store, key)
    clock.advance(minutes=1)
    fixed = sweeper.run_once()
    assert (fixed.claimed, fixed.set_aside) == (1, 0)
    row = _row(store, key)
    if key == PARKED:  # marked stuck, then compensated like the healthy parked ones
        assert (fixed.marked_stuck, fixed.compensated, row.state) == (1, 1, "undone")
        return
    assert fixed.timed_out == 1
    assert (row.state, row.stuck_at, row.stuck_reason) == ("expired", None, None)


@pytest.fixture
def sqlite_jobs(tmp_path: object) -> Iterator[str]:
    url = f"sqlite+pysqlite:///{tmp_path}/jobs.db"
    engine = job_engine(url)
    clock = ManualClock()
    runner = Runner(JobWorkflow.machine, SQLAlchemyStore(engine, {JobWorkflow.machine: JobRow}))
    for key in ("bad", "clash", "good"):
        start_job(engine, runner, key)
    with engine.begin() as conn:
        conn.execute(update(JobRow).where(JobRow.id == "bad").values(state="vanished"))
        conn.execute(update(JobRow).values(state_deadline_at=clock.now()))
        conn.execute(  # history an earlier job "clash" left behind
            insert(statekit_tables().transitions).values(
                entity_type="job",
                entity_key="clash",
                seq=1,
                event="advance",
                source="new",
                target="first",
                at=clock.now(),
            )
        )
    yield url
    clear_jobs(engine)
    engine.dispose()


def test_sweep_once_exits_0_and_reports_the_row_it_set_aside(sqlite_jobs: str) -> None:
    runner = CliRunner()
    env = {"STATEKIT_DB": sqlite_jobs}
    swept = runner.invoke(cli, ["sweep", "--once", "-m", "tests.sweep_support"], env=env)
    assert swept.exit_code == 0, swept.output
    assert "timed out 1" in swept.output
    assert "set aside 2" in swept.output
    listed = runner.invoke(cli, ["stuck", "-m", "tests.sweep_support"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "job bad in vanished" in listed.output
    assert "set aside by the sweeper" in listed.output
    assert "'vanished'" in listed.output
    shown = runner.invoke(cli, ["history", "job", "clash", "-m", "tests.sweep_support"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "STUCK     since" in shown.output
    assert "set aside by the sweeper" in shown.output
    assert "ConcurrentTransitionError" in shown.output
    engine = engine_for(sqlite_jobs)
    with engine.connect() as conn:
        states = dict(conn.execute(select(JobRow.id, JobRow.state)).all())
    engine.dispose()
    assert states == {"bad": "vanished", "clash": "new", "good": "expired"}


def test_an_instance_that_cannot_even_be_set_aside_is_skipped(
    sqlite_jobs: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = engine_for(sqlite_jobs)
    with engine.begin() as conn:  # the application refuses statekit's set-aside write
        conn.execute(
            text(
                "CREATE TRIGGER no_aside BEFORE UPDATE OF stuck_reason ON jobs "
                "WHEN NEW.stuck_reason LIKE 'set aside%' "
                "BEGIN SELECT RAISE(ABORT, 'jobs are never set aside'); END"
            )
        )
    store = SQLAlchemyStore(engine, {JobWorkflow.machine: JobRow})
    sweeper = Sweeper([Runner(JobWorkflow.machine, store)])
    with caplog.at_level(logging.ERROR, logger="statekit.sweeper"):
        result = sweeper.run_once()
    with engine.connect() as conn:
        states = dict(conn.execute(select(JobRow.id, JobRow.state)).all())
    engine.dispose()
    assert (result.timed_out, result.set_aside) == (1, 0)
    assert states == {"bad": "vanished", "clash": "new", "good": "expired"}
    skipped = [m for m in caplog.messages if "could not be set aside" in m]
    assert len(skipped) == 2
    assert all("jobs are never set aside" in m for m in skipped)


@pytest.fixture(scope="module")
def jobs_engine(database_url: str) -> Iterator[Engine]:
    engine = job_engine(database_url)
    yield engine
    engine.dispose()


@pytest.mark.slow
def test_two_sweeper_processes_set_each_poison_row_aside_once_and_do_the_rest(
    jobs_engine: Engine,
) -> None:
    runner = Runner(
        JobWorkflow.machine,
        SQLAlchemyStore(jobs_engine, {JobWorkflow.machine: JobRow}),
        clock=ManualClock(),  # deadlines in January 2026: overdue by the workers' clock
    )
    bad = [f"bad-{i}" for i in range(6)]
    good = [f"good-{i:03d}" for i in range(240)]
    for key in bad + good:
        start_job(jobs_engine, runner, key)
    with jobs_engine.begin() as conn:  # the bad ones first, by deadline
        conn.execute(update(JobRow).where(JobRow.id.in_(bad)).values(state="vanished"))
        conn.execute(
            update(JobRow)
            .where(JobRow.id.in_(bad))
            .values(state_deadline_at=ManualClock().now() - timedelta(days=1))
        )
    url = jobs_engine.url.render_as_string(hide_password=False)
    try:
        results = together("sweep", 2, url=url, batch_size=20)
        with jobs_engine.connect() as conn:
            rows = conn.execute(select(JobRow.id, JobRow.state, JobRow.stuck_reason)).all()
        assert sum(r["timed_out"] for r in results) == len(good)
        assert sum(r["set_aside"] for r in results) == len(bad)
        assert {key for key, state, _ in rows if state == "expired"} == set(good)
        aside = {key for key, _, reason in rows if (reason or "").startswith("set aside")}
        assert aside == set(bad)
    finally:
        clear_jobs(jobs_engine)
