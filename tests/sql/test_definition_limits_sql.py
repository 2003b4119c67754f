"""A definition at every limit of `statekit.limits` runs on SQLite, PostgreSQL and MariaDB:
the limits are what the columns really hold, not only what the validator says."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from sqlalchemy import Engine, MetaData, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from statekit import (
    Backoff,
    CompensationContext,
    Machine,
    ManualClock,
    Runner,
    State,
    Sweeper,
    Workflow,
)
from statekit.limits import HANDLER_NAME_MAX, INT_MAX, KEY_MAX, NAME_MAX, TIMEOUT_MAX
from statekit.store.sqlalchemy import SQLAlchemyStore, StateMixin
from tests.sweep_support import job_engine

MACHINE = "m" * NAME_MAX
WAITING = "w" * NAME_MAX
EVENT = "e" * NAME_MAX
UNDO = "u" * HANDLER_NAME_MAX
KEY = "k" * KEY_MAX
UNDONE: list[str] = []


def _undo(entity: object, undo: CompensationContext) -> None:
    UNDONE.append(undo.action)


_undo.__name__ = UNDO


def _workflow() -> type[Workflow]:
    """The machine, built with `type` because its attribute names are 64 characters."""
    start, done = State(initial=True), State(final=True)
    waiting = State(timeout=TIMEOUT_MAX)
    namespace: dict[str, Any] = {
        "start": start,
        WAITING: waiting,
        "done": done,
        EVENT: start.to(waiting, compensate=_undo, compensate_attempts=INT_MAX),
        "finish": waiting.to(done),
    }
    kwargs: dict[str, Any] = {"name": MACHINE, "version": INT_MAX, "compensated_state": "done"}
    return type("AtLimits", (Workflow,), namespace, **kwargs)


AtLimits = _workflow()


class Base(DeclarativeBase):
    metadata = MetaData()


class Row(StateMixin, Base):
    __tablename__ = "limit_rows"
    __statekit_machine__: ClassVar[Machine] = AtLimits.machine

    id: Mapped[str] = mapped_column(String(KEY_MAX), primary_key=True)


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    engine = job_engine(database_url, Base.metadata)
    yield engine
    engine.dispose()


def test_a_machine_at_every_limit_is_stored_swept_and_compensated(engine: Engine) -> None:
    UNDONE.clear()
    assert AtLimits.spec.transitions[0].compensation == UNDO
    store = SQLAlchemyStore(engine, {AtLimits.machine: Row})
    clock = ManualClock()
    runner = Runner(AtLimits.machine, store, clock=clock)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        row = Row(id=KEY)
        session.add(row)
        runner.start(row)
    runner.fire_by_key(KEY, EVENT)
    entered = clock.now()
    with Session(engine) as session:
        row = session.get_one(Row, KEY)
        assert (row.state, row.state_definition_version) == (WAITING, INT_MAX)
        assert row.state_deadline_at == entered + TIMEOUT_MAX

    clock.advance(seconds=TIMEOUT_MAX.total_seconds() + 1)
    sweeper = Sweeper([runner], clock=clock, backoff=Backoff(jitter=0))
    result = sweeper.run_once()
    assert (result.marked_stuck, result.compensations_run) == (1, 1)
    assert UNDONE == [UNDO]
    compensations = store.tables.compensations
    with engine.connect() as conn:
        action, attempts = conn.execute(
            select(compensations.c.action, compensations.c.max_attempts)
        ).one()
    assert (action, attempts) == (UNDO, INT_MAX)
    history = [(r.event, r.source, r.target) for r in store.history(MACHINE, KEY)]
    assert history[0] == (EVENT, "start", WAITING)
