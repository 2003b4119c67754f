"""The compensation outbox every `SweepStore` honours, written once, run on each store.

Subclass `OutboxContract` in a test module (a class whose name starts with `Test`)
and provide the fixtures below. The tests use only `SweepStore` members
(`session_unit`, `handler_unit`, `add_compensations`, `claim_compensations`,
`complete_compensation`, `fail_compensation`, `claimed_step`,
`reopen_dead_compensations`, `cancel_compensations`, `due`) and the reads
`compensations` and `attempts`; nothing here knows how a store keeps its rows.

Fixtures:
    store (required): a fresh, empty store for each test that persists instances
        of `tests.contract.jobs.JobWorkflow` (machine name "job").
    new_job: `new_job(key) -> entity`, a new, unstarted job with the attributes of
        `tests.contract.jobs.Job` (`id`, `frozen`, `undone`); defaults to `Job`.
    clock: the `ManualClock` the runner and the tests read; defaults to a new one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from statekit import (
    CompensationTask,
    ConcurrentTransitionError,
    ManualClock,
    Plan,
    Runner,
    Snapshot,
)
from statekit.store.protocol import COMPENSATIONS_DUE, SweepStore
from tests.contract.jobs import Job, JobWorkflow

LEASE = timedelta(minutes=5)
NewJob = Callable[[str], Any]


def tasks_of(key: str, *, first: int = 5, second: int = 3) -> list[CompensationTask]:
    """The two compensations of a job that advanced and continued, newest first."""
    return [
        CompensationTask("job", key, 2, "undo_second", "continue_", second),
        CompensationTask("job", key, 1, "undo_first", "advance", first),
    ]


class OutboxContract:
    """Behaviour of the compensation outbox; see the module docstring for fixtures."""

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def new_job(self) -> NewJob:
        return Job

    @pytest.fixture
    def runner(self, store: SweepStore, clock: ManualClock) -> Runner:
        return Runner(JobWorkflow.machine, store, clock=clock)

    @pytest.fixture
    def job(self, runner: Runner, new_job: NewJob) -> Callable[..., None]:
        """`job(key, *events)`: start a job and fire `events` on it."""

        def make(key: str, *events: str) -> None:
            runner.start(new_job(key))
            for event in events:
                runner.fire_by_key(key, event)

        return make

    def schedule(
        self, store: SweepStore, key: str, tasks: list[CompensationTask], clock: ManualClock
    ) -> None:
        with store.session_unit("job", key) as entity:
            store.add_compensations(entity, tasks, clock.now())

    def complete(self, store: SweepStore, task: CompensationTask, clock: ManualClock) -> int:
        with store.handler_unit("job", task.key) as unit:
            return store.complete_compensation(task, unit.entity, clock.now())

    def fail(
        self,
        store: SweepStore,
        task: CompensationTask,
        clock: ManualClock,
        *,
        retry_in: timedelta = timedelta(seconds=30),
        dead: bool = False,
    ) -> None:
        now = clock.now()
        store.fail_compensation(task, now, error="down", next_attempt_at=now + retry_in, dead=dead)

    def states(self, store: SweepStore, key: str) -> list[tuple[int, str, int]]:
        return [(t.step_seq, t.status, t.attempts) for t in store.compensations("job", key)]

    # -- scheduling --------------------------------------------------------------------

    def test_is_a_sweep_store(self, store: SweepStore) -> None:
        assert isinstance(store, SweepStore)

    def test_adding_twice_keeps_one_task_per_step_and_action(
        self, store: SweepStore, job: Callable[..., None], clock: ManualClock
    ) -> None:
        job("twice", "advance", "continue_")
        self.schedule(store, "twice", tasks_of("twice"), clock)
        self.schedule(store, "twice", tasks_of("twice") + tasks_of("twice"), clock)
        found = store.compensations("job", "twice")
        assert [(t.step_seq, t.action, t.status, t.attempts) for t in found] == [
            (2, "undo_second", "pending", 0),
            (1, "undo_first", "pending", 0),
        ]
        assert all(t.next_attempt_at == clock.now() for t in found)
        assert found[0].idempotency_key == "statekit:job:twice:2:undo_second"

    def test_tasks_are_scheduled_only_in_the_entitys_unit(
        self, store: SweepStore, job: Callable[..., None], clock: ManualClock, new_job: NewJob
    ) -> None:
        from statekit import StoreError

        job("outside", "advance")
        with pytest.raises(StoreError, match="in the entity's transaction"):
            store.add_compensations(new_job("outside"), tasks_of("outside"), clock.now())
        assert store.compensations("job") == []

    def test_a_failed_unit_schedules_nothing(
        self, store: SweepStore, job: Callable[..., None], clock: ManualClock
    ) -> None:
        job("undone", "advance")

        def schedule_then_fail() -> None:
            with store.session_unit("job", "undone") as entity:
                store.add_compensations(entity, tasks_of("undone"), clock.now())
                raise RuntimeError("changed my mind")

        with pytest.raises(RuntimeError, match="changed my mind"):
            schedule_then_fail()
        assert store.compensations("job") == []
        assert store.due([], clock.now()) == set()

    # -- claims ------------------------------------------------------------------------

    def test_a_claim_takes_the_newest_step_and_never_two_of_one_instance(
        self, store: SweepStore, job: Callable[..., None], clock: ManualClock
    ) -> None:
        job("j1", "advance", "continue_")
        self.schedule(store, "j1", tasks_of("j1"), clock)
        assert store.due([], clock.now()) == {COMPENSATIONS_DUE}
        [claimed] = store.claim_compensations(clock.now(), 10, LEASE)
        assert (claimed.step_seq, claimed.status, claimed.attempts) == (2, "running", 1)
        assert claimed.claim_token
        assert store.claim_compensations(clock.now(), 10, LEASE) == []  # step 1 waits
        assert self.complete(store, claimed, clock) == 1  # one still open
        [older] = store.claim_compensations(clock.now(), 10, LEASE)
        assert (older.step_seq, older.attempts) == (1, 1)
        assert older.claim_token != claimed.claim_token
        assert self.complete(store, older, clock) == 0
        assert self.states(store, "j1") == [(2, "done", 1), (1, "done", 1)]
        assert [(a.attempt, a.succeeded, a.error) for a in store.attempts(older.id or 0)] == [
            (1, True, None)
        ]
        assert store.due([], clock.now()) == set()

    def test_claims_are_disjoint_between_two_claimers(
        self, store: SweepStore, job: Callable[..., None], clock: ManualClock
    ) -> None:
        keys = [f"d{n}" for n in range(6)]
        for key in keys:
            job(key, "advance")
            self.schedule(store, key, tasks_of(key)[1:], clock)
        start = threading.Barrier(2)
        claims: list[list[CompensationTask]] = []

        def claim() -> None:
            start.wait(10)
            claims.append(store.claim_compensations(clock.now(), 4, LEASE))

        threads = [threading.Thread(target=claim) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        first, second = ({t.key for t in found} for found in claims)
        assert not first & second
        assert first | second == set(keys)
        assert sorted(len(found) for found in claims) == [2, 4]

    def test_a_batch_claim_takes_k_tasks_of_k_instances_and_leaves_the_rest(
        self, store: SweepStore, job: Callable[..., None], clock: ManualClock
    ) -> None:
        keys = [f"k{n}" for n in range(5)]
        for key in ("expired", *keys):
            job(key, "advance", "continue_")
            self.schedule(store, key, tasks_of(key), clock)
            if key == "expired":  # claimed by a sweeper that died
                [dead] = store.claim_compensations(clock.now(), 1, LEASE)
                clock.advance(LEASE)
        claimed = store.claim_compensations(clock.now(), 4, LEASE)
        by_key = {t.key: t for t in claimed}
        assert len(claimed) == len(by_key) == 4  # k tasks of k instances
        assert (by_key["expired"].id, by_key["expired"].attempts) == (dead.id, 2)
        assert by_key["expired"].claim_token != dead.claim_token
        for task in claimed:  # each the newest step of its instance, running, claimed
            assert (task.step_seq, task.status) == (2, "running")
            assert task.claim_token
        assert by_key["expired"].attempts == 2
        assert all(t.attempts == 1 for t in claimed if t.key != "expired")
        for key in ("expired", *keys):  # the rest untouched: older steps, two instances
            running = [(2, "running", by_key[key].attempts)] if key in by_key else []
            pending = [] if key in by_key else [(2, "pending", 0)]
            assert self.states(store, key) == [*running, *pending, (1, "pending", 0)]
        rest = store.claim_compensations(clock.now(), 10, LEASE)
        assert sorted(t.key for t in rest) == sorted(set(keys) - set(by_key))
        assert {t.step_seq for t in rest} == {2}
        assert store.claim_compensations(clock.now(), 10, LEASE) == []  # older steps wait
        # Each claimed task has a lease of its own: completing one frees only its
        # instance's older step; the others run out and are claimed again.
        first = claimed[0]
        assert self.complete(store, first, clock) == 1
        [older] = store.claim_compensations(clock.now(), 10, LEASE)
        assert (older.key, older.step_seq) == (first.key, 1)
        clock.advance(LEASE)
        again = store.claim_compensations(clock.now(), 10, LEASE)
        assert sorted((t.key, t.step_seq) for t in again) == sorted(
            [(t.key, t.step_seq) for t in claimed[1:] + rest] + [(first.key, 1)]
        )
        for task in claimed[1:]:
            with pytest.raises(ConcurrentTransitionError):
                self.complete(store, task, clock)

    def test_a_task_whose_lease_expired_is_claimed_again(
        self, store: SweepStore, job: Callable[..., None], clock: ManualClock
    ) -> None:
        job("lease", "advance")
        self.schedule(store, "lease", tasks_of("lease")[1:], clock)
        [lost] = store.claim_compensations(clock.now(), 1, LEASE)
        clock.advance(minutes=4, seconds=59)
        assert store.claim_compensations(clock.now(), 1, LEASE) == []
        assert store.due([], clock.now()) == set()
        clock.advance(seconds=1)
        assert store.due([], clock.now()) == {COMPENSATIONS_DUE}
        [taken] = store.claim_compensations(clock.now(), 1, LEASE)
        assert (taken.id, taken.attempts) == (lost.id, 2)
        assert taken.claim_token != lost.claim_token
        # The first claimer comes back: whatever it reports changes nothing.
        with pytest.raises(ConcurrentTransitionError):
            self.complete(store, lost, clock)
        with pytest.raises(ConcurrentTransitionError):
            self.fail(store, lost, clock)
        with store.handler_unit("job", "lease") as unit, pytest.raises(ConcurrentTransitionError):
            store.claimed_step(lost, unit.entity)
        assert self.states(store, "lease") == [(1, "running", 2)]
        assert store.attempts(lost.id or 0) == []
        assert self.complete(store, taken, clock) == 0

    def test_an_expired_lease_is_claimed_before_due_pending_tasks(
        self, store: SweepStore, job: Callable[..., None], clock: ManualClock
    ) -> None:
        job("abandoned", "advance")
        self.schedule(store, "abandoned", tasks_of("abandoned")[1:], clock)
        [abandoned] = store.claim_compensations(clock.now(), 1, LEASE)
        clock.advance(minutes=1)
        job("waiting", "advance")
        self.schedule(store, "waiting", tasks_of("waiting")[1:], clock)
        clock.advance(LEASE)
        [first] = store.claim_compensations(clock.now(), 1, LEASE)
        assert (first.key, first.attempts) == ("abandoned", 2)
        [second] = store.claim_compensations(clock.now(), 1, LEASE)
        assert second.key == "waiting"
        assert abandoned.id == first.id

    def test_claimed_step_is_the_history_record_of_the_step(
        self, store: SweepStore, job: Callable[..., None], clock: ManualClock
    ) -> None:
        job("step", "advance", "continue_")
        self.schedule(store, "step", tasks_of("step"), clock)
        [task] = store.claim_compensations(clock.now(), 1, LEASE)
        with store.handler_unit("job", "step") as unit:
            step = store.claimed_step(task, unit.entity)
        assert step is not None
        assert (step.seq, step.event, step.source) == (2, "continue_", "first")
        assert step.target == "second"

    # -- failures ----------------------------------------------------------------------

    def test_a_failure_backs_off_then_dead_letters_and_blocks_older_steps(
        self, store: SweepStore, job: Callable[..., None], clock: ManualClock
    ) -> None:
        job("flaky", "advance", "continue_")
        self.schedule(store, "flaky", tasks_of("flaky", second=2), clock)
        [task] = store.claim_compensations(clock.now(), 1, LEASE)
        self.fail(store, task, clock, retry_in=timedelta(seconds=30))
        [newest, _] = store.compensations("job", "flaky")
        assert (newest.status, newest.attempts, newest.last_error) == ("pending", 1, "down")
        assert newest.next_attempt_at == clock.now() + timedelta(seconds=30)
        assert newest.claim_token is None
        clock.advance(seconds=29)
        assert store.claim_compensations(clock.now(), 10, LEASE) == []  # not yet, nor older
        clock.advance(seconds=1)
        [again] = store.claim_compensations(clock.now(), 10, LEASE)
        assert (again.step_seq, again.attempts) == (2, 2)
        self.fail(store, again, clock, dead=True)
        assert self.states(store, "flaky") == [(2, "dead", 2), (1, "pending", 0)]
        clock.advance(hours=1)
        assert store.claim_compensations(clock.now(), 10, LEASE) == []  # dead blocks step 1
        attempts = store.attempts(task.id or 0)
        assert [(a.attempt, a.succeeded, a.error) for a in attempts] == [
            (1, False, "down"),
            (2, False, "down"),
        ]
        assert attempts[1].at == clock.now() - timedelta(hours=1)

    def test_reopen_gives_dead_tasks_more_attempts(
        self, store: SweepStore, job: Callable[..., None], clock: ManualClock
    ) -> None:
        job("dl", "advance", "continue_")
        self.schedule(store, "dl", tasks_of("dl", second=1), clock)
        [task] = store.claim_compensations(clock.now(), 1, LEASE)
        self.fail(store, task, clock, dead=True)
        clock.advance(minutes=1)
        with store.session_unit("job", "dl") as entity:
            assert store.reopen_dead_compensations(entity, clock.now(), 2) == 1
        with store.session_unit("job", "dl") as entity:
            assert store.reopen_dead_compensations(entity, clock.now(), 2) == 0
        [newest, _] = store.compensations("job", "dl")
        assert (newest.status, newest.attempts, newest.max_attempts) == ("pending", 1, 3)
        assert newest.next_attempt_at == clock.now()
        [again] = store.claim_compensations(clock.now(), 1, LEASE)
        assert (again.step_seq, again.attempts) == (2, 2)

    def test_cancel_ends_open_tasks_and_takes_the_claim(
        self, store: SweepStore, job: Callable[..., None], clock: ManualClock
    ) -> None:
        job("c", "advance", "continue_")
        self.schedule(store, "c", tasks_of("c"), clock)
        [running] = store.claim_compensations(clock.now(), 1, LEASE)
        with store.session_unit("job", "c") as entity:
            assert store.cancel_compensations(entity, clock.now(), reason="resolved") == 2
        found = store.compensations("job", "c")
        assert [(t.status, t.last_error) for t in found] == [
            ("cancelled", "resolved"),
            ("cancelled", "resolved"),
        ]
        with pytest.raises(ConcurrentTransitionError):
            self.complete(store, running, clock)
        assert store.attempts(running.id or 0) == []
        clock.advance(hours=1)
        assert store.claim_compensations(clock.now(), 10, LEASE) == []
        assert store.due([], clock.now()) == set()
        assert store.compensations("job", status=["cancelled"]) == found
        assert store.compensations("job", status=["pending"]) == []

    def test_adding_again_reopens_a_cancelled_task_with_fresh_attempts(
        self, store: SweepStore, job: Callable[..., None], clock: ManualClock
    ) -> None:
        job("again", "advance")
        self.schedule(store, "again", tasks_of("again")[1:], clock)
        [task] = store.claim_compensations(clock.now(), 1, LEASE)
        self.fail(store, task, clock)
        with store.session_unit("job", "again") as entity:
            store.cancel_compensations(entity, clock.now())
        clock.advance(minutes=1)
        self.schedule(store, "again", tasks_of("again")[1:], clock)
        [reopened] = store.compensations("job", "again")
        assert (reopened.status, reopened.attempts, reopened.max_attempts) == ("pending", 1, 6)
        assert (reopened.next_attempt_at, reopened.last_error) == (clock.now(), None)

    def test_compensations_filter_by_machine_key_and_status(
        self, store: SweepStore, job: Callable[..., None], clock: ManualClock
    ) -> None:
        for key in ("b", "a"):
            job(key, "advance", "continue_")
            self.schedule(store, key, tasks_of(key), clock)
        listed = [(t.key, t.step_seq) for t in store.compensations()]
        assert listed == [("a", 2), ("a", 1), ("b", 2), ("b", 1)]
        assert [t.step_seq for t in store.compensations("job", "b")] == [2, 1]
        assert store.compensations("ticket") == []
        assert len(store.compensations(status=["pending", "dead"])) == 4

    # -- overdue batches -----------------------------------------------------------

    def stuck_plan(self, snapshot: Snapshot, clock: ManualClock) -> Plan:
        return JobWorkflow.machine.system_plan(
            snapshot,
            "@stuck",
            snapshot.state,
            now=clock.now(),
            actor="statekit-sweeper",
            note="test",
            stuck_reason="test",
        )

    def test_a_batch_claims_due_instances_earliest_first_and_marks_them(
        self, store: SweepStore, job: Callable[..., None], clock: ManualClock
    ) -> None:
        job("early", "advance", "continue_")
        clock.advance(minutes=1)
        job("later", "advance")
        clock.advance(minutes=1)
        job("fresh", "advance")
        clock.advance(minutes=10)  # all three are due
        assert store.due(["job"], clock.now()) == {"job"}
        machine = JobWorkflow.machine
        with store.overdue_batch("job", clock.now(), 2) as batch:
            assert [s.key for s in batch.snapshots] == ["early", "later"]
            plans = [self.stuck_plan(s, clock) for s in batch.snapshots]
            records, scheduled = batch.mark(plans, machine.compensated_steps, clock.now())
        assert [(r.key, r.seq, r.event) for r in records] == [
            ("early", 3, "@stuck"),
            ("later", 2, "@stuck"),
        ]
        assert scheduled == 3
        assert self.states(store, "early") == [(2, "pending", 0), (1, "pending", 0)]
        early = store.load("job", "early")
        assert (early.state, early.version, early.stuck_at, early.deadline_at) == (
            "second",
            3,
            clock.now(),
            None,
        )
        assert store.history("job", "early")[-1] == records[0]
        assert store.due(["job"], clock.now()) == {"job", COMPENSATIONS_DUE}  # fresh is due

    def test_a_savepoint_that_raises_undoes_only_its_own_writes(
        self, store: SweepStore, job: Callable[..., None], clock: ManualClock
    ) -> None:
        job("kept", "advance")
        job("undone", "advance")
        clock.advance(minutes=11)
        steps = JobWorkflow.machine.compensated_steps

        def mark_then_fail(batch: Any, snapshot: Snapshot) -> None:
            with batch.savepoint():
                batch.mark([self.stuck_plan(snapshot, clock)], steps, clock.now())
                raise RuntimeError("this one fails")

        with store.overdue_batch("job", clock.now(), 10) as batch:
            kept, undone = batch.snapshots
            with batch.savepoint():
                batch.mark([self.stuck_plan(kept, clock)], steps, clock.now())
            with pytest.raises(RuntimeError, match="this one fails"):
                mark_then_fail(batch, undone)
            assert batch.set_aside(undone, "set aside", clock.now(), clock.now() + LEASE)
        assert store.load("job", "kept").stuck_reason == "test"
        assert len(store.compensations("job", "kept")) == 1
        aside = store.load("job", "undone")
        assert (aside.version, aside.stuck_reason, aside.stuck_at) == (1, "set aside", clock.now())
        assert aside.deadline_at == clock.now() + LEASE
        assert [r.event for r in store.history("job", "undone")] == ["advance"]
        assert store.compensations("job", "undone") == []

    def test_a_batch_that_raises_leaves_nothing(
        self, store: SweepStore, job: Callable[..., None], clock: ManualClock
    ) -> None:
        job("b1", "advance")
        clock.advance(minutes=11)

        def mark_then_fail() -> None:
            with store.overdue_batch("job", clock.now(), 10) as batch:
                plans = [self.stuck_plan(s, clock) for s in batch.snapshots]
                batch.mark(plans, JobWorkflow.machine.compensated_steps, clock.now())
                raise RuntimeError("the batch fails")

        with pytest.raises(RuntimeError, match="the batch fails"):
            mark_then_fail()
        snapshot = store.load("job", "b1")
        assert (snapshot.version, snapshot.stuck_at) == (1, None)
        assert [r.event for r in store.history("job", "b1")] == ["advance"]
        assert store.compensations("job") == []
