"""How often a claim looks for leases that ran out, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, select

from statekit import Backoff
from tests.sweep_env import JobEnv, clear_job_tables, job_env

LEASE = timedelta(minutes=1)


@pytest.fixture
def env(engine: Engine) -> Iterator[JobEnv]:
    env = job_env(engine, Backoff(jitter=0))
    yield env
    clear_job_tables(engine, env.store)


def test_expired_leases_are_looked_for_at_most_once_a_second(env: JobEnv) -> None:
    probes: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # The probe: a SELECT of expired leases, or the UPDATE that takes them in one
        # statement (PostgreSQL, SQLite); never the claim's own `SET lease_until=`.
        verb = statement.lstrip().upper().split(None, 1)[0]
        if verb in ("SELECT", "UPDATE") and "lease_until <=" in statement:
            probes.append(statement)

    for key in ("a", "b"):
        env.stuck(key, "advance")
    start = env.clock.now()
    claim = env.store.claim_compensations
    event.listen(env.engine, "before_cursor_execute", count)
    try:
        [first] = claim(start, 1, LEASE)
        [second] = claim(start + timedelta(seconds=0.5), 1, LEASE)
        assert len(probes) == 1  # the second claim, within the second, skipped the probe
        assert {first.key, second.key} == {"a", "b"}

        later = start + LEASE + timedelta(seconds=1)
        [taken] = claim(later, 1, LEASE)  # both leases ran out: one is taken over
        assert len(probes) == 2
        assert (taken.key, taken.attempts) == (first.key, 2)
        assert claim(later + timedelta(seconds=0.5), 1, LEASE) == []  # not looked for yet
        assert len(probes) == 2
        [other] = claim(later + timedelta(seconds=1), 1, LEASE)
        assert (other.key, other.attempts, len(probes)) == (second.key, 2, 3)

        assert claim(start, 1, LEASE) == []  # a clock that stepped back probes at once
        assert len(probes) == 4
    finally:
        event.remove(env.engine, "before_cursor_execute", count)


def test_a_batch_claim_skips_a_task_another_transaction_holds(env: JobEnv) -> None:
    """PostgreSQL and MariaDB: a task row locked elsewhere (another sweeper's claim in
    flight) is skipped, not waited for; the batch takes the other instances' tasks."""
    if env.engine.dialect.name == "sqlite":
        pytest.skip("SQLite has one write lock, not row locks")
    keys = [f"s{n}" for n in range(4)]
    for key in keys:
        env.stuck(key, "advance")
    c = env.store.tables.compensations
    with env.engine.connect() as other:
        s0 = other.execute(select(c.c.id).where(c.c.entity_key == "s0")).scalar_one()
    with env.engine.connect() as other, other.begin():  # locks that row alone (by its key)
        locked = other.execute(select(c.c.id).where(c.c.id == s0).with_for_update()).scalar_one()
        started = time.monotonic()
        claimed = env.store.claim_compensations(env.clock.now(), 10, LEASE)
        assert time.monotonic() - started < 5  # no lock wait
        assert sorted(t.key for t in claimed) == keys[1:]
        assert locked not in {t.id for t in claimed}
    [rest] = env.store.claim_compensations(env.clock.now(), 10, LEASE)
    assert (rest.key, rest.attempts) == ("s0", 1)
