"""`MemoryStore`, the reference, against the outbox, reads and sweeper contracts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from models.order import OrderWorkflow
from statekit import ManualClock, MemoryStore, StoreError
from tests.contract.jobs import JobWorkflow
from tests.contract.outbox_contract import OutboxContract
from tests.contract.reads_contract import ReadsContract
from tests.contract.sweeper_contract import SweeperContract
from tests.support import new_order


class TestMemoryOutbox(OutboxContract):
    @pytest.fixture
    def store(self, clock: ManualClock) -> MemoryStore:
        return MemoryStore([JobWorkflow.machine], clock=clock)


class TestMemoryReads(ReadsContract):
    @pytest.fixture
    def store(self) -> MemoryStore:
        return MemoryStore([OrderWorkflow.machine])

    @pytest.fixture
    def new_order(self) -> Callable[[int], object]:
        return lambda n: new_order(str(n), total=str(10 * n))


class TestMemorySweeper(SweeperContract):
    @pytest.fixture
    def store(self, clock: ManualClock) -> MemoryStore:
        return MemoryStore([JobWorkflow.machine], clock=clock)

    @pytest.fixture
    def read_job(self, store: MemoryStore) -> Callable[[str], Any]:
        """The stored job object: the one every unit loads."""
        return lambda key: store._entities["job", key]


def test_waiting_needs_the_machine_registered() -> None:
    with pytest.raises(StoreError, match="no machine 'order' registered"):
        MemoryStore().waiting("order", datetime(2026, 1, 5, tzinfo=UTC))


def test_the_sweeper_needs_the_machine_registered() -> None:
    store = MemoryStore()
    with (
        pytest.raises(StoreError, match=r"no machine 'job' registered .*store.register"),
        store.overdue_batch("job", datetime(2026, 1, 5, tzinfo=UTC), 10),
    ):
        pass  # pragma: no cover


def test_the_database_clock_is_the_stores_clock() -> None:
    clock = ManualClock()
    assert MemoryStore(clock=clock).database_clock() is clock
