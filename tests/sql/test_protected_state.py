"""A state changed in memory outside a transition is never fired from, on any write path.

`order.state = "paid"` and then `fire(order, "ship")` would move a `pending` order to
`shipped`, skipping `reserve`, `pay` and their guards. The version has not moved, so
the version check alone lets it through; the compare-and-set also matches the state
the transition was decided from, and the store says what happened
(`ProtectedStateError`) and writes nothing. Each write path of `docs/persistence.md`
is tried: the caller's Session, a detached entity (statekit's own unit, on the driver
path where there is one), a `store.transaction` block (light unit), and a block over a
class with a relationship (Session unit).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import ClassVar

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from models.order import OrderWorkflow
from models.orm import Base, OrderRow
from statekit import ConcurrentTransitionError, Machine, ProtectedStateError, Runner
from statekit.store.sqlalchemy import SQLAlchemyStore, StateMixin
from tests.sql_support import engine_for

SHIP = {"carrier": "DHL", "tracking_number": "1Z"}


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    engine = engine_for(database_url)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine) -> Iterator[SQLAlchemyStore]:
    store = SQLAlchemyStore(engine, {OrderWorkflow.machine: OrderRow})
    store.create_tables()
    yield store
    with engine.begin() as conn:
        conn.execute(store.tables.transitions.delete())
        conn.execute(OrderRow.__table__.delete())


@pytest.fixture
def runner(store: SQLAlchemyStore) -> Runner:
    return Runner(OrderWorkflow.machine, store)


def started(runner: Runner, key: int) -> OrderRow:
    order = OrderRow(id=key, total=Decimal(10))
    runner.start(order)
    return order


def assert_refused(caught: pytest.ExceptionInfo[ProtectedStateError], key: int) -> None:
    err = caught.value
    assert (err.entity_type, err.key, err.event) == ("order", str(key), "ship")
    assert (err.state, err.stored_state) == ("paid", "pending")


def assert_untouched(store: SQLAlchemyStore, key: int) -> None:
    loaded = store.load("order", str(key))
    assert (loaded.state, loaded.version) == ("pending", 0)
    assert store.history("order", str(key)) == []


def test_a_detached_entity(store: SQLAlchemyStore, runner: Runner) -> None:
    order = started(runner, 1)
    order.state = "paid"
    with pytest.raises(ProtectedStateError) as caught:
        runner.fire(order, "ship", **SHIP)
    assert_refused(caught, 1)
    assert_untouched(store, 1)


def test_an_entity_in_the_callers_session(
    engine: Engine, store: SQLAlchemyStore, runner: Runner
) -> None:
    started(runner, 2)
    with Session(engine) as session:
        order = session.get(OrderRow, 2)
        assert order is not None
        order.state = "paid"
        with pytest.raises(ProtectedStateError) as caught:
            runner.fire(order, "ship", **SHIP)
        session.rollback()
    assert_refused(caught, 2)
    assert_untouched(store, 2)


def test_a_store_transaction_block(store: SQLAlchemyStore, runner: Runner) -> None:
    started(runner, 3)
    with pytest.raises(ProtectedStateError) as caught:  # noqa: PT012 - the block is the subject
        with store.transaction("order", "3") as order:
            order.state = "paid"
            runner.fire(order, "ship", **SHIP)
    assert_refused(caught, 3)
    assert_untouched(store, 3)


def test_a_stale_copy_is_still_a_lost_race_not_a_protected_state(
    engine: Engine, store: SQLAlchemyStore, runner: Runner
) -> None:
    """The version check comes first: a copy that is behind is told so, even though
    its state also differs from the store's now."""
    started(runner, 4)
    with Session(engine) as first, Session(engine) as second:
        winner, stale = first.get(OrderRow, 4), second.get(OrderRow, 4)
        assert winner is not None
        assert stale is not None
        runner.fire(winner, "reserve")
        first.commit()
        with pytest.raises(ConcurrentTransitionError) as caught:
            runner.fire(stale, "cancel")
        second.rollback()
    assert (caught.value.expected_version, caught.value.actual_version) == (0, 1)
    assert store.load("order", "4").state == "stock_reserved"


# -- the application's own flush ----------------------------------------------------


def test_a_session_flush_of_a_hand_set_state_is_refused(
    engine: Engine, store: SQLAlchemyStore, runner: Runner
) -> None:
    """Without any fire: the application's own commit would write the state by hand
    (what Django's protected `save()` refuses). The flush refuses it; the Session
    rolls back and the row keeps its state."""
    started(runner, 5)
    with Session(engine) as session:
        order = session.get(OrderRow, 5)
        assert order is not None
        order.state = "shipped"
        order.sku = "SKU-2"
        with pytest.raises(ProtectedStateError) as caught:
            session.commit()
        session.rollback()
    err = caught.value
    assert (err.entity_type, err.key, err.state, err.stored_state) == (
        "order",
        "5",
        "shipped",
        "pending",
    )
    assert "state changed outside a transition" in str(err)
    assert_untouched(store, 5)


def test_other_columns_and_statekits_own_writes_flush_as_before(
    engine: Engine, store: SQLAlchemyStore, runner: Runner
) -> None:
    started(runner, 6)
    with Session(engine) as session, session.begin():
        order = session.get(OrderRow, 6)
        assert order is not None
        order.sku = "SKU-3"  # not a state column
        runner.fire(order, "reserve")
        order.state = "stock_reserved"  # the value it has: no change
        order.quantity = 2
    with Session(engine) as session:
        order = session.get(OrderRow, 6)
        assert order is not None
        assert (order.state, order.state_version, order.sku, order.quantity) == (
            "stock_reserved",
            1,
            "SKU-3",
            2,
        )


def test_every_state_column_is_protected(
    engine: Engine, store: SQLAlchemyStore, runner: Runner
) -> None:
    started(runner, 7)
    for name, value in [("state_version", 5), ("stuck_reason", "by hand")]:
        with Session(engine) as session:
            order = session.get(OrderRow, 7)
            assert order is not None
            setattr(order, name, value)
            with pytest.raises(ProtectedStateError, match=name):
                session.flush()
            session.rollback()
    assert_untouched(store, 7)


class _Base(DeclarativeBase):
    pass


class _Parcel(StateMixin, _Base):
    """A mapped class that names its machine and that no store has registered."""

    __tablename__ = "protected_parcels"
    __statekit_machine__: ClassVar[Machine] = OrderWorkflow.machine
    id: Mapped[int] = mapped_column(primary_key=True)


def test_a_class_that_names_its_machine_is_protected_before_any_store_exists(
    engine: Engine,
) -> None:
    """A Flask or plain-SQLAlchemy app may commit before its store is built: the
    mixin protects a class that names its machine as soon as it is mapped."""
    _Base.metadata.create_all(engine)
    try:
        with Session(engine) as session, session.begin():
            session.add(_Parcel(id=1, state="pending", state_version=0))  # inserting is free
        with Session(engine) as session:
            parcel = session.get(_Parcel, 1)
            assert parcel is not None
            parcel.state = "delivered"
            with pytest.raises(ProtectedStateError, match="state changed outside a transition"):
                session.commit()
            session.rollback()
            assert session.get(_Parcel, 1).state == "pending"  # type: ignore[union-attr]
    finally:
        _Base.metadata.drop_all(engine)
