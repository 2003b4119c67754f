"""`MemoryStore` against the store contract, plus what only the memory store does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from statekit import MemoryStore, Runner, Snapshot, Store, StoreError
from tests.contract.store_contract import RemoveEntity, StoreContract
from tests.support import new_order


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> Store:
        return MemoryStore()

    @pytest.fixture
    def remove_entity(self, store: MemoryStore) -> RemoveEntity:
        """What an application that forgets its object does: the store loses the
        snapshot and the object, and nothing tells it to forget the history."""

        def remove(key: str) -> None:
            store._snapshots.pop(("order", key))
            store._entities.pop(("order", key), None)

        return remove


def test_a_snapshot_without_a_key_is_refused() -> None:
    store = MemoryStore()
    with pytest.raises(StoreError, match=r"^cannot store a order without a key$"):
        store.create(Snapshot(entity_type="order", key="", state="pending", version=0))
    assert store.find_overdue("order", datetime(2100, 1, 1, tzinfo=UTC), 10) == []


def test_history_is_a_copy() -> None:
    from models.order import OrderWorkflow

    store = MemoryStore()
    runner = Runner(OrderWorkflow.machine, store)
    order = new_order()
    runner.start(order)
    runner.fire(order, "reserve")
    history = store.history("order", "o1")
    assert isinstance(history, list)
    history.clear()
    assert len(store.history("order", "o1")) == 1


def test_a_fire_on_the_outer_units_entity_inside_an_inner_unit_joins_the_outer_unit() -> None:
    """Each entity finds its own unit: a write on the outer block's entity, made while
    a block on another key is open inside it, rolls back with the outer block."""
    from models.order import OrderWorkflow

    store = MemoryStore()
    runner = Runner(OrderWorkflow.machine, store)
    runner.start(new_order("outer"))
    runner.start(new_order("inner"))

    def outer_unit_fails() -> None:
        with store.transaction("order", "outer") as outer:
            with store.transaction("order", "inner") as inner:
                runner.fire(outer, "reserve")
                runner.fire(inner, "reserve")
            raise RuntimeError("outer unit fails")

    with pytest.raises(RuntimeError, match="outer unit fails"):
        outer_unit_fails()
    assert store.load("order", "outer").version == 0
    assert list(store.history("order", "outer")) == []
    assert store.load("order", "inner").version == 1  # the inner block committed
