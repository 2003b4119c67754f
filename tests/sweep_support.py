"""A small machine for the sweeper tests, whose compensations count their calls.

Handlers write their call into `job_calls` through the entity's own transaction, so
a call counts only if the compensation committed; "exactly once" is then a query.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import timedelta
from typing import ClassVar

from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, object_session

from statekit import CompensationContext, Context, Machine, Runner, State, Workflow
from statekit.store.sqlalchemy import SQLAlchemyStore, StateMixin
from statekit.store.sqlalchemy.tables import statekit_tables

FAILURES: dict[tuple[str, str], int] = {}
"""(key, action) -> how many more attempts of that compensation should fail."""

HOOKS: list[Callable[[JobRow, CompensationContext], None]] = []
"""Called at the start of every handler call, before it writes anything (tests use
them to block a handler, slow it down or count calls outside its transaction)."""


def _slow_calls_logged_to(path: str, seconds: float) -> None:
    """In a sweeper process: log each handler call to `path`, then take `seconds`."""

    def log_and_wait(job: JobRow, undo: CompensationContext) -> None:
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"{job.id} {undo.action}\n")
        time.sleep(seconds)  # a slow outside system

    HOOKS.append(log_and_wait)


if os.environ.get("STATEKIT_TEST_CALL_LOG"):  # set by tests that spawn `statekit sweep`
    _slow_calls_logged_to(
        os.environ["STATEKIT_TEST_CALL_LOG"],
        float(os.environ.get("STATEKIT_TEST_HANDLER_SECONDS", "0")),
    )


class JobBase(DeclarativeBase):
    metadata = MetaData()


calls = Table(
    "job_calls",
    JobBase.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_key", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
)


def _record_call(job: JobRow, undo: CompensationContext) -> None:
    for hook in list(HOOKS):
        hook(job, undo)
    session = object_session(job)
    assert session is not None, "compensations run in the entity's transaction"
    session.connection().execute(
        insert(calls).values(job_key=job.id, action=undo.action, attempt=undo.attempt)
    )
    remaining = FAILURES.get((job.id, undo.action), 0)
    if remaining:
        FAILURES[job.id, undo.action] = remaining - 1
        raise RuntimeError(f"{undo.action} of {job.id} is down (attempt {undo.attempt})")


def undo_first(job: JobRow, undo: CompensationContext) -> None:
    """Compensation of `advance`."""
    _record_call(job, undo)
    job.undone = (job.undone or "") + "1"


def undo_second(job: JobRow, undo: CompensationContext) -> None:
    """Compensation of `continue_`."""
    _record_call(job, undo)
    job.undone = (job.undone or "") + "2"


def not_frozen(job: JobRow, ctx: Context) -> bool | str:
    """Guard of `expire`."""
    return not job.frozen or "the job is frozen"


class JobWorkflow(Workflow, name="job", compensated_state="undone"):
    """new -> first -> second -> done; new expires after 10 minutes; first and second
    get stuck after 10 minutes and are compensated back."""

    new = State(initial=True, timeout=timedelta(minutes=10), on_timeout="expire")
    first = State(timeout=timedelta(minutes=10))
    second = State(timeout=timedelta(minutes=10))
    done = State(final=True)
    expired = State(final=True)
    undone = State(final=True)

    expire = new.to(expired, guard=not_frozen)
    advance = new.to(first, compensate=undo_first, compensate_attempts=5)
    continue_ = first.to(second, compensate=undo_second, compensate_attempts=3)
    finish = second.to(done)


class JobRow(StateMixin, JobBase):
    """A job row."""

    __tablename__ = "jobs"
    __statekit_machine__: ClassVar[Machine] = JobWorkflow.machine

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    frozen: Mapped[bool] = mapped_column(default=False)
    undone: Mapped[str | None] = mapped_column(String(16))


def call_counts(conn: Connection) -> dict[tuple[str, str], int]:
    """How many committed calls each (job, action) has."""
    rows = conn.execute(
        select(calls.c.job_key, calls.c.action, func.count()).group_by(
            calls.c.job_key, calls.c.action
        )
    ).all()
    return {(row[0], row[1]): row[2] for row in rows}


def job_engine(url: str, metadata: MetaData = JobBase.metadata) -> Engine:
    """An engine on `url` with the tables of `metadata` and statekit's created."""
    from tests.sql_support import engine_for

    engine = engine_for(url)
    metadata.create_all(engine)
    SQLAlchemyStore(engine).create_tables()
    return engine


def clear_jobs(engine: Engine, metadata: MetaData = JobBase.metadata) -> None:
    """Delete every row of statekit's tables and of `metadata`'s (between tests
    sharing a database)."""
    tables = statekit_tables()
    with engine.begin() as conn:
        for table in (
            tables.attempts,
            tables.compensations,
            tables.transitions,
            *metadata.sorted_tables,
        ):
            conn.execute(table.delete())


def start_entity(engine: Engine, runner: Runner, entity: object, *events: str) -> None:
    """Add `entity`, start it and fire `events` on it, each in its own transaction."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        session.add(entity)
        runner.start(entity)
    key = runner.machine.key_of(entity)
    for event in events:
        runner.fire_by_key(key, event)


def start_job(engine: Engine, runner: Runner, key: str, *events: str) -> None:
    """Create job `key`, start it and fire `events` on it."""
    start_entity(engine, runner, JobRow(id=key), *events)
