"""`SQLAlchemyStore.unit_of` finds the unit of work each write path uses, from the
entity alone: the light row unit and the driver unit while their block is open (in the
thread running it), statekit's own or the caller's Session, and none for a detached
entity. The behaviour around units (commit, rollback, after-commit, two threads) is in
the store contract; this pins which class serves which path."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from models.order import OrderWorkflow
from models.orm import ENTITIES, Base, OrderRow
from statekit import MemoryStore, Runner, StoreError
from statekit.store.sqlalchemy import SQLAlchemyStore, sqlite_engine
from statekit.store.sqlalchemy.units import DriverUnit, RowUnit, SessionUnit

MACHINE = OrderWorkflow.machine


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = sqlite_engine(str(tmp_path / "units.db"))
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine) -> SQLAlchemyStore:
    store = SQLAlchemyStore(engine, ENTITIES)
    store.create_tables()
    return store


@pytest.fixture
def key(store: SQLAlchemyStore) -> str:
    order = OrderRow(total=Decimal(10))
    Runner(MACHINE, store).start(order)
    return str(order.id)


def test_a_light_units_entity_finds_its_unit_only_while_the_block_is_open(
    store: SQLAlchemyStore, key: str
) -> None:
    with store.transaction("order", key) as order:
        unit = store.unit_of("order", key, order)
        assert isinstance(unit, RowUnit)
        assert unit.entity is order
        assert unit.state_writer() is not None  # straight into the loaded values
        assert store.unit_of("order", key, order) is unit
    assert store.unit_of("order", key, order) is None  # detached now


def test_a_light_units_entity_has_no_unit_in_another_thread(
    store: SQLAlchemyStore, key: str
) -> None:
    found: list[object] = []
    with store.transaction("order", key) as order:
        thread = threading.Thread(target=lambda: found.append(store.unit_of("order", key, order)))
        thread.start()
        thread.join(10)
        assert isinstance(store.unit_of("order", key, order), RowUnit)
    assert found == [None]


def test_fire_by_key_runs_in_a_driver_unit(store: SQLAlchemyStore, key: str) -> None:
    with store.firing("order", key) as order:
        unit = store.unit_of("order", key, order)
        assert isinstance(unit, DriverUnit)
        assert unit.entity is order


def test_an_entity_in_the_callers_session_gets_a_unit_over_that_session(
    store: SQLAlchemyStore, engine: Engine, key: str
) -> None:
    with Session(engine) as session:
        order = session.get(OrderRow, int(key))
        unit = store.unit_of("order", key, order)
        assert isinstance(unit, SessionUnit)
        assert unit.session is session
        assert unit.committed is None  # after-commit work waits for the Session's commit
    assert store.unit_of("order", key, order) is None  # the Session is closed


def test_statekits_own_session_unit_is_found_from_its_entities(
    store: SQLAlchemyStore, key: str
) -> None:
    with store.session_unit("order", key) as order:
        unit = store.unit_of("order", key, order)
        assert isinstance(unit, SessionUnit)
        assert unit.committed == []  # run by the unit after its own commit
        assert store.unit_of("order", key, order) is unit


def test_a_unit_of_another_store_is_refused(store: SQLAlchemyStore, key: str) -> None:
    other = MemoryStore()
    detached = OrderRow(id=int(key), total=Decimal(10))
    Runner(MACHINE, other).start(detached)
    with other.transaction("order", key) as entity:
        foreign = other.unit_of("order", key, entity)
        plan = MACHINE.decide(entity, "reserve", {}, now=datetime.now(UTC))
        with pytest.raises(StoreError, match="MemoryUnit is not a unit of this SQLAlchemyStore"):
            store.apply(plan, entity=entity, unit=foreign)
    assert store.load("order", key).version == 0
