"""The jobs of `sweep_support` on a real database, as the sweeper tests drive them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from statekit import Backoff, Listener, ManualClock, Runner, Sweeper
from statekit.store.sqlalchemy import SQLAlchemyStore
from tests.sql_support import engine_for
from tests.sweep_support import FAILURES, JobBase, JobRow, JobWorkflow, call_counts


@contextmanager
def job_database(url: str) -> Iterator[Engine]:
    """An engine on `url` with the job and statekit tables created; disposed after."""
    engine = engine_for(url)
    JobBase.metadata.create_all(engine)
    SQLAlchemyStore(engine).create_tables()
    yield engine
    engine.dispose()


def job_env(engine: Engine, backoff: Backoff, hooks: Listener | None = None) -> JobEnv:
    """A fresh environment: manual clock, job runner, sweeper (batches of 3)."""
    FAILURES.clear()
    store = SQLAlchemyStore(engine, {JobWorkflow.machine: JobRow})
    clock = ManualClock()
    jobs = Runner(JobWorkflow.machine, store, clock=clock)
    listeners = [] if hooks is None else [hooks]
    sweeper = Sweeper([jobs], clock=clock, batch_size=3, backoff=backoff, listeners=listeners)
    return JobEnv(engine, store, clock, jobs, sweeper, hooks)


def clear_job_tables(engine: Engine, store: SQLAlchemyStore) -> None:
    """Delete every row a test left in the job and statekit tables."""
    with engine.begin() as conn:
        for table in (
            store.tables.attempts,
            store.tables.compensations,
            store.tables.transitions,
            *JobBase.metadata.sorted_tables,
        ):
            conn.execute(table.delete())


@dataclass
class JobEnv:
    """A store, a manual clock, a job runner and a sweeper over one database."""

    engine: Engine
    store: SQLAlchemyStore
    clock: ManualClock
    jobs: Runner
    sweeper: Sweeper
    hooks: Any = None

    def job(self, key: str, *events: str, frozen: bool = False) -> None:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            row = JobRow(id=key, frozen=frozen)
            session.add(row)
            self.jobs.start(row)
        for event in events:
            self.jobs.fire_by_key(key, event)

    def stuck(self, key: str, *events: str) -> None:
        """A job that completed `events` and was then marked stuck (not yet drained)."""
        self.job(key, *events)
        self.sweeper.compensate("job", key, reason="test", actor="app")

    def row(self, key: str) -> JobRow:
        with Session(self.engine, expire_on_commit=False) as session:
            found = session.get(JobRow, key)
        assert found is not None
        return found

    def events(self, key: str) -> list[str]:
        return [r.event for r in self.store.history("job", key)]

    def statuses(self, key: str) -> list[tuple[str, str, int]]:
        return [(t.action, t.status, t.attempts) for t in self.store.compensations("job", key)]

    def calls(self) -> dict[tuple[str, str], int]:
        with self.engine.connect() as conn:
            return call_counts(conn)
