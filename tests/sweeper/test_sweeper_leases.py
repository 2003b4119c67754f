"""Sweepers whose machine clock is ten minutes ahead, and several sweepers draining one
outbox with slow handlers and short leases: nothing runs early, no handler twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.orm import Session

from statekit import CompensationContext, ManualClock, Runner, Sweeper
from statekit.clock import SystemClock
from statekit.store.sqlalchemy import SQLAlchemyStore
from statekit.store.sqlalchemy.draining import DatabaseClock
from tests.sql_support import engine_for, fresh_database
from tests.sweep_support import FAILURES, HOOKS, JobBase, JobRow, JobWorkflow

outside = Table(
    "outside_calls",
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_key", String(64), nullable=False),
    Column("action", String(64), nullable=False),
)
"""Every handler call, committed on its own: what an outside system would see."""

SKEWED = "sweeper-skewed"
LEASE = timedelta(seconds=6)  # well past a 0.4 s handler, also on a loaded machine
HANDLER_SECONDS = 0.4


@pytest.fixture(params=["postgresql", "mariadb"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        engine = engine_for(url)
        JobBase.metadata.create_all(engine)
        SQLAlchemyStore(engine).create_tables()
        outside.create(engine)
        engine.dispose()
        yield url


def _sweeper(url: str) -> Sweeper:
    """A sweeper on its own engine, with the default clock."""
    store = SQLAlchemyStore(engine_for(url), {JobWorkflow.machine: JobRow})
    return Sweeper(
        [Runner(JobWorkflow.machine, store)],
        lease=LEASE,
        handler_timeout=timedelta(seconds=4.5),
    )


def test_the_database_clock_reads_the_server(url: str) -> None:
    engine = engine_for(url)
    query = text(
        "SELECT statement_timestamp()"
        if engine.dialect.name == "postgresql"
        else "SELECT UTC_TIMESTAMP(6)"
    )

    def server() -> datetime:
        with engine.connect() as conn:
            value: datetime = conn.execute(query).scalar_one()
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)

    asking = DatabaseClock(engine, resync=timedelta(0))
    before = server()
    read = asking.now()
    assert before <= read <= server()
    assert read.tzinfo == UTC
    carried = DatabaseClock(engine, resync=timedelta(hours=1))
    first = carried.now()
    assert before <= first <= carried.now()  # carried forward between readings
    engine.dispose()


def _machine_clock_ahead(monkeypatch: pytest.MonkeyPatch, thread: str | None = None) -> None:
    """The system clock reads ten minutes ahead (in the thread named `thread`, or all)."""
    machine_now = SystemClock.now

    def skewed_now(self: SystemClock) -> datetime:
        ahead = thread is None or threading.current_thread().name == thread
        return machine_now(self) + (timedelta(minutes=10) if ahead else timedelta(0))

    monkeypatch.setattr(SystemClock, "now", skewed_now)


def test_a_skewed_machine_clock_fires_no_deadline_early(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = engine_for(url)
    store = SQLAlchemyStore(engine, {JobWorkflow.machine: JobRow})
    database_now = store.database_clock().now()
    # Entered five minutes ago by the database's clock: due in five minutes.
    jobs = Runner(
        JobWorkflow.machine, store, clock=ManualClock(database_now - timedelta(minutes=5))
    )
    for n in range(20):
        with Session(engine, expire_on_commit=False) as session, session.begin():
            row = JobRow(id=f"early-{n:02d}")
            session.add(row)
            jobs.start(row)
    _machine_clock_ahead(monkeypatch)
    sweeper = Sweeper([Runner(JobWorkflow.machine, store)])  # the default clock
    result = sweeper.run_once()
    assert (result.claimed, result.timed_out) == (0, 0)
    assert store.count_by_state("job") == {"new": 20}
    engine.dispose()


def _stuck_jobs(url: str, keys: list[str]) -> None:
    sweeper = _sweeper(url)
    runner = sweeper.runners["job"]
    engine: Engine = runner.store.engine  # type: ignore[attr-defined]
    for key in keys:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            row = JobRow(id=key)
            session.add(row)
            runner.start(row)
        runner.fire_by_key(key, "advance")
        sweeper.compensate("job", key, reason="cancelled by the customer", actor="app")
    engine.dispose()


def _calls(engine: Engine) -> dict[str, int]:
    query = select(outside.c.job_key, func.count()).group_by(outside.c.job_key)
    with engine.connect() as conn:
        return {row[0]: row[1] for row in conn.execute(query)}


def test_slow_handlers_and_a_skewed_clock_never_double_a_call(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    FAILURES.clear()
    now_keys = [f"now-{n:02d}" for n in range(40)]
    later_keys = [f"later-{n}" for n in range(5)]
    _stuck_jobs(url, now_keys + later_keys)
    engine = engine_for(url)
    store = SQLAlchemyStore(engine, {JobWorkflow.machine: JobRow})
    c = store.tables.compensations
    with engine.begin() as conn:  # these are due in five minutes by the database's clock
        scheduled = conn.execute(select(func.max(c.c.next_attempt_at))).scalar_one()
        conn.execute(
            c.update()
            .where(c.c.entity_key.in_(later_keys))
            .values(next_attempt_at=scheduled + timedelta(minutes=5))
        )

    _machine_clock_ahead(monkeypatch, SKEWED)

    def outside_call(job: JobRow, undo: CompensationContext) -> None:
        with engine.begin() as conn:
            conn.execute(insert(outside).values(job_key=job.id, action=undo.action))
        time.sleep(HANDLER_SECONDS)  # a slow outside system

    HOOKS[:] = [outside_call]
    errors: list[BaseException] = []
    finished = threading.Event()

    def open_now_tasks() -> int:
        tasks = store.compensations("job", status=("pending", "running"))
        return sum(1 for t in tasks if t.key in now_keys)

    def sweep() -> None:
        sweeper = _sweeper(url)
        try:
            deadline = time.monotonic() + 120
            while not finished.is_set() and time.monotonic() < deadline:
                sweeper.run_once()
                if open_now_tasks() == 0:
                    finished.set()
                finished.wait(0.05)
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
            finished.set()
        finally:
            sweeper.runners["job"].store.engine.dispose()  # type: ignore[attr-defined]

    threads = [
        threading.Thread(target=sweep, name=name) for name in ("sweeper-a", "sweeper-b", SKEWED)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(180)
    finally:
        HOOKS.clear()
    assert errors == []
    calls = _calls(engine)
    doubled = sorted(key for key, count in calls.items() if count > 1)
    early = sorted(key for key in later_keys if key in calls)
    assert (doubled, early) == ([], [])
    assert sorted(calls) == now_keys  # every due handler called, exactly once
    statuses = {t.key: t.status for t in store.compensations("job")}
    assert {statuses[k] for k in now_keys} == {"done"}
    assert {statuses[k] for k in later_keys} == {"pending"}
    engine.dispose()
