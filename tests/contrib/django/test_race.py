"""Threads with a Django connection each fire on the same rows at once: exactly one
wins each round, every loser gets `ConcurrentTransitionError`, and the history stays
contiguous (the version equals the number of history rows)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from django.db import connections

from models.order import OrderWorkflow
from statekit import ConcurrentTransitionError, Runner
from statekit.contrib.django.store import DjangoStore
from tests.contrib.django.conftest import empty_tables
from tests.contrib.django.testapp.models import Order

THREADS = 4
EVENTS = ("reserve", "pay", "ship", "deliver")
PAYLOADS = {
    "pay": {"amount": "10", "reference": "r"},
    "ship": {"carrier": "DHL", "tracking_number": "1Z"},
}


@pytest.fixture
def store(alias: str) -> Iterator[DjangoStore]:
    yield DjangoStore({OrderWorkflow.machine: Order}, using=alias)
    empty_tables(alias)


def test_one_winner_per_round_and_the_history_stays_contiguous(
    alias: str, store: DjangoStore
) -> None:
    runner = Runner(OrderWorkflow.machine, store)
    keys = [f"race-{n}" for n in range(5)]
    for key in keys:
        runner.start(Order(id=key))
    outcomes: dict[tuple[str, str], list[tuple[str, ...]]] = {}
    lock = threading.Lock()

    def contend(key: str, event: str, barrier: threading.Barrier) -> None:
        try:
            order = Order.objects.using(alias).get(pk=key)  # every thread at one version
            barrier.wait(30)
            try:
                runner.fire(order, event, **PAYLOADS.get(event, {}))
                outcome: tuple[str, ...] = ("won",)
            except ConcurrentTransitionError as exc:
                moved = exc.actual_version == exc.expected_version + 1
                outcome = ("lost", exc.entity_type, exc.key, exc.event, str(moved))
            with lock:
                outcomes.setdefault((key, event), []).append(outcome)
        finally:
            connections.close_all()

    for event in EVENTS:
        for key in keys:
            barrier = threading.Barrier(THREADS)
            threads = [
                threading.Thread(target=contend, args=(key, event, barrier)) for _ in range(THREADS)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
    for key in keys:
        for event in EVENTS:
            lost = ("lost", "order", key, event, "True")
            assert sorted(outcomes[key, event]) == [lost] * (THREADS - 1) + [("won",)]
        history = store.history("order", key)
        assert [r.seq for r in history] == [1, 2, 3, 4]
        assert [r.event for r in history] == list(EVENTS)
        assert store.load("order", key).version == len(history)
    assert store.disagreements("order") == []
