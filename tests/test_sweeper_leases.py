"""Sweepers whose machine clock is ten minutes ahead, and several sweepers draining one
outbox with slow handlers and short leases: nothing runs early, no handler twice."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table
from sqlalchemy.orm import Session

from statekit import ManualClock, Runner, Sweeper
from statekit.clock import SystemClock
from statekit.store.sqlalchemy import SQLAlchemyStore
from tests.sql_support import engine_for, fresh_database
from tests.sweep_support import JobBase, JobRow, JobWorkflow

outside = Table(
    "outside_calls",
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_key", String(64), nullable=False),
    Column("action", String(64), nullable=False),
)
"""Every handler call, committed on its own: what an outside system would see."""

SKEWED = "sweeper-skewed"
LEASE = timedelta(seconds=2)
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
