"""Keys, idempotency keys, actors and correlation ids that no database of statekit's can
hold alike: a NUL character (PostgreSQL refuses it in any text column, SQLite and MariaDB
store it) and a lone surrogate (not Unicode text: every driver raised its own
`UnicodeEncodeError`, past the store). Writes refuse them with `StoreError` before
anything is written, and `fire_by_key` answers that no instance has such a key, on every
database the same."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from statekit import (
    InstanceNotFoundError,
    InvalidArgumentError,
    MemoryStore,
    Runner,
    State,
    StoreError,
    UnstorableTextError,
    Workflow,
)
from statekit.store.protocol import Store
from statekit.store.sqlalchemy import SQLAlchemyStore, StateMixin
from tests.sql_support import engine_for

HOSTILE = {"nul": "a\x00b", "surrogate": "a\ud800b"}


class TicketWorkflow(Workflow):
    opened = State(initial=True)
    closed = State(final=True)

    close = opened.to(closed)


class Base(DeclarativeBase):
    pass


class TicketRow(StateMixin, Base):
    __tablename__ = "hostile_tickets"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)


@pytest.fixture(params=["memory", "sql"])
def store(request: pytest.FixtureRequest, database_url: str) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    engine = engine_for(database_url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    sql = SQLAlchemyStore(engine, {TicketWorkflow.machine: TicketRow})
    sql.create_tables()
    yield sql
    Base.metadata.drop_all(engine)
    engine.dispose()


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_key_no_database_can_hold_alike_is_refused_at_start(store: Store, kind: str) -> None:
    runner = Runner(TicketWorkflow.machine, store)
    ticket = TicketRow(id=HOSTILE[kind])
    with pytest.raises(StoreError, match="cannot store a ticket with the key 'a") as caught:
        runner.start(ticket)
    assert type(caught.value) is UnstorableTextError  # alike on every store
    assert (caught.value.argument, caught.value.value) == ("key", HOSTILE[kind])
    assert isinstance(caught.value, InvalidArgumentError)  # the caller's input: a 422
    assert ticket.state is None
    with pytest.raises(StoreError, match="cannot store a ticket"):
        runner.start_many([TicketRow(id="fine"), TicketRow(id=HOSTILE[kind])])
    with pytest.raises(InstanceNotFoundError, match="ticket 'a"):
        runner.fire_by_key(HOSTILE[kind], "close")
    with pytest.raises(InstanceNotFoundError):
        store.load("ticket", "fine")  # start_many stored none of them


@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("option", ["idempotency_key", "actor", "correlation_id"])
def test_labels_no_database_can_hold_alike_are_refused_before_the_write(
    store: Store, kind: str, option: str
) -> None:
    runner = Runner(TicketWorkflow.machine, store)
    runner.start(TicketRow(id="t1"))
    label = option.replace("_", " ")
    with pytest.raises(StoreError, match=f"cannot fire 'close' on ticket t1: its {label} ") as e:
        runner.fire_by_key("t1", "close", **{option: HOSTILE[kind]})
    assert type(e.value) is UnstorableTextError
    assert (e.value.argument, e.value.value) == (option, HOSTILE[kind])
    assert store.history("ticket", "t1") == []
    assert store.load("ticket", "t1").state == "opened"
    assert runner.fire_by_key("t1", "close", **{option: "a\nb ü😀"}).seq == 1
