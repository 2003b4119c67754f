"""The compensation drain against application transitions, other writers, hung
handlers and a stop request, and its chained claims, on SQLite, PostgreSQL and
MariaDB."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text, update
from sqlalchemy.orm import object_session

from statekit import (
    Backoff,
    CompensationContext,
    CompensationTask,
    ConcurrentTransitionError,
    ManualClock,
    Sweeper,
    SweeperError,
    SweepResult,
)
from statekit.store.protocol import ChainedClaims
from tests.contract.sweeper_contract import Gate
from tests.sql_support import engine_for
from tests.sweep_env import JobEnv as Env
from tests.sweep_env import clear_job_tables, job_env
from tests.sweep_support import HOOKS, JobRow


@pytest.fixture
def env(engine: Engine) -> Iterator[Env]:
    HOOKS.clear()
    env = job_env(engine, Backoff(base=timedelta(seconds=30), jitter=0))
    yield env
    HOOKS.clear()
    for thread in threading.enumerate():  # handlers abandoned after a timeout
        if thread.name.startswith("statekit-compensation"):
            thread.join(60)
    clear_job_tables(engine, env.store)


def _in_thread(work: Callable[[], SweepResult]) -> tuple[threading.Thread, list[SweepResult]]:
    results: list[SweepResult] = []
    thread = threading.Thread(target=lambda: results.append(work()), name="test-sweeper")
    thread.start()
    return thread, results


def test_a_transition_out_of_stuck_settles_the_open_compensations(env: Env) -> None:
    env.stuck("final", "advance", "continue_")
    env.jobs.fire_by_key("final", "finish")  # the application completes it after all
    env.stuck("moved", "advance")
    env.jobs.fire_by_key("moved", "continue_")

    result = env.sweeper.run_once()
    assert (result.compensations_run, result.compensated, result.compensations_settled) == (0, 0, 3)
    assert env.calls() == {}
    assert (env.row("final").state, env.row("final").undone) == ("done", None)
    assert env.events("final") == ["advance", "continue_", "@stuck", "finish"]
    assert env.statuses("final") == [  # the first was claimed, then settled unrun
        ("undo_second", "cancelled", 1),
        ("undo_first", "cancelled", 0),
    ]
    assert "left stuck" in (env.store.compensations("job", "final")[0].last_error or "")
    assert (env.row("moved").state, env.row("moved").stuck_at) == ("second", None)
    assert env.events("moved") == ["advance", "@stuck", "continue_"]
    # Stuck again later (past the deadline of `second`): a new mark reopens the settled
    # step, so both completed steps are undone; the finished instance stays finished.
    env.clock.advance(hours=1)
    again = env.sweeper.run_once()
    assert (again.marked_stuck, again.compensations_run, again.compensated) == (1, 2, 1)
    assert (env.row("moved").state, env.row("moved").undone) == ("undone", "21")
    assert env.calls() == {("moved", "undo_second"): 1, ("moved", "undo_first"): 1}
    assert env.row("final").state == "done"


def test_a_transition_while_the_handler_runs_discards_its_writes(env: Env) -> None:
    env.stuck("racing", "advance", "continue_")
    gate = Gate("racing", "undo_second")
    HOOKS.append(gate)
    thread, results = _in_thread(env.sweeper.run_once)
    assert gate.entered.wait(30)
    env.jobs.fire_by_key("racing", "finish")  # lands while the handler is out
    gate.go.set()
    thread.join(60)
    [result] = results
    assert (result.compensations_run, result.compensated, result.compensations_settled) == (0, 0, 2)
    row = env.row("racing")
    assert (row.state, row.undone, row.stuck_at) == ("done", None, None)
    assert env.calls() == {}  # the handler's own writes were rolled back
    assert env.events("racing") == ["advance", "continue_", "@stuck", "finish"]
    assert [status for _, status, _ in env.statuses("racing")] == ["cancelled", "cancelled"]
    env.clock.advance(hours=1)
    assert env.sweeper.run_once().compensations_run == 0
    assert gate.calls == 1


def _impatient_write(engine: Engine, keys: list[str]) -> None:
    """Update `keys` in one transaction that gives up after a second of waiting."""
    name = engine.dialect.name
    url = engine.url.render_as_string(hide_password=False)
    other = engine_for(url, busy_timeout_ms=1000) if name == "sqlite" else engine_for(url)
    try:
        with other.begin() as conn:
            if name == "postgresql":
                conn.execute(text("SET LOCAL lock_timeout = '1s'"))
            elif name in {"mysql", "mariadb"}:
                conn.execute(text("SET SESSION innodb_lock_wait_timeout = 1"))
            conn.execute(update(JobRow).where(JobRow.id.in_(keys)).values(frozen=True))
    finally:
        other.dispose()


def test_no_lock_is_held_while_a_handler_runs(env: Env) -> None:
    env.stuck("slow", "advance")
    env.job("bystander")
    gate = Gate("slow", "undo_first")
    HOOKS.append(gate)
    thread, results = _in_thread(env.sweeper.run_once)
    assert gate.entered.wait(30)
    try:  # the instance's own row and another one, while its handler is blocked
        _impatient_write(env.engine, ["slow", "bystander"])
    finally:
        gate.go.set()
        thread.join(60)
    [result] = results
    assert (result.compensations_run, result.compensated) == (1, 1)
    row = env.row("slow")
    assert (row.state, row.undone, row.frozen) == ("undone", "1", True)
    assert env.row("bystander").frozen is True
    assert env.calls() == {("slow", "undo_first"): 1}


def test_a_hung_handler_times_out_as_a_failed_attempt(env: Env) -> None:
    sweeper = Sweeper(
        [env.jobs],
        clock=env.clock,
        backoff=Backoff(base=timedelta(seconds=30), jitter=0),
        handler_timeout=timedelta(seconds=0.2),
    )
    env.stuck("hung", "advance")
    gate = Gate("hung", "undo_first")
    HOOKS.append(gate)
    try:
        result = sweeper.run_once()  # returns although the handler never does
        assert (result.compensations_run, result.compensations_failed) == (0, 1)
        [task] = env.store.compensations("job", "hung")
        assert (task.status, task.attempts) == ("pending", 1)
        assert "CompensationTimeoutError" in (task.last_error or "")
        assert "did not return within 0.2s" in (task.last_error or "")
        assert task.next_attempt_at == env.clock.now() + timedelta(seconds=30)
    finally:
        gate.go.set()
    for thread in threading.enumerate():
        if thread.name.startswith("statekit-compensation"):
            thread.join(60)
    assert env.calls() == {}  # the abandoned call's writes never commit
    HOOKS.clear()
    env.clock.advance(seconds=30)
    assert sweeper.run_once().compensations_run == 1
    assert env.row("hung").state == "undone"
    assert env.calls() == {("hung", "undo_first"): 1}


def test_handlers_returning_about_their_timeout_in_slots_complete_or_fail_never_both(
    env: Env,
) -> None:
    """Slots run handlers in their own threads and a watchdog gives up the ones past
    the timeout: whichever wins for a handler that returns just about then, the task
    is either done with its writes or failed without them, once."""
    keys = [f"r{n}" for n in range(24)]
    for key in keys:
        env.stuck(key, "advance")
    rng = random.Random(7)
    delays = {key: rng.uniform(0.05, 0.15) for key in keys}
    HOOKS.append(lambda job, undo: time.sleep(delays[job.id]))
    sweeper = Sweeper(
        [env.jobs],
        clock=env.clock,
        backoff=Backoff(base=timedelta(seconds=30), jitter=0),
        handler_timeout=timedelta(seconds=0.1),
        concurrency=4,
    )
    result = sweeper.run_once()
    for thread in threading.enumerate():  # given-up handlers return, then roll back
        if thread.name.startswith("statekit-compensation"):
            thread.join(60)
    calls = env.calls()
    done = failed = 0
    for key in keys:
        [task] = env.store.compensations("job", key)
        row = env.row(key)
        assert task.attempts == 1
        if task.status == "done":
            done += 1
            assert (row.state, row.undone, calls.get((key, "undo_first"))) == ("undone", "1", 1)
        else:
            failed += 1
            assert task.status == "pending"
            assert "did not return within 0.1s" in (task.last_error or "")
            assert (row.state, row.undone, (key, "undo_first") in calls) == ("first", None, False)
    assert (result.compensations_run, result.compensations_failed) == (done, failed)
    assert done + failed == len(keys)
    assert done > 0  # both sides of the race were taken
    assert failed > 0


def test_a_handler_timeout_shorter_than_the_lease_is_required(env: Env) -> None:
    with pytest.raises(ValueError, match=r"handler_timeout .* shorter than the lease"):
        Sweeper([env.jobs], lease=timedelta(seconds=2), handler_timeout=timedelta(seconds=2))
    assert Sweeper([env.jobs]).handler_timeout == timedelta(minutes=1)
    short = Sweeper([env.jobs], lease=timedelta(seconds=30))  # the default fits in it
    assert short.handler_timeout == timedelta(seconds=15)
    assert Sweeper([env.jobs], handler_timeout=None).handler_timeout is None


def test_stop_is_checked_between_compensations(env: Env) -> None:
    for key in ("s1", "s2", "s3"):
        env.stuck(key, "advance")
    seen: list[str] = []

    def count(job: JobRow, undo: CompensationContext) -> None:
        seen.append(job.id)

    HOOKS.append(count)
    result = env.sweeper.run_once(stop=lambda: bool(seen))
    assert result.compensations_run == 1
    # The others were never claimed: nothing waits out a lease before the next pass.
    waiting = [s for k in ("s1", "s2", "s3") if k not in seen for s in env.statuses(k)]
    assert waiting == [("undo_first", "pending", 0)] * 2
    assert env.sweeper.run_once().compensations_run == 2
    assert sorted(seen) == ["s1", "s2", "s3"]


def test_compensate_refuses_an_instance_in_a_final_state(env: Env) -> None:
    env.job("finished", "advance", "continue_", "finish")
    with pytest.raises(SweeperError, match="final state 'done'") as refused:
        env.sweeper.compensate("job", "finished", reason="too late", actor="app")
    assert (refused.value.key, refused.value.state) == ("finished", "done")
    assert env.events("finished") == ["advance", "continue_", "finish"]


class TrippedClock(ManualClock):
    """A manual clock that runs `trip` on the first reading after it is armed."""

    def __init__(self, start: datetime, trip: Callable[[], None]) -> None:
        super().__init__(start)
        self.trip = trip
        self.armed = False

    def now(self) -> datetime:
        if self.armed:
            self.armed = False
            self.trip()
        return super().now()


def test_a_transition_between_handler_and_completion_discards_its_writes(env: Env) -> None:
    if env.engine.dialect.name == "sqlite":
        pytest.skip("the handler's own INSERT holds SQLite's write lock until completion")
    env.stuck("late", "advance")
    clock = TrippedClock(env.clock.now(), lambda: env.jobs.fire_by_key("late", "continue_"))

    def arm(job: JobRow, undo: CompensationContext) -> None:
        clock.armed = True  # the drain reads the clock once the handler has returned

    HOOKS.append(arm)
    result = Sweeper([env.jobs], clock=clock).run_once()
    assert (result.compensations_run, result.compensations_settled) == (0, 1)
    assert (env.row("late").state, env.row("late").undone) == ("second", None)
    assert env.calls() == {}
    assert env.statuses("late") == [("undo_first", "cancelled", 1)]


# Chained claims: a slot whose handler returned claims its next task in the completion
# transaction (`ChainedClaims`), claimed if and only if that transaction commits.


@dataclass
class Claims:
    """Counts the store's claims: standalone, and chained (with what they took)."""

    own: int = 0
    own_taken: int = 0
    chained: list[list[str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def watch(self, store: Any) -> None:
        claim, chain = store.claim_compensations, store.claim_compensations_in

        def counted(now: datetime, limit: int, lease: timedelta) -> list[CompensationTask]:
            result: list[CompensationTask] = claim(now, limit, lease)
            with self.lock:
                self.own += 1
                self.own_taken += len(result)
            return result

        def chained(
            entity: object, now: datetime, limit: int, lease: timedelta
        ) -> list[CompensationTask]:
            tasks: list[CompensationTask] = chain(entity, now, limit, lease)
            with self.lock:
                self.chained.append([f"{t.key}/{t.action}" for t in tasks])
            return tasks

        # On PostgreSQL the completion's own statement claims (`relock_and_complete`
        # returns what it claimed; None when it made no claim and the drain claims).
        relock = store.relock_and_complete

        def relocking(*args: Any) -> Any:
            relocked = relock(*args)
            if relocked.claimed is not None:
                with self.lock:
                    self.chained.append([f"{t.key}/{t.action}" for t in relocked.claimed])
            return relocked

        store.claim_compensations = counted
        store.claim_compensations_in = chained
        store.relock_and_complete = relocking


def test_the_sql_store_chains_its_claims(env: Env) -> None:
    assert isinstance(env.store, ChainedClaims)
    assert env.sweeper.drain.chained is env.store


@pytest.mark.parametrize("concurrency", [1, 4])
def test_the_next_task_is_claimed_by_the_completion_that_frees_the_slot(
    env: Env, concurrency: int
) -> None:
    for key in ("c1", "c2", "c3", "c4", "c5"):
        env.stuck(key, "advance")
    env.stuck("two", "advance", "continue_")
    order: list[str] = []
    HOOKS.append(lambda job, undo: order.append(f"{job.id}/{undo.action}"))
    claims = Claims()
    claims.watch(env.store)
    sweeper = Sweeper([env.jobs], clock=env.clock, concurrency=concurrency)
    result = sweeper.run_once()

    assert (result.compensations_run, result.compensated) == (7, 6)
    assert sorted(order) == sorted(
        [f"c{i}/undo_first" for i in range(1, 6)] + ["two/undo_second", "two/undo_first"]
    )
    assert order.index("two/undo_second") < order.index("two/undo_first")  # newest first
    for key in ("c1", "c2", "c3", "c4", "c5", "two"):  # each ran once, on its first claim
        assert all(attempts == 1 for _, _, attempts in env.statuses(key))
        assert env.row(key).state == "undone"
    assert len(claims.chained) == 7  # every completion claimed for its slot
    taken = [task for tasks in claims.chained for task in tasks]
    assert claims.own_taken + len(taken) == 7  # each task claimed once
    if concurrency == 1:  # one slot: the first claim, then the chain took every task
        # (on PostgreSQL the chained claim is part of the completion's statement and
        # does not see it: `two`'s older step may need a claim of its own)
        merged = env.engine.dialect.name == "postgresql"
        assert (claims.own_taken, len(taken)) in ([(1, 6), (2, 5)] if merged else [(1, 6)])


def test_a_completion_that_fails_takes_its_chained_claim_with_it(env: Env) -> None:
    env.stuck("breaks", "advance")
    env.job("bystander")  # an existing key: a second row with it cannot be flushed

    def break_the_flush(job: JobRow, undo: CompensationContext) -> None:
        if job.id == "breaks" and undo.attempt == 1:
            session = object_session(job)
            assert session is not None
            session.add(JobRow(id="bystander"))  # flushed by the completion's commit

    HOOKS.append(break_the_flush)
    env.clock.advance(seconds=1)
    env.stuck("next", "advance")  # due after `breaks`: the chained claim takes it
    claims = Claims()
    claims.watch(env.store)
    result = env.sweeper.run_once()

    assert claims.chained[0] == ["next/undo_first"]  # claimed, then rolled back
    assert (result.compensations_failed, result.compensations_run) == (1, 1)
    # `next` was claimed again by a claim of its own and ran on its first attempt: the
    # rolled-back chained claim left it pending, not running behind a lease.
    assert env.statuses("next") == [("undo_first", "done", 1)]
    assert env.row("next").state == "undone"
    assert env.statuses("breaks") == [("undo_first", "pending", 1)]
    assert env.calls() == {("next", "undo_first"): 1}


def test_a_stop_ends_the_chain(env: Env) -> None:
    for key in ("s1", "s2", "s3"):
        env.stuck(key, "advance")
    seen: list[str] = []
    HOOKS.append(lambda job, undo: seen.append(job.id))
    claims = Claims()
    claims.watch(env.store)
    result = env.sweeper.run_once(stop=lambda: len(seen) >= 2)

    assert result.compensations_run == 2  # the chained task runs although stop is asked
    assert claims.chained == [[f"{seen[1]}/undo_first"]]
    waiting = [s for k in ("s1", "s2", "s3") if k not in seen for s in env.statuses(k)]
    assert waiting == [("undo_first", "pending", 0)]  # never claimed


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_drain_batch_size_claims_no_more_than_it_runs(env: Env, concurrency: int) -> None:
    keys = [f"b{i}" for i in range(6)]
    for key in keys:
        env.stuck(key, "advance")
    sweeper = Sweeper([env.jobs], clock=env.clock, concurrency=concurrency, drain_batch_size=3)
    result = sweeper.run_once()
    assert result.compensations_run == 3
    statuses = sorted(status for key in keys for status in env.statuses(key))
    # The rest were never claimed: no attempt spent, no lease to wait out.
    assert statuses == [("undo_first", "done", 1)] * 3 + [("undo_first", "pending", 0)] * 3
    assert sweeper.run_once().compensations_run == 3


# `relock_and_complete` (LockedCompletion): one statement on PostgreSQL, the relock and
# the completion elsewhere; the task is completed only while the row has not moved.


@pytest.mark.parametrize("outcome", ["unmoved", "moved", "claim lost"])
def test_relock_and_complete_completes_only_an_unmoved_row_under_its_claim(
    env: Env, outcome: str
) -> None:
    env.stuck("rc", "advance")
    store = env.store
    lease = timedelta(minutes=5)
    [task] = store.claim_compensations(env.clock.now(), 1, lease)
    env.stuck("other", "advance")  # due: what a claim in the completion would take
    held = env.row("rc").state_version
    merged = env.engine.dialect.name == "postgresql"  # the claim is in the statement
    with store.handler_unit("job", "rc", task) as unit:
        unit.release()  # the handler would run here, no transaction open
        if outcome == "moved":
            with env.engine.begin() as conn:
                conn.execute(update(JobRow).where(JobRow.id == "rc").values(state_version=held + 1))
        if outcome == "claim lost":
            with env.engine.begin() as conn:
                conn.execute(
                    update(store.tables.compensations)
                    .where(store.tables.compensations.c.id == task.id)
                    .values(claim_token="another sweeper")
                )
        if outcome == "claim lost":
            with pytest.raises(ConcurrentTransitionError):
                store.relock_and_complete(unit, task, held, env.clock.now(), 1, lease)
            unit.discard()
        else:
            relocked = store.relock_and_complete(unit, task, held, env.clock.now(), 1, lease)
            current, remaining = relocked.snapshot, relocked.remaining
            assert current.key == "rc"
            assert current.stuck_at is not None
            if outcome == "moved":
                assert (current.version, remaining) == (held + 1, None)
                assert not relocked.claimed  # nothing completed, nothing claimed
                unit.discard()
            else:
                assert (current.version, remaining) == (held, 0)
                if merged:
                    assert [(t.key, t.action) for t in relocked.claimed or []] == [
                        ("other", "undo_first")
                    ]
                else:
                    assert relocked.claimed is None  # the drain claims on its own
    status = "done" if outcome == "unmoved" else "running"
    assert env.statuses("rc") == [("undo_first", status, 1)]
    assert len(store.attempts(task.id)) == (1 if outcome == "unmoved" else 0)
    claimed = outcome == "unmoved" and merged  # committed with the completion, or not at all
    assert env.statuses("other") == [
        ("undo_first", *(("running", 1) if claimed else ("pending", 0)))
    ]
