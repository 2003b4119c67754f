"""`MemoryStore`, the reference, against the outbox, reads and sweeper contracts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from models.order import OrderWorkflow
from statekit import InstanceNotFoundError, ManualClock, MemoryStore, Runner, Snapshot, StoreError
from tests.contract.drain_contract import ConcurrentDrainContract
from tests.contract.jobs import JobWorkflow
from tests.contract.reads_contract import ReadsContract
from tests.contract.retention_contract import RetentionContract
from tests.contract.sweeper_contract import SweeperContract
from tests.support import new_order


class TestMemoryOutbox(RetentionContract):
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


class MemoryJobs:
    """The job fixtures of the sweeper contracts on `MemoryStore`."""

    @pytest.fixture
    def store(self, clock: ManualClock) -> MemoryStore:
        return MemoryStore([JobWorkflow.machine], clock=clock)

    @pytest.fixture
    def read_job(self, store: MemoryStore) -> Callable[[str], Any]:
        """The stored job object: the one every unit loads."""
        return lambda key: store._entities["job", key]


class TestMemorySweeper(MemoryJobs, SweeperContract):
    pass


class TestMemoryConcurrentDrain(MemoryJobs, ConcurrentDrainContract):
    pass


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


def test_sweeper_units_do_not_nest() -> None:
    from tests.contract.jobs import Job

    store = MemoryStore([JobWorkflow.machine])
    Runner(JobWorkflow.machine, store).start(Job("j1"))
    with store.session_unit("job", "j1"):
        inner = store.session_unit("job", "j1")
        with pytest.raises(StoreError, match="units do not nest"):
            inner.__enter__()
    with store.session_unit("job", "j1") as entity:  # the refused one left nothing open
        assert entity.id == "j1"


def test_an_instance_stored_without_an_object_cannot_be_loaded_into_a_unit() -> None:
    store = MemoryStore([JobWorkflow.machine])
    store.create(Snapshot(entity_type="job", key="bare", state="new", version=0))
    with pytest.raises(StoreError, match="holds no object for job bare"):
        store.session_unit("job", "bare").__enter__()
    with pytest.raises(InstanceNotFoundError):
        store.session_unit("job", "missing").__enter__()
