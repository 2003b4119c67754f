"""Keys, idempotency keys, actors and correlation ids that would not fit statekit's
history are refused before anything is written, on every store (SQLite would store
them whole, PostgreSQL and MariaDB refuse them only at the write)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from models.order import OrderWorkflow
from models.orm import ENTITIES, Base
from statekit import MemoryStore, Runner, StoreError
from statekit.limits import KEY_MAX, LABEL_MAX
from statekit.store.sqlalchemy import SQLAlchemyStore
from tests.support import new_order


def test_a_key_longer_than_the_history_holds_is_refused_at_start() -> None:
    runner = Runner(OrderWorkflow.machine, MemoryStore())
    long = new_order("k" * (KEY_MAX + 1))
    with pytest.raises(StoreError, match=f"key of {KEY_MAX + 1} characters"):
        runner.start(long)
    assert long.state is None
    with pytest.raises(StoreError, match="keys are at most"):
        runner.start_many([new_order("ok"), new_order("k" * (KEY_MAX + 1))])
    runner.start(new_order("k" * KEY_MAX))  # the limit itself fits


@pytest.mark.parametrize(
    ("option", "limit"),
    [("idempotency_key", KEY_MAX), ("actor", LABEL_MAX), ("correlation_id", LABEL_MAX)],
)
def test_labels_longer_than_their_columns_are_refused_before_the_write(
    option: str, limit: int, tmp_path: Path
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'labels.db'}")
    Base.metadata.create_all(engine)
    store = SQLAlchemyStore(engine, ENTITIES)
    store.create_tables()
    runner = Runner(OrderWorkflow.machine, store)
    from models.orm import OrderRow

    runner.start(OrderRow(id=1, total=Decimal(10)))
    with pytest.raises(StoreError, match=f"{limit + 1} characters, at most {limit}"):
        runner.fire_by_key(1, "reserve", **{option: "x" * (limit + 1)})
    assert store.history("order", "1") == []
    assert runner.fire_by_key(1, "reserve", **{option: "x" * limit}).seq == 1
    engine.dispose()
