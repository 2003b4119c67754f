"""Four OS processes fire on the same ten orders through the Django model, on each
database: the version predicate lets exactly one win per order and round, every
loser gets `ConcurrentTransitionError`, and the history stays contiguous. A control
without the predicate loses updates, which the same checks catch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from models.order import OrderWorkflow
from statekit import Runner
from statekit.contrib.django.store import DjangoStore
from tests.contrib.django.conftest import empty_tables
from tests.contrib.django.processes import spawn_worker
from tests.contrib.django.testapp.models import Order
from tests.contrib.django.workers import EVENTS
from tests.processes import go, result, wait_ready

pytestmark = pytest.mark.slow

KEYS = [f"contended-{n}" for n in range(10)]
WORKERS = 4


@pytest.fixture
def store(alias: str) -> Iterator[DjangoStore]:
    empty_tables(alias)
    store = DjangoStore({OrderWorkflow.machine: Order}, using=alias)
    runner = Runner(OrderWorkflow.machine, store)
    for key in KEYS:
        runner.start(Order(id=key))
    yield store
    empty_tables(alias)


def _rounds(alias: str, *, unguarded: bool) -> list[dict[str, Any]]:
    """Run the workers round by round, releasing them together each time."""
    workers = [
        spawn_worker(alias, "stale_rounds", keys=KEYS, unguarded=unguarded) for _ in range(WORKERS)
    ]
    for _ in EVENTS:
        for worker in workers:
            wait_ready(worker)  # every worker holds the same version of every order
        for worker in workers:
            go(worker)
    return [result(worker) for worker in workers]


def _history(store: DjangoStore) -> dict[str, list[int]]:
    return {key: [r.seq for r in store.history("order", key)] for key in KEYS}


def _versions(store: DjangoStore) -> dict[str, int]:
    return {key: store.load("order", key).version for key in KEYS}


def test_four_processes_on_ten_rows_lose_no_update(alias: str, store: DjangoStore) -> None:
    results = _rounds(alias, unguarded=False)
    for number, event in enumerate(EVENTS):
        rounds = [r["rounds"][number] for r in results]
        assert [r["errors"] for r in rounds] == [[]] * WORKERS
        for key in KEYS:
            assert sum(r["fired"][key] for r in rounds) == 1, (event, key)  # one winner
        losers = sorted(tuple(c) for r in rounds for c in r["conflicts"])
        # every loser was refused by the compare-and-set, which read the version back
        assert losers == sorted(
            (key, event, number, number + 1) for key in KEYS for _ in range(WORKERS - 1)
        )
    history, versions = _history(store), _versions(store)
    for key in KEYS:
        assert history[key] == list(range(1, len(EVENTS) + 1)), key  # contiguous
        assert versions[key] == len(history[key]), key
    events = [r.event for r in store.history("order", KEYS[0])]
    assert events == list(EVENTS)
    assert store.disagreements("order") == []


def test_control_without_the_version_predicate_loses_updates(
    alias: str, store: DjangoStore
) -> None:
    results = _rounds(alias, unguarded=True)
    for number in range(len(EVENTS)):
        rounds = [r["rounds"][number] for r in results]
        assert [r["errors"] for r in rounds] == [[]] * WORKERS
        assert [r["conflicts"] for r in rounds] == [[]] * WORKERS  # nobody was stopped
        for key in KEYS:
            assert sum(r["fired"][key] for r in rounds) == WORKERS  # all "won"
    history, versions = _history(store), _versions(store)
    # Every worker "succeeded" on every order in every round, yet each order moved one
    # version per round: the checks the guarded test passes see the lost updates.
    lost = [key for key in KEYS if len(history[key]) != versions[key]]
    assert lost == KEYS
    assert versions == dict.fromkeys(KEYS, len(EVENTS))
    assert {len(seqs) for seqs in history.values()} == {WORKERS * len(EVENTS)}
