"""Batch marking with every kind of entity key, on SQLite, PostgreSQL and MariaDB.

A sweep marks a batch of instances in a few set-based statements. For integer and
text keys the database builds the history rows from the updated rows; other keys
(UUIDs) are written row by row. Both must leave exactly what one-by-one marking
would: the same history rows and one outbox row per step to undo.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, Integer, MetaData, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from statekit import CompensationContext, ManualClock, Runner, State, Sweeper, Workflow
from statekit.compensation import SWEEPER_ACTOR
from statekit.store.sqlalchemy import SQLAlchemyStore, StateMixin
from tests.sql_support import engine_for

UNDONE: list[str] = []


def undo_begin(entity: Any, undo: CompensationContext) -> None:
    UNDONE.append(str(entity.id))


class KeyedWorkflow(Workflow, name="keyed", compensated_state="undone"):
    new = State(initial=True)
    busy = State(timeout=timedelta(minutes=5))
    done = State(final=True)
    undone = State(final=True)

    begin = new.to(busy, compensate=undo_begin, compensate_attempts=2)
    finish = busy.to(done)


class KeyedBase(DeclarativeBase):
    metadata = MetaData()


class IntKeyed(StateMixin, KeyedBase):
    __tablename__ = "int_keyed"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)


class TextKeyed(StateMixin, KeyedBase):
    __tablename__ = "text_keyed"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)


class UuidKeyed(StateMixin, KeyedBase):
    __tablename__ = "uuid_keyed"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)


KEYS = {
    IntKeyed: lambda i: 1000 + i,
    # Quotes, a comma, a backslash and braces: array and JSON literals must escape them.
    TextKeyed: lambda i: f'ticket {i:03d}, "q" \\ {{b}}',
    UuidKeyed: lambda i: uuid.UUID(int=i + 1),
}


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    engine = engine_for(database_url)
    KeyedBase.metadata.create_all(engine)
    SQLAlchemyStore(engine).create_tables()
    yield engine
    engine.dispose()


@pytest.mark.parametrize("entity_class", list(KEYS), ids=lambda c: c.__name__)
def test_a_batch_is_marked_and_compensated_whatever_the_key(
    engine: Engine, entity_class: type[Any]
) -> None:
    UNDONE.clear()
    store = SQLAlchemyStore(engine, {KeyedWorkflow.machine: entity_class})
    clock = ManualClock()
    runner = Runner(KeyedWorkflow.machine, store, clock=clock)
    keys = [KEYS[entity_class](i) for i in range(7)]
    with Session(engine, expire_on_commit=False) as session, session.begin():
        for key in keys:
            row = entity_class(id=key)
            session.add(row)
            runner.start(row)
    for key in keys[:6]:  # the seventh stays in `new`, which has no deadline
        runner.fire_by_key(str(key), "begin")
    clock.advance(minutes=6)

    result = Sweeper([runner], clock=clock, batch_size=4).run_once()

    texts = [str(key) for key in keys[:6]]
    assert (result.claimed, result.marked_stuck, result.compensated) == (6, 6, 6)
    assert sorted(UNDONE) == sorted(texts)
    for text in texts:
        history = store.history("keyed", text)
        assert [(r.seq, r.event, r.source, r.target) for r in history] == [
            (1, "begin", "new", "busy"),
            (2, "@stuck", "busy", "busy"),
            (3, "@compensated", "busy", "undone"),
        ]
        stuck = next(r for r in history if r.event == "@stuck")
        assert stuck.key == text
        assert stuck.actor == SWEEPER_ACTOR
        assert stuck.payload == {"note": "no progress in 'busy' within 5m"}
        assert stuck.at == clock.now()
        tasks = store.compensations("keyed", text)
        assert [(t.step_seq, t.action, t.status, t.max_attempts) for t in tasks] == [
            (1, "undo_begin", "done", 2)
        ]
    assert store.compensations("keyed", str(keys[6])) == []
    assert store.history("keyed", str(keys[6])) == []
