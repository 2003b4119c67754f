"""Which overdue instances a claim takes, alone and beside another open claim, on
SQLite, PostgreSQL and MariaDB.

A lone claim takes the earliest deadlines. On PostgreSQL a claim made while another
claim of the same machine is open takes the latest ones, so two sweepers work from
both ends of the due list; MariaDB's second claim skips the rows the first holds and
takes the next earliest. Either way the batch lists its instances earliest first.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from statekit import Backoff
from statekit.store.marks import StuckMarks
from statekit.store.sqlalchemy import SQLAlchemyStore
from statekit.store.sqlalchemy.sweep import lane_lock
from tests.sweep_env import JobEnv, clear_job_tables, job_env
from tests.sweep_support import JobRow

KEYS = [f"d{n}" for n in range(8)]
"""Jobs in `first`, each entered a minute after the one before: d0's deadline is the
earliest, d7's the latest."""


@pytest.fixture
def env(engine: Engine) -> Iterator[JobEnv]:
    env = job_env(engine, Backoff(jitter=0))
    for key in KEYS:
        env.job(key, "advance")
        env.clock.advance(timedelta(minutes=1))
    env.clock.advance(timedelta(minutes=20))  # every deadline (entry + 10 min) passed
    yield env
    clear_job_tables(engine, env.store)


def _claimed(env: JobEnv, limit: int) -> Any:
    return env.store.overdue_batch("job", env.clock.now(), limit)


def test_a_lone_claim_takes_the_earliest_deadlines(env: JobEnv) -> None:
    with _claimed(env, 3) as batch:
        assert [s.key for s in batch.snapshots] == ["d0", "d1", "d2"]
    with _claimed(env, 3) as batch:  # the first claim committed: it is head again
        assert [s.key for s in batch.snapshots] == ["d0", "d1", "d2"]


def test_a_claim_beside_an_open_one_takes_the_other_end(env: JobEnv) -> None:
    if not env.store.skip_locked:
        pytest.skip("SQLite has one write lock: a second claim waits for the first")
    with _claimed(env, 3) as first:
        assert [s.key for s in first.snapshots] == ["d0", "d1", "d2"]
        with _claimed(env, 3) as second:
            if env.engine.dialect.name == "postgresql":
                assert [s.key for s in second.snapshots] == ["d5", "d6", "d7"]
            else:  # MariaDB: the rows the first claim holds are skipped
                assert [s.key for s in second.snapshots] == ["d3", "d4", "d5"]
            deadlines = [s.deadline_at for s in second.snapshots]
            assert deadlines == sorted(deadlines)
    with _claimed(env, 8) as batch:  # nothing was lost or left locked
        assert [s.key for s in batch.snapshots] == KEYS


def test_a_lock_key_held_elsewhere_turns_the_claim_around_and_loses_nothing(
    env: JobEnv,
) -> None:
    """PostgreSQL: the advisory lock only turns the claim around. An application
    session holding the key statekit's claim tries makes a lone claim take the latest
    deadlines; a second claim beside it takes the rest, and nothing is lost."""
    if env.engine.dialect.name != "postgresql":
        pytest.skip("the claim's lanes are PostgreSQL's")
    first, second = lane_lock(env.store.binding("job"))
    statement = text(f"SELECT pg_advisory_lock({first}, {second})")
    with env.engine.connect() as holder:
        holder.execute(statement)
        try:
            with _claimed(env, 3) as batch:
                assert [s.key for s in batch.snapshots] == ["d5", "d6", "d7"]
                with _claimed(env, 8) as rest:
                    assert [s.key for s in rest.snapshots] == KEYS[:5]
        finally:
            holder.execute(text("SELECT pg_advisory_unlock_all()"))
            holder.commit()


def test_two_marks_at_once_work_from_both_ends_and_mark_each_instance_once(
    env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-statement stuck mark (PostgreSQL) beside an open claim takes the latest
    deadlines; elsewhere the set-based mark takes the rows the open claim leaves."""
    if not env.store.skip_locked:
        pytest.skip("SQLite has one write lock: a second claim waits for the first")
    original = SQLAlchemyStore.mark_overdue_stuck
    marked_first: list[list[str]] = []

    def observed(self: SQLAlchemyStore, *args: Any, **kwargs: Any) -> StuckMarks | None:
        marks = original(self, *args, **kwargs)
        with env.engine.connect() as conn:
            stuck = select(JobRow.id).where(JobRow.stuck_at.is_not(None)).order_by(JobRow.id)
            marked_first.append(list(conn.execute(stuck).scalars()))
        return marks

    env.sweeper.deadlines.batch_size = 2
    monkeypatch.setattr(SQLAlchemyStore, "mark_overdue_stuck", observed)
    errors: list[BaseException] = []
    with _claimed(env, 3) as held:
        assert [s.key for s in held.snapshots] == ["d0", "d1", "d2"]

        def sweep() -> None:
            try:
                env.sweeper.run_once(drain=False)
            except BaseException as exc:  # reported below
                errors.append(exc)

        thread = threading.Thread(target=sweep)
        thread.start()
        thread.join(60)
        assert not thread.is_alive()
    assert errors == []
    if env.engine.dialect.name == "postgresql":
        assert marked_first[0] == ["d6", "d7"]
    else:
        assert marked_first[0] == ["d3", "d4"]
    assert marked_first[-1] == KEYS[3:]  # the held rows were skipped, the rest marked
    result = env.sweeper.run_once(drain=False)  # the held claim committed unchanged
    assert result.marked_stuck == 3
    with env.engine.connect() as conn:
        history = conn.execute(
            text(
                "SELECT entity_key, count(*) FROM statekit_transitions "
                "WHERE event = '@stuck' GROUP BY entity_key ORDER BY entity_key"
            )
        ).all()
    assert [tuple(row) for row in history] == [(key, 1) for key in KEYS]
