"""What the sweep benchmark sweeps: the job machine, its table, the rows it holds, and
the database handle the contestants share."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, MetaData, String, create_engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from statekit import CompensationContext, ManualClock, Runner, State, Sweeper, Workflow
from statekit.store.sqlalchemy import SQLAlchemyStore, StateMixin, sqlite_engine

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
"""The sweepers' clock: every overdue deadline lies in the hour before it."""
EARLY = NOW - timedelta(hours=2)
"""A moment at which nothing is due yet (the empty poll)."""

BATCH = 500
"""Instances per claim and per transaction, for statekit and raw SQL alike."""
DRAIN_LIMIT = 2_000
"""The drain is timed once per database, over this many compensations at most."""
TIMEOUT = timedelta(minutes=30)
REASON = "no progress in 'running' within 30m"


@dataclass(frozen=True)
class Size:
    """How many rows the table holds and how many of them are overdue."""

    total: int
    overdue: int

    @property
    def step(self) -> int:
        """Every `step`-th id is overdue."""
        return self.total // self.overdue

    def overdue_ids(self) -> range:
        return range(self.step, self.step * self.overdue + 1, self.step)


FULL = Size(1_000_000, 10_000)
QUICK = Size(100_000, 1_000)


def quiet() -> None:
    """statekit logs a warning per stuck instance; an application would route it to a
    handler. Give it a handler that drops it, so no run pays for writing to a terminal."""
    logger = logging.getLogger("statekit")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


# -- the machine and its table -----------------------------------------------------------


def release_slot(job: SweepJob, undo: CompensationContext) -> None:
    """Compensation of `start`: give the worker slot back."""
    job.slot = None


class SweepJobWorkflow(Workflow, name="sweep_job", compensated_state="released"):
    """queued --start--> running --finish--> done; a job in `running` for 30 minutes
    is stuck, and `start` is undone by `release_slot`."""

    queued = State(initial=True)
    running = State(timeout=TIMEOUT)
    done = State(final=True)
    released = State(final=True)

    start = queued.to(running, compensate=release_slot, compensate_attempts=3)
    finish = running.to(done)


class SweepBase(DeclarativeBase):
    metadata = MetaData()


class SweepJob(StateMixin, SweepBase):
    """A job row: the key, a worker slot and statekit's state columns."""

    __tablename__ = "sweep_jobs"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    slot: Mapped[int | None] = mapped_column()
    queue: Mapped[str] = mapped_column(String(32), default="default")


MACHINE = SweepJobWorkflow.machine
NAME = MACHINE.name
JOB_COLUMNS = (
    "id",
    "slot",
    "queue",
    "state",
    "state_version",
    "state_entered_at",
    "state_deadline_at",
    "state_definition_version",
)
HISTORY_COLUMNS = ("entity_type", "entity_key", "seq", "event", "source", "target", "at", "actor")


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def overdue_deadline(job_id: int) -> datetime:
    """The deadline of overdue job `job_id`: spread over the hour before NOW."""
    return NOW - timedelta(seconds=1 + (job_id * 7919) % 3599)


def job_rows(size: Size) -> Iterator[tuple[Any, ...]]:
    """Every job row (naive UTC datetimes, as statekit stores them): the overdue ones
    `running` since 30 minutes before their deadline; a third of the others `running`
    with a deadline up to a day ahead, a third `done`, a third `queued` (no deadline)."""
    now = _naive(NOW)
    second = timedelta(seconds=1)
    for i in range(1, size.total + 1):
        if i % size.step == 0 and i <= size.step * size.overdue:
            deadline = _naive(overdue_deadline(i))
            yield (i, i % 64, "default", "running", 1, deadline - TIMEOUT, deadline, 1)
        elif i % 3 == 0:
            deadline = now + second * (60 + i % 86_400)
            yield (i, i % 64, "default", "running", 1, deadline - TIMEOUT, deadline, 1)
        elif i % 3 == 1:
            yield (i, None, "default", "done", 2, now - second * (i % 86_400), None, 1)
        else:
            yield (i, None, "default", "queued", 0, now - second * (i % 3_600), None, 1)


def history_rows(size: Size) -> Iterator[tuple[Any, ...]]:
    """The completed `start` step of every overdue job (what its compensation undoes)."""
    for i in size.overdue_ids():
        at = _naive(overdue_deadline(i) - TIMEOUT)
        yield (NAME, str(i), 1, "start", "queued", "running", at, "loader")


# -- databases ---------------------------------------------------------------------------


@dataclass
class Database:
    """One loaded database and what the contestants share."""

    label: str
    url: str
    engine: Engine
    size: Size
    store: SQLAlchemyStore = field(init=False)

    def __post_init__(self) -> None:
        self.store = SQLAlchemyStore(self.engine, {MACHINE: SweepJob})

    @property
    def postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def sweeper(self, clock_at: datetime = NOW) -> tuple[Sweeper, Runner]:
        clock = ManualClock(clock_at)
        runner = Runner(MACHINE, self.store, clock=clock)
        return Sweeper([runner], clock=clock, batch_size=BATCH), runner


def make_engine(url: str) -> Engine:
    """statekit's SQLite configuration for SQLite files, a plain engine otherwise."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return sqlite_engine(parsed.database or "")
    return create_engine(url)
