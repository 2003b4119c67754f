"""What a unit of work writes back when its block ends never bypasses the version check.

A unit (`store.transaction`, `fire_by_key`) loads the entity, lets the block fire on
it and change it, and writes the changed columns when the block ends. When a fire in
the block loses its race, the Runner restores the entity; the block may go on (a
duplicate delivery is answered with a replay, or the caller catches the conflict).
The restored copy must not be written over the winner's row.

On SQLite a unit holds the write lock from its first statement, so no other writer
can get in while it runs; these races need PostgreSQL or MariaDB. The multi-process
test in `test_contention.py` delivers duplicates on all three databases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from pydantic import BaseModel
from sqlalchemy import Engine, ForeignKey, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from statekit import ConcurrentTransitionError, Context, Runner, State, StoreError, Workflow
from statekit.store.sqlalchemy import SQLAlchemyStore, StateMixin, statekit_tables
from tests.sql_support import engine_for, fresh_database

INTERLOPERS: dict[str, Callable[[], None]] = {}
"""Run once by `label`'s action: another writer that gets in first."""


class LabelText(BaseModel):
    text: str


def write_label(parcel: Parcel | Crate, ctx: Context) -> None:
    """Action of `label`: set the label, after letting a pending interloper win."""
    interloper = INTERLOPERS.pop(str(parcel.id), None)
    if interloper is not None:  # on a thread of its own, as another writer would be
        with ThreadPoolExecutor(1) as pool:
            pool.submit(interloper).result()
    parcel.label = ctx.payload_as(LabelText).text


class ParcelWorkflow(Workflow, name="parcel"):
    packed = State(initial=True)
    labelled = State()
    shipped = State(final=True)

    label = (packed | labelled).to(labelled, action=write_label, payload=LabelText)
    ship = labelled.to(shipped)


class CrateWorkflow(Workflow, name="crate"):
    packed = State(initial=True)
    labelled = State()
    shipped = State(final=True)

    label = (packed | labelled).to(labelled, action=write_label, payload=LabelText)
    ship = labelled.to(shipped)


class Base(DeclarativeBase):
    pass


class Parcel(StateMixin, Base):
    """Plain columns only: `store.transaction` uses the light row unit."""

    __tablename__ = "wb_parcels"
    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(40), default="")
    note: Mapped[str] = mapped_column(String(40), default="")


class Shelf(Base):
    __tablename__ = "wb_shelves"
    id: Mapped[int] = mapped_column(primary_key=True)


class Crate(StateMixin, Base):
    """Has a relationship: `store.transaction` uses an ORM Session."""

    __tablename__ = "wb_crates"
    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(40), default="")
    note: Mapped[str] = mapped_column(String(40), default="")
    shelf_id: Mapped[int | None] = mapped_column(ForeignKey("wb_shelves.id"))
    shelf: Mapped[Shelf | None] = relationship()


@dataclass
class Env:
    engine: Engine
    kind: str  # "parcel" (light unit) or "crate" (Session unit)
    store: SQLAlchemyStore
    runner: Runner
    other: Runner  # a second writer, on its own store and connections

    @property
    def entity_class(self) -> type[Parcel] | type[Crate]:
        return Parcel if self.kind == "parcel" else Crate

    def new(self, key: int) -> None:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            entity = self.entity_class(id=key, label="", note="")
            session.add(entity)
            self.runner.start(entity)

    def row(self, key: int) -> tuple[str, int, str, str]:
        cls = self.entity_class
        with self.engine.connect() as conn:
            found = conn.execute(
                select(cls.state, cls.state_version, cls.label, cls.note).where(cls.id == key)
            ).one()
        return found[0], found[1], found[2], found[3]

    def seqs(self, key: int) -> list[int]:
        return [r.seq for r in self.store.history(self.kind, str(key))]


@pytest.fixture(params=["postgresql", "mariadb"], scope="module")
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    with fresh_database(request.param, tmp_path_factory.mktemp("wb")) as url:
        engine = engine_for(url)
        Base.metadata.create_all(engine)
        statekit_tables().metadata.create_all(engine)
        yield engine
        engine.dispose()


@pytest.fixture(params=["parcel", "crate"])
def env(engine: Engine, request: pytest.FixtureRequest) -> Iterator[Env]:
    kind: str = request.param
    machines = {ParcelWorkflow.machine: Parcel, CrateWorkflow.machine: Crate}
    machine = ParcelWorkflow.machine if kind == "parcel" else CrateWorkflow.machine
    store = SQLAlchemyStore(engine, machines)
    other = SQLAlchemyStore(engine, machines)
    yield Env(engine, kind, store, Runner(machine, store), Runner(machine, other))
    INTERLOPERS.clear()
    with engine.begin() as conn:
        for table in (statekit_tables().transitions, *reversed(Base.metadata.sorted_tables)):
            conn.execute(table.delete())


def test_the_unit_kind_is_the_one_under_test(env: Env) -> None:
    light = env.store.binding(env.kind).rows is not None
    assert light == (env.kind == "parcel")


def test_a_lost_race_caught_in_the_block_leaves_the_winner(env: Env) -> None:
    env.new(1)
    with env.store.transaction(env.kind, "1") as entity:
        env.other.fire_by_key(1, "label", text="winner")
        with pytest.raises(ConcurrentTransitionError):
            env.runner.fire(entity, "label", text="loser")
        assert (entity.state, entity.state_version) == ("packed", 0)  # restored
    assert env.row(1) == ("labelled", 1, "winner", "")
    assert env.seqs(1) == [1]
    assert env.runner.fire_by_key(1, "ship").seq == 2  # and it still moves


def test_a_change_after_a_lost_race_is_refused_at_the_end_of_the_block(env: Env) -> None:
    env.new(2)

    def block() -> None:
        with env.store.transaction(env.kind, "2") as entity:
            env.other.fire_by_key(2, "label", text="winner")
            with pytest.raises(ConcurrentTransitionError):
                env.runner.fire(entity, "label", text="loser")
            entity.note = "written on a stale copy"

    with pytest.raises(ConcurrentTransitionError) as caught:
        block()
    assert (caught.value.expected_version, caught.value.actual_version) == (0, 1)
    assert env.row(2) == ("labelled", 1, "winner", "")
    assert env.seqs(2) == [1]


def test_a_change_on_a_stale_copy_without_a_fire_is_refused(env: Env) -> None:
    env.new(3)

    def block() -> None:
        with env.store.transaction(env.kind, "3") as entity:
            env.other.fire_by_key(3, "label", text="winner")
            entity.note = "written on a stale copy"

    with pytest.raises(ConcurrentTransitionError, match="expected version 0 but the store has 1"):
        block()
    assert env.row(3) == ("labelled", 1, "winner", "")


def test_a_duplicate_delivery_that_loses_its_race_replays_and_writes_nothing(
    env: Env,
) -> None:
    env.new(4)
    # The winner commits while the loser's action runs: after the loser looked for
    # the key and before it writes, so its compare-and-set finds the row moved.
    INTERLOPERS["4"] = lambda: env.other.fire_by_key(
        4, "label", idempotency_key="msg-4", text="winner"
    )
    with env.store.transaction(env.kind, "4") as entity:
        record = env.runner.fire(entity, "label", idempotency_key="msg-4", text="loser")
    assert record.replayed
    assert record.seq == 1
    assert env.row(4) == ("labelled", 1, "winner", "")
    assert env.seqs(4) == [1]
    assert env.runner.fire_by_key(4, "ship").seq == 2


@pytest.mark.parametrize("driver_path", [True, False], ids=["driver", "connection"])
def test_fire_by_key_duplicate_that_loses_its_race_replays(env: Env, driver_path: bool) -> None:
    env.new(5)
    machines = {ParcelWorkflow.machine: Parcel, CrateWorkflow.machine: Crate}
    store = SQLAlchemyStore(env.engine, machines, driver_path=driver_path)
    runner = Runner(env.runner.machine, store)
    INTERLOPERS["5"] = lambda: env.other.fire_by_key(
        5, "label", idempotency_key="msg-5", text="winner"
    )
    record = runner.fire_by_key(5, "label", idempotency_key="msg-5", text="loser")
    assert (record.replayed, record.seq) == (True, 1)
    assert env.row(5) == ("labelled", 1, "winner", "")
    assert env.seqs(5) == [1]


def test_a_winning_unit_still_writes_what_its_actions_and_the_block_changed(env: Env) -> None:
    env.new(6)
    with env.store.transaction(env.kind, "6") as entity:
        env.runner.fire(entity, "label", text="mine")
        entity.note = "after the fire"
    assert env.row(6) == ("labelled", 1, "mine", "after the fire")
    with env.store.transaction(env.kind, "6") as entity:
        entity.note = "no fire at all"
    assert env.row(6) == ("labelled", 1, "mine", "no fire at all")
    assert env.seqs(6) == [1]


def test_setting_a_state_attribute_by_hand_in_a_unit_is_refused(env: Env) -> None:
    env.new(7)

    def block() -> None:
        with env.store.transaction(env.kind, "7") as entity:
            entity.state = "shipped"

    with pytest.raises(StoreError, match="state changed outside a transition") as caught:
        block()
    assert "events: label, ship" in str(caught.value)
    assert env.row(7) == ("packed", 0, "", "")
