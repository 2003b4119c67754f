"""`manage.py statekit sweep --once` in separate OS processes over Django-stored jobs
on PostgreSQL: two at once do every timeout and every compensation exactly once, and
a sweeper killed with SIGKILL mid-batch loses and doubles nothing.

The job machine's handlers (`tests.contract.jobs`) count their calls in `proof_calls`,
each insert committed on its own (see `proc_settings`), so a call counts even when
the compensation around it never commits: "exactly once" is a query."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connections
from django.db.models import Count

from statekit.contrib.django.models import Transition
from statekit.contrib.django.store import DjangoStore
from tests.contract.jobs import JobWorkflow
from tests.contrib.django.conftest import empty_tables, ready
from tests.contrib.django.processes import spawn_manage
from tests.contrib.django.testapp.models import Job
from tests.processes import go, result, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ALIAS = "postgresql"
CALLS = "proof_calls"  # proc_settings.CALLS_TABLE


@pytest.fixture
def store() -> Iterator[DjangoStore]:
    ready(ALIAS)
    empty_tables(ALIAS)
    with connections[ALIAS].cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {CALLS} (job_key varchar(64) NOT NULL, "
            "action varchar(64) NOT NULL, attempt integer NOT NULL)"
        )
    yield DjangoStore({JobWorkflow.machine: Job}, using=ALIAS)
    with connections[ALIAS].cursor() as cursor:
        cursor.execute(f"DROP TABLE {CALLS}")
    empty_tables(ALIAS)


def _overdue_jobs(count: int) -> list[str]:
    """`count` jobs that did `advance` and are 10 minutes past the deadline of `first`."""
    now = datetime.now(UTC)
    entered, deadline = now - timedelta(minutes=20), now - timedelta(minutes=10)
    keys = [f"job-{n:05d}" for n in range(count)]
    version = JobWorkflow.machine.version
    Job.objects.using(ALIAS).bulk_create(
        [
            Job(
                id=key,
                state="first",
                state_version=1,
                state_entered_at=entered,
                state_deadline_at=deadline,
                state_definition_version=version,
            )
            for key in keys
        ],
        batch_size=500,
    )
    Transition.objects.using(ALIAS).bulk_create(
        [
            Transition(
                entity_type="job",
                entity_key=key,
                seq=1,
                event="advance",
                source="new",
                target="first",
                at=entered,
                definition_version=version,
            )
            for key in keys
        ],
        batch_size=500,
    )
    return keys


def _sweep(**variables: str) -> subprocess.Popen[str]:
    return spawn_manage(
        ALIAS,
        *("statekit", "sweep", "--once", "--json", "--batch-size", "50"),
        STATEKIT_TEST_COUNT_CALLS="1",
        **variables,
    )


def _calls() -> dict[tuple[str, str], int]:
    with connections[ALIAS].cursor() as cursor:
        cursor.execute(f"SELECT job_key, action, count(*) FROM {CALLS} GROUP BY job_key, action")
        return {(key, action): n for key, action, n in cursor.fetchall()}


def _assert_each_exactly_once(store: DjangoStore, keys: list[str]) -> None:
    events = Transition.objects.using(ALIAS).filter(entity_type="job")
    per_event = dict(events.values_list("event").annotate(n=Count("*")).order_by())
    assert per_event == {"advance": len(keys), "@stuck": len(keys), "@compensated": len(keys)}
    states = dict(Job.objects.using(ALIAS).values_list("state").annotate(n=Count("*")).order_by())
    assert states == {"undone": len(keys)}
    assert _calls() == {(key, "undo_first"): 1 for key in keys}  # every call, committed or not
    undone = Job.objects.using(ALIAS).values_list("undone", flat=True).distinct()
    assert list(undone) == ["1"]  # each handler's mark saved once, with its completion
    done = store.compensations("job", status=["done"])
    assert len(done) == len(keys)
    assert {task.attempts for task in done} == {1}
    assert store.disagreements("job") == []


def test_two_manage_py_sweepers_at_once_do_everything_exactly_once(store: DjangoStore) -> None:
    keys = _overdue_jobs(2000)
    sweepers = [_sweep(STATEKIT_TEST_GATE="1") for _ in range(2)]
    for sweeper in sweepers:
        wait_ready(sweeper)  # both started, stopped before their first statement
    for sweeper in sweepers:
        go(sweeper)
    results: list[dict[str, Any]] = [result(sweeper) for sweeper in sweepers]
    assert sum(r["marked_stuck"] for r in results) == len(keys)
    assert sum(r["compensations_run"] for r in results) == len(keys)
    assert sum(r["compensated"] for r in results) == len(keys)
    assert all(r["marked_stuck"] > 0 for r in results)  # they did share the work
    assert all(r["compensations_run"] > 0 for r in results)
    _assert_each_exactly_once(store, keys)


def test_a_sweeper_killed_mid_batch_loses_and_doubles_nothing(store: DjangoStore) -> None:
    keys = _overdue_jobs(500)
    # Killed before the 120th stuck mark's UPDATE: batches 1 and 2 (50 each) are
    # committed, the third is 19 marks in and never commits.
    killed = _sweep(STATEKIT_TEST_HANG_AT="120")
    wait_ready(killed)
    os.kill(killed.pid, signal.SIGKILL)
    killed.communicate(timeout=30)
    assert killed.returncode == -signal.SIGKILL
    assert Job.objects.using(ALIAS).filter(stuck_at__isnull=False).count() == 100
    stuck = Transition.objects.using(ALIAS).filter(event="@stuck").count()
    assert stuck == 100  # nothing of the half-done batch
    assert _calls() == {}
    assert store.compensations("job", status=["running", "done"]) == []

    # A second sweeper finishes the work, each timeout and compensation exactly once.
    finisher = _sweep()
    finished = result(finisher)
    assert finished["marked_stuck"] == len(keys) - 100
    assert finished["compensations_run"] == len(keys)
    _assert_each_exactly_once(store, keys)
