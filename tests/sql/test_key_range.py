"""An integer key outside the key column's range names no instance: `load`,
`fire_by_key`, `store.transaction`, `delete` and Flask's `get_or_404` answer
`InstanceNotFoundError` on every database. SQLite's driver raised a raw
`OverflowError` past 2**63 and PostgreSQL refused the SELECT (`StoreError`, and the
request's Session left in a failed transaction), while MariaDB answered not found."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import BigInteger, SmallInteger
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from statekit import InstanceNotFoundError, Runner, State, UnstorableTextError, Workflow
from statekit.store.sqlalchemy import SQLAlchemyStore, StateMixin
from tests.sql_support import engine_for


class LampWorkflow(Workflow):
    off = State(initial=True)
    on = State(final=True)

    switch = off.to(on)


class Base(DeclarativeBase):
    pass


class Lamp(StateMixin, Base):
    __tablename__ = "range_lamps"
    id: Mapped[int] = mapped_column(primary_key=True)


class BigLamp(StateMixin, Base):
    __tablename__ = "range_big_lamps"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)


class SmallLamp(StateMixin, Base):
    __tablename__ = "range_small_lamps"
    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)


@pytest.fixture(params=[Lamp, BigLamp, SmallLamp])
def lamps(request: pytest.FixtureRequest, database_url: str) -> Iterator[tuple[Runner, type]]:
    engine = engine_for(database_url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    store = SQLAlchemyStore(engine, {LampWorkflow.machine: request.param})
    store.create_tables()
    yield Runner(LampWorkflow.machine, store), request.param
    Base.metadata.drop_all(engine)
    engine.dispose()


def transaction_on(runner: Runner, key: str) -> Callable[[], Any]:
    def block() -> None:
        with runner.store.transaction("lamp", key):  # type: ignore[attr-defined]
            pass

    return block


@pytest.mark.parametrize("key", [2**15, 2**31, 2**63, -(2**63) - 1, 10**30])
def test_a_key_beyond_the_columns_range_names_no_instance(
    lamps: tuple[Runner, type], key: int
) -> None:
    runner, entity_class = lamps
    store: Any = runner.store
    runner.start(entity_class(id=7))
    text = str(key)
    for call in (
        lambda: store.load("lamp", text),
        lambda: runner.fire_by_key(key, "switch"),
        transaction_on(runner, text),
        lambda: store.delete("lamp", text),
    ):
        with pytest.raises(InstanceNotFoundError, match=f"lamp {text} not found"):
            call()
    assert store.history("lamp", text) == []
    assert runner.fire_by_key(7, "switch").target == "on"  # the store still works


def test_the_columns_own_extremes_are_keys(lamps: tuple[Runner, type], database_url: str) -> None:
    runner, entity_class = lamps
    bits = {Lamp: 32, BigLamp: 64, SmallLamp: 16}[entity_class]
    if database_url.startswith("sqlite"):
        bits = 64  # SQLite's INTEGER holds 64 bits whatever the declared type
    for key in (2 ** (bits - 1) - 1, -(2 ** (bits - 1))):
        runner.start(entity_class(id=key))
        assert runner.fire_by_key(key, "switch").target == "on"


def test_a_key_of_zero_is_stored_as_zero_or_refused(lamps: tuple[Runner, type]) -> None:
    """MySQL/MariaDB store an AUTO_INCREMENT key of 0 as the next value: statekit
    reported key "0" for a row stored as 1. Such a start is refused, nothing written;
    a key column without AUTO_INCREMENT, and other databases, store 0 as 0."""
    runner, cls = lamps
    store = runner.store
    assert isinstance(store, SQLAlchemyStore)
    lamp = cls(id=0)
    renumbered = store.engine.dialect.name == "mysql" and cls is Lamp
    if renumbered:
        with pytest.raises(UnstorableTextError, match="AUTO_INCREMENT key of 0") as caught:
            runner.start(lamp)
        assert (caught.value.argument, caught.value.value) == ("key", 0)
        assert lamp.state is None  # left as it was
        for key in ("0", "1"):
            with pytest.raises(InstanceNotFoundError):
                store.load("lamp", key)
        assert runner.start(cls()).key == "1"  # a key left unset is assigned
        return
    assert runner.start(lamp).key == "0"
    assert runner.fire_by_key("0", "switch").seq == 1
    assert store.load("lamp", "0").state == "on"
