"""How often a claim looks for leases that ran out, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event

from statekit import Backoff
from tests.sweep_env import JobEnv, clear_job_tables, job_database, job_env

LEASE = timedelta(minutes=1)


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    with job_database(database_url) as engine:
        yield engine


@pytest.fixture
def env(engine: Engine) -> Iterator[JobEnv]:
    env = job_env(engine, Backoff(jitter=0))
    yield env
    clear_job_tables(engine, env.store)


def test_expired_leases_are_looked_for_at_most_once_a_second(env: JobEnv) -> None:
    probes: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "lease_until <=" in statement:
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
