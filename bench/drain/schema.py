"""What the drain benchmark drains: 2,000 stuck jobs, one scheduled compensation each,
and the handler that undoes their step (a no-op write, or a 50 ms remote call first)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import Engine, MetaData, Table, create_engine, insert, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from statekit import CompensationContext, ManualClock, Runner, State, Sweeper, Workflow
from statekit.store.sqlalchemy import SQLAlchemyStore, StateMixin, sqlite_engine

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
"""Every contestant's clock: each compensation is due a second before it."""
TASKS = 2_000
LEASE = timedelta(minutes=5)
REMOTE_CALL = {"seconds": 0.0}
"""How long each handler waits before it writes (a refund call): set per run."""


def quiet() -> None:
    """Drop statekit's log lines so no run pays for a terminal."""
    logger = logging.getLogger("statekit")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


def release_slot(job: DrainJob, undo: CompensationContext) -> None:
    """Compensation of `start`: call the outside system, then give the slot back."""
    if REMOTE_CALL["seconds"]:
        time.sleep(REMOTE_CALL["seconds"])
    job.slot = None


class DrainJobWorkflow(Workflow, name="drain_job", compensated_state="released"):
    """queued --start--> running --finish--> done; `start` is undone by `release_slot`."""

    queued = State(initial=True)
    running = State()
    done = State(final=True)
    released = State(final=True)

    start = queued.to(running, compensate=release_slot, compensate_attempts=3)
    finish = running.to(done)


class DrainBase(DeclarativeBase):
    metadata = MetaData()


class DrainJob(StateMixin, DrainBase):
    """A job row: the key, a worker slot and statekit's state columns."""

    __tablename__ = "drain_jobs"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    slot: Mapped[int | None] = mapped_column()


DRAIN_JOBS = cast(Table, DrainJob.__table__)
"""The jobs' table (declared with the class, so always a `Table`)."""

MACHINE = DrainJobWorkflow.machine
NAME = MACHINE.name


def make_engine(url: str, pool: int = 5) -> Engine:
    """statekit's SQLite configuration for SQLite files, a plain engine otherwise; room
    in the pool for `pool` connections at once."""
    parsed = make_url(url)
    extra = max(pool + 2 - 5, 0)
    if parsed.get_backend_name() == "sqlite":
        return sqlite_engine(parsed.database or "", pool_size=5 + extra)
    return create_engine(url, pool_size=5 + extra)


@dataclass
class Database:
    """One database with the jobs' and statekit's tables, and what runs on it."""

    url: str
    engine: Engine
    store: SQLAlchemyStore = field(init=False)

    def __post_init__(self) -> None:
        self.store = SQLAlchemyStore(self.engine, {MACHINE: DrainJob})

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def sweeper(self, concurrency: int = 1) -> Sweeper:
        clock = ManualClock(NOW)
        runner = Runner(MACHINE, self.store, clock=clock)
        return Sweeper([runner], clock=clock, lease=LEASE, concurrency=concurrency)

    def create(self) -> None:
        DrainBase.metadata.create_all(self.engine)
        self.store.create_tables()

    def load(self, tasks: int = TASKS) -> None:
        """Empty the tables, then `tasks` jobs stuck in `running`, each with its `start`
        and `@stuck` history rows and one pending compensation, due now."""
        t, c = self.store.tables.transitions, self.store.tables.compensations
        since, due = NOW - timedelta(hours=1), NOW - timedelta(seconds=1)
        with self.engine.begin() as conn:
            for table in (self.store.tables.attempts, c, t, DRAIN_JOBS):
                conn.execute(table.delete())
            conn.execute(
                insert(DRAIN_JOBS),
                [
                    {
                        "id": i,
                        "slot": i % 64,
                        "state": "running",
                        "state_version": 2,
                        "state_entered_at": since,
                        "state_definition_version": 1,
                        "stuck_at": due,
                        "stuck_reason": "bench",
                    }
                    for i in range(1, tasks + 1)
                ],
            )
            conn.execute(
                insert(t),
                [
                    {
                        "entity_type": NAME,
                        "entity_key": str(i),
                        "seq": seq,
                        "event": event,
                        "source": source,
                        "target": "running",
                        "at": since,
                        "actor": "loader",
                        "definition_version": 1,
                    }
                    for i in range(1, tasks + 1)
                    for seq, event, source in ((1, "start", "queued"), (2, "@stuck", "running"))
                ],
            )
            conn.execute(
                insert(c),
                [
                    {
                        "entity_type": NAME,
                        "entity_key": str(i),
                        "step_seq": 1,
                        "action": "release_slot",
                        "event": "start",
                        "status": "pending",
                        "attempts": 0,
                        "max_attempts": 3,
                        "next_attempt_at": due,
                        "created_at": due,
                        "updated_at": due,
                    }
                    for i in range(1, tasks + 1)
                ],
            )
        if self.dialect == "postgresql":
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE")

    def check(self, tasks: int = TASKS) -> list[str]:
        """What is wrong after a drain: every job released once, every task done once."""
        from sqlalchemy import func, select

        c, a = self.store.tables.compensations, self.store.tables.attempts
        problems = []
        with self.engine.connect() as conn:
            states: dict[str, int] = dict(
                conn.execute(select(DrainJob.state, func.count()).group_by(DrainJob.state)).all()
            )
            done = conn.execute(
                select(func.count()).where(c.c.status == "done", c.c.attempts == 1)
            ).scalar()
            attempts = conn.execute(select(func.count()).select_from(a)).scalar()
            slots = conn.execute(select(func.count()).where(DrainJob.slot.is_not(None))).scalar()
        if states != {"released": tasks}:
            problems.append(f"job states {states}")
        if done != tasks or attempts != tasks:
            problems.append(f"{done} tasks done on their first attempt, {attempts} attempt rows")
        if slots:
            problems.append(f"{slots} slots never released")
        return problems


def make_database(url: str, pool: int = 5) -> Database:
    return Database(url, make_engine(url, pool))
