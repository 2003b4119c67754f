"""The drain's guarantees under concurrency, proven with two sweeper processes at
concurrency 16 over 5,000 compensations of 1,000 orders (5 steps each), on
PostgreSQL and MariaDB (issue 16): each handler called exactly once, never two of
one order at once, every order compensated newest step first."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import func, select

from statekit.store.sqlalchemy import SQLAlchemyStore
from tests.drain_proof import NAME, STEPS, ProofBase, ProofOrder, ProofWorkflow, calls, load
from tests.processes import together
from tests.sql_support import engine_for, fresh_database

pytestmark = pytest.mark.slow

ORDERS = 1_000
CONCURRENCY = 16


@pytest.fixture(
    params=[
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


def test_two_sweepers_at_concurrency_16_compensate_each_step_once_newest_first(
    url: str,
) -> None:
    engine = engine_for(url)
    ProofBase.metadata.create_all(engine)
    store = SQLAlchemyStore(engine, {ProofWorkflow.machine: ProofOrder})
    store.create_tables()
    keys = load(store, ORDERS)

    results = together("drain_proof", 2, url=url, concurrency=CONCURRENCY)

    assert sum(r["compensations_run"] for r in results) == ORDERS * STEPS
    assert sum(r["compensated"] for r in results) == ORDERS
    assert all(r["compensations_run"] > 0 for r in results)  # both sweepers worked
    assert sum(r["compensations_failed"] + r["lost_races"] for r in results) == 0
    with engine.connect() as conn:
        rows = conn.execute(
            select(calls.c.order_key, calls.c.step, calls.c.started_ns, calls.c.ended_ns)
        ).all()
        orders = dict(conn.execute(select(ProofOrder.id, ProofOrder.undone)).all())
        states = dict(
            conn.execute(select(ProofOrder.state, func.count()).group_by(ProofOrder.state)).all()
        )
    by_order: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for key, step, started, ended in rows:
        by_order[key].append((started, ended, step))
    # Each handler called exactly once: one logged call per (order, step), 5,000 in all.
    assert len(rows) == ORDERS * STEPS
    assert {(key, step) for key, step, _, _ in rows} == {
        (key, step) for key in keys for step in range(1, STEPS + 1)
    }
    for key, spans in by_order.items():
        spans.sort()
        # Never two of one order at once: each call ended before the next one started.
        for (_, ended, step), (started, _, later) in pairwise(spans):
            assert ended <= started, f"{key}: step {step} and step {later} overlapped"
        # Newest first, by the calls and by what their completions committed.
        assert [step for _, _, step in spans] == [5, 4, 3, 2, 1], key
    assert orders == dict.fromkeys(keys, "54321")
    assert states == {"undone": ORDERS}
    done = store.compensations(NAME, status=["done"])
    assert len(done) == ORDERS * STEPS
    assert {task.attempts for task in done} == {1}
    engine.dispose()
