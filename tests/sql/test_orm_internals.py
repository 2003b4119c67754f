"""Pins what statekit relies on in SQLAlchemy's internals (store/sqlalchemy/orm.py),
one test per function, on a real SQLite file: a SQLAlchemy upgrade that changes one
of these behaviours fails here, by name, before it breaks a write path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    event,
    select,
    text,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, validates

from statekit.store.sqlalchemy import orm


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "orm_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(32))
    count: Mapped[int] = mapped_column(Integer, default=0)

    built = 0

    def __init__(self, **kwargs: Any) -> None:
        type(self).built += 1
        super().__init__(**kwargs)


class Checked(Base):
    __tablename__ = "orm_checked"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(32))

    @validates("name")
    def _check(self, key: str, value: str) -> str:
        return value


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite+pysqlite:///{tmp_path / 'orm.db'}")
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        session.add(Item(id=1, name="one", count=1))
    yield engine
    engine.dispose()


def _stored_name(engine: Engine, ident: int = 1) -> str:
    with engine.connect() as conn:
        name: str = conn.execute(
            text("SELECT name FROM orm_items WHERE id = :i"), {"i": ident}
        ).scalar_one()
    return name


def test_the_fast_commit_path_exists_in_this_sqlalchemy() -> None:
    assert orm.FAST_COMMIT, "InstanceState._commit is gone: mark_persisted is slow now"


def test_loaded_values_are_the_instance_dict_and_writing_them_is_no_change(engine: Engine) -> None:
    with Session(engine) as session:
        item = session.get(Item, 1)
        assert item is not None
        values = orm.loaded_values(item)
        assert (values["name"], values["count"]) == ("one", 1)
        values["name"] = "written"
        assert item.name == "written"
        assert not orm.pending_changes(item)
        assert item not in session.dirty


def test_pending_changes_name_every_assignment_and_net_changes_the_real_ones(
    engine: Engine,
) -> None:
    with Session(engine) as session:
        item = session.get(Item, 1)
        assert item is not None
        assert not orm.has_pending_changes(item)
        item.count = 1  # the value it had
        item.name = "renamed"
        assert set(orm.pending_changes(item)) == {"count", "name"}
        assert orm.has_pending_changes(item)
        assert orm.net_changes(item) == ["name"]


def test_committed_attributes_are_not_written_again(engine: Engine) -> None:
    with Session(engine) as session:
        item = session.get(Item, 1)
        assert item is not None
        item.name = "kept in memory"
        item.count = 2
        orm.commit_attributes(item, ["name"])
        assert list(orm.pending_changes(item)) == ["count"]
        session.commit()
    assert _stored_name(engine) == "one"  # the ORM took "name" as the row's value
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count FROM orm_items")).scalar_one() == 2


def test_committing_every_pending_attribute_leaves_the_session_nothing_to_flush(
    engine: Engine,
) -> None:
    flushes: list[int] = []
    with Session(engine) as session:
        event.listen(session, "before_flush", lambda *_: flushes.append(1))
        item = session.get(Item, 1)
        assert item is not None
        item.name = "written elsewhere"
        orm.commit_attributes(item, ["name"])
        session.commit()  # clean: no flush at all, not an empty one
        assert flushes == []
        item.count = 5  # a later change is tracked as usual
        orm.commit_attributes(item, [])
        session.commit()
    assert flushes == [1]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name, count FROM orm_items")).one() == ("one", 5)


def test_a_new_detached_instance_acts_as_loaded_without_init(engine: Engine) -> None:
    mapper = sa_inspect(Item)
    built = Item.built
    item = orm.new_detached(mapper, [("id", 1), ("name", "one"), ("count", 1)], ["id"])
    assert Item.built == built  # no __init__
    state = sa_inspect(item)
    assert state.detached
    assert state.identity == (1,)
    assert (item.id, item.name, item.count) == (1, "one", 1)
    assert not orm.pending_changes(item)
    with Session(engine) as session:
        session.add(item)  # persistent now: a change is an UPDATE of row 1, not an INSERT
        item.name = "updated"
        session.commit()
    assert _stored_name(engine) == "updated"


def test_instance_info_is_one_dict_per_instance_loaded_or_detached(engine: Engine) -> None:
    """Where a row or driver unit sits while open (`units.unit_holding`): the public
    `InstanceState.info`, made on first use, also for a `new_detached` instance."""
    mapper = sa_inspect(Item)
    first = orm.new_detached(mapper, [("id", 1), ("name", "one"), ("count", 1)], ["id"])
    second = orm.new_detached(mapper, [("id", 1), ("name", "one"), ("count", 1)], ["id"])
    info = orm.instance_info(first)
    assert info == {}
    info["unit"] = "held"
    assert orm.instance_info(first) is info
    assert sa_inspect(first).info is info  # the same dict the public inspect() gives
    assert orm.instance_info(second) == {}  # per instance, not per identity
    assert not orm.pending_changes(first)  # writing it is no change of the instance
    with Session(engine) as session:
        loaded = session.get(Item, 1)
        assert orm.instance_info(loaded) == {}
    assert orm.instance_info(object()) is None  # not mapped


def test_mapped_state_gives_the_info_and_session_of_one_instance(engine: Engine) -> None:
    """`units.unit_holding` reads an entity's unit and Session from one state: the
    state `inspect()` gives, its Session while it belongs to one, None when it is
    detached or not mapped at all."""
    with Session(engine) as session:
        loaded = session.get(Item, 1)
        state = orm.mapped_state(loaded)
        assert state is sa_inspect(loaded)
        assert state is not None
        assert state.session is session
        assert state.info is orm.instance_info(loaded)
    assert state.session is None  # the Session closed: detached
    assert orm.mapped_state(object()) is None


def test_set_listened_sees_listeners_validators_and_unknown_names() -> None:
    assert not orm.set_listened(Item, ["name", "count"])
    assert orm.set_listened(Checked, ["name"])  # @validates is a "set" listener
    assert orm.set_listened(Item, ["no_such_attribute"])

    def on_set(target: Any, value: Any, old: Any, initiator: Any) -> None:
        pass

    event.listen(Item.count, "set", on_set)
    try:
        assert orm.set_listened(Item, ["count"])
    finally:
        event.remove(Item.count, "set", on_set)
    assert not orm.set_listened(Item, ["count"])


def test_engine_listened_sees_execution_and_error_listeners(engine: Engine) -> None:
    watched = ("before_execute", "after_cursor_execute", "begin")
    assert not orm.engine_listened(engine, watched)

    def before(*args: Any) -> None:
        pass

    def on_error(context: Any) -> None:
        pass

    def on_begin(conn: Any) -> None:
        pass

    event.listen(engine, "before_execute", before)
    # An engine derived with execution options sees its parent's listeners.
    assert orm.engine_listened(engine.execution_options(x=1), watched)
    event.remove(engine, "before_execute", before)
    event.listen(engine, "handle_error", on_error)  # registered on the dialect
    assert orm.engine_listened(engine, watched)
    event.remove(engine, "handle_error", on_error)
    event.listen(engine, "begin", on_begin)
    assert orm.engine_listened(engine, watched)
    assert not orm.engine_listened(engine, watched, besides=on_begin)  # registered as is
    event.remove(engine, "begin", on_begin)
    assert not orm.engine_listened(engine, watched)


def test_compiled_parameters_give_the_driver_order_and_sqlalchemys_own() -> None:
    table = Table(
        "orm_compiled",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("a", Integer),
        Column("b", String(8)),
        Column("touched", Integer, onupdate=lambda: 1),
    )
    plain = select(table.c.id).where(table.c.b == bindparam("b_"), table.c.a == bindparam("a_"))
    positional = plain.compile(dialect=sqlite.dialect())
    order, binds, rendered = orm.compiled_parameters(positional, ["a_", "b_"])
    assert order == ("b_", "a_")  # the order of the "?" marks, not the order asked for
    assert isinstance(binds["a_"].type, Integer)
    assert rendered == {"a_", "b_"}
    named = plain.compile(dialect=postgresql.dialect())
    assert orm.compiled_parameters(named, ["a_", "b_"])[0] == ("a_", "b_")
    # A Python-side onupdate is a parameter SQLAlchemy adds on its own.
    changed = update(table).where(table.c.id == bindparam("k_")).values(a=bindparam("a_"))
    extra = orm.compiled_parameters(changed.compile(dialect=sqlite.dialect()), ["k_", "a_"])[2]
    assert extra - {"k_", "a_"}


def test_update_and_flush_listeners_are_counted_class_and_instance_alike(
    engine: Engine,
) -> None:
    mapper = sa_inspect(Item)
    own = len(mapper.dispatch.before_update)  # whatever another test left registered
    assert not orm.update_listened(mapper, own)

    def hear(*args: Any) -> None:
        pass

    for name in ("before_update", "after_update"):
        event.listen(Item, name, hear)
        try:
            assert orm.update_listened(mapper, own)
        finally:
            event.remove(Item, name, hear)
    assert not orm.update_listened(mapper, own)

    with Session(engine) as session:
        assert not orm.flush_listened(session, 0)
        event.listen(session, "before_flush", hear)  # one of statekit's own, say
        assert orm.flush_listened(session, 0)
        assert not orm.flush_listened(session, 1)
        for name in ("after_flush", "after_flush_postexec"):
            event.listen(Session, name, hear)  # every Session's
            try:
                assert orm.flush_listened(session, 1)
            finally:
                event.remove(Session, name, hear)
        assert not orm.flush_listened(session, 1)
