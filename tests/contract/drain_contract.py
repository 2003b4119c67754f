"""The drain with `concurrency` above 1, written once and run on each `SweepStore`.

Subclass `ConcurrentDrainContract` next to a `SweeperContract` subclass: it takes the
same fixtures (see `tests.contract.sweeper_contract`). Handlers here sleep, so that
calls overlap when they may; the tests measure how many ran at once and never
assert on how long anything took.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from statekit import Backoff, CompensationContext, InvalidArgumentError, StoreError, Sweeper
from tests.contract.jobs import CALLS, FAILURES, HOOKS
from tests.contract.sweeper_contract import Env, Gate, SweeperFixtures


class Overlap:
    """A hook that sleeps `seconds` in every handler call and measures which calls
    were running at the same time."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.lock = threading.Lock()
        self.running: list[str] = []
        self.most_at_once = 0
        self.same_instance = 0
        """Calls that started while another call of their instance was running."""

    def __call__(self, job: Any, undo: CompensationContext) -> None:
        key = str(job.id)
        with self.lock:
            self.same_instance += key in self.running
            self.running.append(key)
            self.most_at_once = max(self.most_at_once, len(self.running))
        try:
            time.sleep(self.seconds)  # a remote call
        finally:
            with self.lock:
                self.running.remove(key)


class ConcurrentDrainContract(SweeperFixtures):
    """Up to N handlers at once, each compensation still its own unit."""

    def sweeper_of(self, env: Env, concurrency: int, **options: Any) -> Sweeper:
        backoff = Backoff(base=timedelta(seconds=30), jitter=0)
        return Sweeper(
            [env.runner],
            clock=env.clock,
            backoff=backoff,
            concurrency=concurrency,
            listeners=[env.hooks],
            **options,
        )

    def test_instances_overlap_and_one_instances_steps_never_do(self, env: Env) -> None:
        keys = [f"c{n:02d}" for n in range(12)]
        for key in keys:
            env.job(key, "advance", "continue_")
        overlap = Overlap(0.05)
        HOOKS.append(overlap)
        env.clock.advance(minutes=11)

        result = self.sweeper_of(env, 8).run_once()

        assert (result.marked_stuck, result.compensations_run, result.compensated) == (12, 24, 12)
        assert overlap.most_at_once > 1  # measured: different instances ran together
        assert overlap.same_instance == 0
        assert Counter((key, action) for key, action, _ in CALLS) == {
            (key, action): 1 for key in keys for action in ("undo_first", "undo_second")
        }
        for key in keys:  # newest step first within each instance
            assert [a for k, a, _ in CALLS if k == key] == ["undo_second", "undo_first"]
            assert self.tasks(env.store, key) == [
                (2, "undo_second", "done", 1),
                (1, "undo_first", "done", 1),
            ]
            job = env.read_job(key)  # each handler's writes committed with its completion
            assert (job.state, job.undone) == ("undone", "21")
            assert self.events(env.store, key)[-1] == "@compensated"

    def test_a_failing_and_a_hung_handler_leave_the_others_alone(self, env: Env) -> None:
        fast = [f"fast{n}" for n in range(10)]
        for key in [*fast, "flaky", "hung"]:
            env.job(key, "advance")
        FAILURES["flaky", "undo_first"] = 1
        gate = Gate("hung", "undo_first")
        HOOKS.extend([gate, Overlap(0.02)])
        sweeper = self.sweeper_of(env, 4, handler_timeout=timedelta(seconds=0.3))
        env.clock.advance(minutes=11)

        result = sweeper.run_once()  # returns although the hung handler never does

        assert (result.compensations_run, result.compensated) == (10, 10)
        assert (result.compensations_failed, result.dead_lettered) == (2, 0)
        assert sorted(env.hooks.failed) == [("undo_first", 1), ("undo_first", 1)]
        for key in fast:
            assert (env.read_job(key).state, env.read_job(key).undone) == ("undone", "1")
        [flaky] = env.store.compensations("job", "flaky")
        assert (flaky.status, flaky.attempts) == ("pending", 1)
        assert "undo_first of flaky is down" in (flaky.last_error or "")
        [hung] = env.store.compensations("job", "hung")
        assert (hung.status, hung.attempts) == ("pending", 1)
        assert "did not return within 0.3s" in (hung.last_error or "")
        gate.go.set()
        for thread in threading.enumerate():
            if thread.name.startswith("statekit-compensation"):
                thread.join(60)
        assert env.read_job("hung").undone is None  # the abandoned call never commits
        assert env.read_job("flaky").undone is None

    def test_a_stop_lets_running_handlers_finish_and_claims_nothing_new(self, env: Env) -> None:
        keys = [f"s{n}" for n in range(6)]
        for key in keys:
            env.job(key, "advance")
            env.sweeper.compensate("job", key, reason="test", actor="app")
        stopping = threading.Event()

        def stop_on_first_call(job: Any, undo: CompensationContext) -> None:
            stopping.set()
            time.sleep(0.1)  # both claimed handlers are running when the stop comes

        HOOKS.append(stop_on_first_call)

        result = self.sweeper_of(env, 2).run_once(stopping.is_set)

        assert result.compensations_run == 2  # the two claimed together, both finished
        statuses = Counter(t.status for t in env.store.compensations("job"))
        assert statuses == {"done": 2, "pending": 4}
        assert len(CALLS) == 2

    def test_a_store_failure_stops_the_claims_and_is_raised_after_the_rest(self, env: Env) -> None:
        keys = [f"f{n}" for n in range(8)]
        for key in keys:
            env.job(key, "advance")
            env.sweeper.compensate("job", key, reason="test", actor="app")
        FAILURES["f0", "undo_first"] = 1
        HOOKS.append(Overlap(0.02))

        def database_gone(*args: Any, **kwargs: Any) -> None:
            raise StoreError("recording a failed compensation: the database went away")

        env.store.fail_compensation = database_gone  # type: ignore[method-assign]
        with pytest.raises(StoreError, match="the database went away"):
            self.sweeper_of(env, 4).run_once()

        statuses = {t.key: t.status for t in env.store.compensations("job")}
        assert statuses["f0"] == "running"  # its failure could not be recorded
        others = Counter(status for key, status in statuses.items() if key != "f0")
        assert others["running"] == 0  # every other claimed task finished first
        assert others["done"] == len([k for k, _, _ in CALLS if k != "f0"])

    def test_concurrency_must_be_at_least_one(self, env: Env) -> None:
        for wrong in (0, -3, 1.5, True):
            with pytest.raises(InvalidArgumentError, match=r"concurrency .* refused"):
                self.sweeper_of(env, wrong)  # type: ignore[arg-type]
