"""Set-based stuck marking (`SQLAlchemyStore.mark_overdue_stuck`) against the
per-instance path, on SQLite, PostgreSQL and MariaDB.

The same data swept both ways must leave the same rows: instances, `@stuck` history
rows and compensations (several compensating steps with their own attempts, a
cancelled compensation reopened, a key handed out again, an instance whose state
fires a timeout event, one the machine cannot read). Two sweepers racing over the
same overdue instances mark each exactly once.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, text, update

from statekit import Backoff, Listener
from statekit.records import TransitionRecord
from statekit.store.marks import StuckMarks
from statekit.store.sqlalchemy import SQLAlchemyStore
from statekit.sweeper import SweepResult
from tests.sweep_env import JobEnv, clear_job_tables, job_env
from tests.sweep_support import JobRow

pytestmark = pytest.mark.filterwarnings("error")


class Stuck(Listener):
    def __init__(self) -> None:
        self.records: list[TransitionRecord] = []

    def on_stuck(self, record: TransitionRecord) -> None:
        self.records.append(record)


def _scenario(env: JobEnv) -> None:
    """Jobs of every kind the deadline phase meets, then past their deadlines."""
    env.job("a", "advance")  # first: one compensating step
    env.job("b", "advance", "continue_")  # second: two steps, two handlers
    env.job("c")  # new: its timeout fires `expire`
    env.job("d", frozen=True)  # new, but `expire` is refused: marked stuck
    env.stuck("e", "advance")  # stuck once, resolved back into `first`: its
    env.sweeper.resolve("job", "e", "first", note="retry it", actor="ops")  # undo reopens
    env.job("f", "advance", "continue_")  # the key is handed out again
    with env.engine.begin() as conn:
        conn.execute(text("DELETE FROM jobs WHERE id = 'f'"))
    env.job("f", "advance")
    env.job("g", "advance")  # stored under a definition version the machine lacks
    with env.engine.begin() as conn:
        conn.execute(
            update(JobRow.__table__).where(JobRow.id == "g").values(state_definition_version=99)
        )
    for key in ("h", "i", "j", "k"):  # a second batch (batches of 3)
        env.job(key, "advance")
    env.clock.advance(timedelta(minutes=11))


Rows = dict[str, list[dict[str, Any]]]


def _rows(env: JobEnv) -> Rows:
    """Every row of the jobs, the history and the outbox, but for generated ids."""
    jobs: Any = JobRow.__table__
    history, outbox = env.store.tables.transitions, env.store.tables.compensations
    queries = {
        "jobs": select(jobs).order_by(jobs.c.id),
        "history": select(*(c for c in history.c if c.name != "id")).order_by(
            history.c.entity_key, history.c.seq
        ),
        "outbox": select(*(c for c in outbox.c if c.name != "id")).order_by(
            outbox.c.entity_key, outbox.c.step_seq, outbox.c.action
        ),
    }
    with env.engine.connect() as conn:
        return {
            name: [dict(row._mapping) for row in conn.execute(query)]
            for name, query in queries.items()
        }


def _sweep(
    engine: Engine, *, set_based: bool, monkeypatch: pytest.MonkeyPatch, listening: bool = True
) -> tuple[Rows, SweepResult, list[TransitionRecord], int]:
    """Sweep the scenario's deadlines set-based or instance by instance; the rows left,
    the result, the stuck notices and how many instances the set-based path marked.
    `listening`: whether an `on_stuck` listener is registered (without one the
    set-based path is asked for its counts alone)."""
    marked: list[StuckMarks] = []
    original = SQLAlchemyStore.mark_overdue_stuck

    def counting(self: SQLAlchemyStore, *args: Any, **kwargs: Any) -> StuckMarks | None:
        if not set_based:
            return None
        marks = original(self, *args, **kwargs)
        if marks is not None:
            marked.append(marks)
        return marks

    listener = Stuck()
    env = job_env(engine, Backoff(jitter=0), listener if listening else None)
    try:
        _scenario(env)
        with monkeypatch.context() as patched:
            patched.setattr(SQLAlchemyStore, "mark_overdue_stuck", counting)
            result = env.sweeper.run_once(drain=False)
        rows = _rows(env)
    finally:
        clear_job_tables(engine, env.store)
    assert sum(len(m.marked) for m in marked) == (sum(m.count for m in marked) if listening else 0)
    return rows, result, listener.records, sum(m.count for m in marked)


def test_set_based_marking_writes_what_the_per_instance_path_writes(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows, result, notices, by_sets = _sweep(engine, set_based=True, monkeypatch=monkeypatch)
    rows_1, result_1, notices_1, none = _sweep(engine, set_based=False, monkeypatch=monkeypatch)
    assert none == 0
    assert by_sets == 8  # a, b, e, f, h, i, j, k; d (refused) and g (set aside) are not
    assert rows == rows_1
    assert result.as_dict() == result_1.as_dict()
    assert (result.marked_stuck, result.timed_out, result.set_aside) == (9, 1, 1)
    key = lambda r: r.key  # noqa: E731
    assert sorted(notices, key=key) == sorted(notices_1, key=key)
    outbox = [(r["entity_key"], r["action"], r["status"]) for r in rows["outbox"]]
    assert [a for k, a, status in outbox if k == "b"] == ["undo_first", "undo_second"]
    assert [a for k, a, status in outbox if k == "e"] == ["undo_first"]  # reopened, once
    assert [a for k, a, status in outbox if k == "f"] == ["undo_first"]  # the new life only
    assert all(status == "pending" for _, _, status in outbox)


def test_without_listeners_the_marking_returns_counts_and_writes_the_same(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows, result, notices, by_sets = _sweep(
        engine, set_based=True, monkeypatch=monkeypatch, listening=False
    )
    rows_1, result_1, _, by_sets_1 = _sweep(engine, set_based=True, monkeypatch=monkeypatch)
    assert notices == []
    assert by_sets == by_sets_1 == 8
    assert rows == rows_1
    assert result.as_dict() == result_1.as_dict()
    assert len(rows["outbox"]) == len(rows_1["outbox"]) > by_sets


def test_two_sweepers_racing_mark_each_instance_once(engine: Engine) -> None:
    one, two = (job_env(engine, Backoff(jitter=0)) for _ in range(2))
    keys = [f"r{i:03}" for i in range(60)]
    try:
        for key in keys:
            one.job(key, "advance")
        for env in (one, two):
            env.clock.advance(timedelta(minutes=11))
            env.sweeper.deadlines.batch_size = 4
        results: list[SweepResult] = []
        errors: list[BaseException] = []
        start = threading.Barrier(2)

        def sweep(env: JobEnv) -> None:
            try:
                start.wait()
                results.append(env.sweeper.run_once(drain=False))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=sweep, args=(env,)) for env in (one, two)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert sum(r.marked_stuck for r in results) == len(keys)
        assert sum(r.set_aside + r.lost_races for r in results) == 0
        rows = _rows(one)
        assert {(r["id"], r["state_version"]) for r in rows["jobs"]} == {(k, 2) for k in keys}
        stuck = [r["entity_key"] for r in rows["history"] if r["event"] == "@stuck"]
        assert sorted(stuck) == keys
        assert [(r["entity_key"], r["action"]) for r in rows["outbox"]] == [
            (key, "undo_first") for key in keys
        ]
    finally:
        clear_job_tables(engine, one.store)
