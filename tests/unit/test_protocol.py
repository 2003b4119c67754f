"""The store protocols are declared, typed and honoured: no member is found by
`getattr`, and a store that cannot run the sweeper says so when it is given one."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import pytest
from sqlalchemy import create_engine

from models.orm import ENTITIES
from statekit import MemoryStore, Runner, StoreError, Sweeper
from statekit.store.protocol import Reads, Store, SweepStore
from statekit.store.sqlalchemy import SQLAlchemyStore
from tests.support import new_order, one_step


class RunnerTierStore:
    """A store that stops after the Runner's tier (a backend landing in stages):
    it answers the `Store` members and nothing else."""

    def __init__(self) -> None:
        self._memory = MemoryStore()

    def __getattr__(self, name: str) -> Any:
        if name in vars(Store) and not name.startswith("_"):
            return getattr(self._memory, name)
        raise AttributeError(name)


def test_the_stores_declare_the_tiers_they_implement() -> None:
    memory = MemoryStore()
    sql = SQLAlchemyStore(create_engine("sqlite://"), ENTITIES)
    for store in (memory, sql):
        assert isinstance(store, Store)
        assert isinstance(store, SweepStore)
        assert isinstance(store, Reads)
    assert not isinstance(RunnerTierStore(), SweepStore)


def test_a_sweeper_over_a_store_without_the_sweep_tier_is_refused() -> None:
    machine, _ = one_step()
    with pytest.raises(StoreError, match="RunnerTierStore cannot run the sweeper"):
        Sweeper([Runner(machine, RunnerTierStore())])


class CountingStore(MemoryStore):
    """Records which optional members the Runner used."""

    def __init__(self) -> None:
        super().__init__()
        self.used: list[str] = []

    def firing(self, entity_type: str, key: str) -> AbstractContextManager[Any]:
        self.used.append("firing")
        return super().firing(entity_type, key)

    def unit_of(self, entity_type: str, key: str, entity: object) -> Any:
        self.used.append("unit_of")
        return super().unit_of(entity_type, key, entity)


def test_the_runner_calls_the_declared_members() -> None:
    from models.order import OrderWorkflow

    store = CountingStore()
    runner = Runner(OrderWorkflow.machine, store)
    order = new_order("o1")
    runner.start(order)
    runner.fire(order, "reserve")
    runner.fire_by_key("o1", "cancel")
    assert store.used == ["unit_of", "firing", "unit_of"]
    assert store.load("order", "o1").state == "cancelled"
