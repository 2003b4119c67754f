"""What the `Sweeper` does over any `SweepStore`, written once and run on each store.

Subclass `SweeperContract` in a test module (a class whose name starts with `Test`)
and provide the fixtures below. The tests drive a `Sweeper` with a manual clock
over the job machine of `tests.contract.jobs` and look only at what the store
reports (`load`, `history`, `compensations`, `attempts`) and at the job objects.
Process-level tests (killed sweepers, SIGTERM, two processes) stay with the SQL
store in `tests/sweeper/`.

Fixtures:
    store (required): a fresh, empty store for each test that persists instances
        of `tests.contract.jobs.JobWorkflow` (machine name "job").
    read_job (required): `read_job(key)` returns the job as its store holds it now
        (a fresh load for a database, the stored object for `MemoryStore`).
    new_job: `new_job(key, frozen=False) -> entity`, a new, unstarted job with the
        attributes of `tests.contract.jobs.Job`; defaults to `Job`.
    clock: the `ManualClock` the runner and the sweeper read.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from statekit import (
    Backoff,
    CompensationContext,
    InvalidArgumentTypeError,
    Listener,
    ManualClock,
    Runner,
    Snapshot,
    StatekitError,
    Sweeper,
    SweeperError,
    SweepResult,
    TransitionRecord,
    UnstorableTextError,
)
from statekit.store.marks import StuckMarking
from statekit.store.protocol import SweepStore
from tests.contract import jobs
from tests.contract.jobs import CALLS, FAILURES, HOOKS, Job, JobWorkflow

ReadJob = Callable[[str], Any]


class Hooks(Listener):
    """Records what the sweeper reported."""

    def __init__(self) -> None:
        self.stuck: list[str] = []
        self.failed: list[tuple[str, int]] = []
        self.dead: list[str] = []
        self.set_aside: list[str] = []
        self.transitions: list[tuple[str, str]] = []

    def on_transition(self, record: TransitionRecord, entity: object) -> None:
        self.transitions.append((record.key, record.event))

    def on_stuck(self, record: TransitionRecord) -> None:
        self.stuck.append(record.key)

    def on_compensation_failed(self, task: Any, error: BaseException) -> None:
        self.failed.append((task.action, task.attempts))

    def on_dead_lettered(self, task: Any, error: BaseException) -> None:
        self.dead.append(task.action)

    def on_set_aside(self, snapshot: Snapshot, error: BaseException) -> None:
        self.set_aside.append(snapshot.key)


@dataclass
class Gate:
    """A hook that holds one handler call until the test lets it go."""

    key: str
    action: str
    entered: threading.Event = field(default_factory=threading.Event)
    go: threading.Event = field(default_factory=threading.Event)
    calls: int = 0

    def __call__(self, job: Any, undo: CompensationContext) -> None:
        if (str(job.id), undo.action) == (self.key, self.action):
            self.calls += 1
            self.entered.set()
            assert self.go.wait(60), "the test never let the handler go"


@dataclass
class Env:
    """What a test works with: the store, a runner and a sweeper over it, the clock,
    the recorded hooks, `job(key, *events, frozen=False)` and `read_job(key)`."""

    store: SweepStore
    runner: Runner
    sweeper: Sweeper
    clock: ManualClock
    hooks: Hooks
    job: Callable[..., None]
    read_job: ReadJob


class SweeperFixtures:
    """The fixtures and helpers of the sweeper contracts (see the module docstring)."""

    @pytest.fixture(autouse=True)
    def _fresh_jobs(self) -> Iterator[None]:
        jobs.reset()
        yield
        for gate in [h for h in HOOKS if isinstance(h, Gate)]:
            gate.go.set()
        for thread in threading.enumerate():  # handlers abandoned after a timeout
            if thread.name.startswith("statekit-compensation"):
                thread.join(60)
        jobs.reset()

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def new_job(self) -> Callable[..., Any]:
        return Job

    @pytest.fixture
    def hooks(self) -> Hooks:
        return Hooks()

    @pytest.fixture
    def runner(self, store: SweepStore, clock: ManualClock, hooks: Hooks) -> Runner:
        return Runner(JobWorkflow.machine, store, clock=clock, listeners=[hooks])

    @pytest.fixture
    def sweeper(self, runner: Runner, clock: ManualClock, hooks: Hooks) -> Sweeper:
        backoff = Backoff(base=timedelta(seconds=30), cap=timedelta(minutes=10), jitter=0)
        return Sweeper([runner], clock=clock, batch_size=3, backoff=backoff, listeners=[hooks])

    @pytest.fixture
    def env(
        self,
        store: SweepStore,
        runner: Runner,
        sweeper: Sweeper,
        clock: ManualClock,
        hooks: Hooks,
        job: Callable[..., None],
        read_job: ReadJob,
    ) -> Env:
        return Env(store, runner, sweeper, clock, hooks, job, read_job)

    @pytest.fixture
    def job(self, runner: Runner, new_job: Callable[..., Any]) -> Callable[..., None]:
        """`job(key, *events, frozen=False)`: start a job and fire `events` on it."""

        def make(key: str, *events: str, frozen: bool = False) -> None:
            runner.start(new_job(key, frozen=frozen))
            for event in events:
                runner.fire_by_key(key, event)

        return make

    def events(self, store: SweepStore, key: str) -> list[str]:
        return [r.event for r in store.history("job", key)]

    def tasks(self, store: SweepStore, key: str) -> list[tuple[int, str, str, int]]:
        return [
            (t.step_seq, t.action, t.status, t.attempts) for t in store.compensations("job", key)
        ]


class SweeperContract(SweeperFixtures):
    """The sweeper's observable behaviour; see the module docstring for fixtures."""

    # -- deadlines ---------------------------------------------------------------------

    def test_a_timeout_event_fires_once_when_the_deadline_passes(self, env: Env) -> None:
        env.job("b")
        assert env.store.load("job", "b").deadline_at == env.clock.now() + timedelta(minutes=10)
        env.clock.advance(minutes=9)
        assert env.sweeper.run_once().claimed == 0
        env.clock.advance(minutes=1)
        result = env.sweeper.run_once()
        assert (result.claimed, result.timed_out, result.marked_stuck) == (1, 1, 0)
        [expired] = env.store.history("job", "b")
        assert (expired.event, expired.target, expired.actor) == (
            "expire",
            "expired",
            "statekit-sweeper",
        )
        assert env.store.load("job", "b").deadline_at is None
        assert env.sweeper.run_once().claimed == 0

    def test_a_refused_timeout_event_marks_the_instance_stuck(self, env: Env) -> None:
        env.job("frozen", frozen=True)
        env.clock.advance(minutes=11)
        result = env.sweeper.run_once()
        assert (result.timed_out, result.marked_stuck) == (0, 1)
        snapshot = env.store.load("job", "frozen")
        assert (snapshot.state, snapshot.stuck_at, snapshot.deadline_at) == (
            "new",
            env.clock.now(),
            None,
        )
        assert "timeout event 'expire' refused" in (snapshot.stuck_reason or "")
        assert "the job is frozen" in (snapshot.stuck_reason or "")
        assert env.read_job("frozen").stuck_at == env.clock.now()
        assert env.hooks.stuck == ["frozen"]
        assert self.events(env.store, "frozen") == ["@stuck"]
        assert env.sweeper.run_once().claimed == 0

    def test_batches_time_out_and_mark_every_due_instance(self, env: Env) -> None:
        for n in range(4):
            env.job(f"new{n}")
            env.job(f"first{n}", "advance")
        env.clock.advance(minutes=11)
        result = env.sweeper.run_once()  # batches of 3
        assert (result.claimed, result.timed_out, result.marked_stuck) == (8, 4, 4)
        assert result.compensations_run == 4
        states = {env.store.load("job", k).state for k in (f"first{n}" for n in range(4))}
        assert states == {"undone"}

    def test_set_based_stuck_marks_match_the_per_instance_path(
        self, env: Env, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The same jobs, swept once set-based (where the store is `StuckMarking`) and
        once one instance at a time, leave the same snapshots, history, compensations
        and results, times taken relative to each sweep."""
        names = "abcdefghi"

        def scenario(p: str) -> SweepResult:
            env.job(f"{p}a", "advance")  # one compensating step
            env.job(f"{p}b", "advance", "continue_")  # two, with their own attempts
            env.job(f"{p}c")  # its timeout fires `expire`
            env.job(f"{p}d", frozen=True)  # `expire` refused: marked stuck
            env.job(f"{p}e", "advance")  # stuck, resolved back: its undo reopens
            env.sweeper.compensate("job", f"{p}e", reason="test", actor="app")
            env.sweeper.resolve("job", f"{p}e", "first", note="again", actor="ops")
            for k in names[5:]:
                env.job(f"{p}{k}", "advance")  # more than one batch (batches of 3)
            env.clock.advance(minutes=11)
            return env.sweeper.run_once(drain=False)

        def seen(p: str) -> str:
            """Everything the store holds of the `p` jobs, keys left out."""
            now = env.clock.now()

            def ago(moment: Any) -> Any:
                return None if moment is None else now - moment

            found: list[Any] = []
            for k in names:
                s = env.store.load("job", p + k)
                found.append(
                    (s.state, s.version, ago(s.entered_at), ago(s.deadline_at), ago(s.stuck_at))
                )
                found.append((s.stuck_reason, s.definition_version))
                found += [
                    (r.seq, r.event, r.source, r.target, r.actor, r.payload, ago(r.at))
                    for r in env.store.history("job", p + k)
                ]
                found += [
                    (t.step_seq, t.action, t.event, t.status, t.attempts, t.max_attempts)
                    for t in env.store.compensations("job", p + k)
                ]
            return repr(found).replace(p, "")

        set_based = scenario("s-")
        marked_set_based, env.hooks.stuck = sorted(env.hooks.stuck), []
        in_sets = seen("s-")
        if isinstance(env.store, StuckMarking):
            monkeypatch.setattr(env.store, "mark_overdue_stuck", lambda *args: None)
        one_by_one = scenario("p-")
        assert seen("p-") == in_sets
        assert set_based.as_dict() == one_by_one.as_dict()
        assert (set_based.marked_stuck, set_based.timed_out) == (8, 1)
        assert [k[2:] for k in marked_set_based] == [k[2:] for k in sorted(env.hooks.stuck)]

    # -- compensations -----------------------------------------------------------------

    def test_stuck_instances_are_compensated_newest_first_then_finish(self, env: Env) -> None:
        env.job("j1", "advance", "continue_")
        env.clock.advance(minutes=11)
        result = env.sweeper.run_once()
        assert (result.marked_stuck, result.compensations_run, result.compensated) == (1, 2, 1)
        snapshot = env.store.load("job", "j1")
        assert (snapshot.state, snapshot.stuck_at) == ("undone", None)
        assert self.events(env.store, "j1") == ["advance", "continue_", "@stuck", "@compensated"]
        assert self.tasks(env.store, "j1") == [
            (2, "undo_second", "done", 1),
            (1, "undo_first", "done", 1),
        ]
        assert CALLS == [("j1", "undo_second", 1), ("j1", "undo_first", 1)]

    def test_a_failing_compensation_backs_off_and_its_writes_roll_back(self, env: Env) -> None:
        env.job("flaky", "advance")
        FAILURES["flaky", "undo_first"] = 3
        env.clock.advance(minutes=11)
        first = env.sweeper.run_once()
        assert (first.marked_stuck, first.compensations_failed) == (1, 1)
        [task] = env.store.compensations("job", "flaky")
        assert (task.status, task.attempts) == ("pending", 1)
        assert task.next_attempt_at == env.clock.now() + timedelta(seconds=30)
        assert env.read_job("flaky").undone is None  # the failed call's write rolled back
        env.clock.advance(seconds=29)
        assert env.sweeper.run_once().compensations_failed == 0  # not due yet
        for delay in (1, 60, 120):
            env.clock.advance(seconds=delay)
            env.sweeper.run_once()
        [task] = env.store.compensations("job", "flaky")
        assert (task.status, task.attempts) == ("done", 4)
        attempts = env.store.attempts(task.id or 0)
        assert [(a.attempt, a.succeeded) for a in attempts] == [
            (1, False),
            (2, False),
            (3, False),
            (4, True),
        ]
        assert [b.at - a.at for a, b in itertools.pairwise(attempts)] == [
            timedelta(seconds=30),
            timedelta(seconds=60),
            timedelta(seconds=120),
        ]
        assert env.hooks.failed == [("undo_first", 1), ("undo_first", 2), ("undo_first", 3)]
        assert len(CALLS) == 4
        job_now = env.read_job("flaky")
        assert (job_now.state, job_now.undone) == ("undone", "1")

    def test_dead_letter_then_a_person_retries(self, env: Env) -> None:
        env.job("dl", "advance", "continue_")
        FAILURES["dl", "undo_second"] = 3  # undo_second allows 3 attempts
        env.clock.advance(minutes=11)
        for _ in range(4):
            env.sweeper.run_once()
            env.clock.advance(minutes=10)
        assert self.tasks(env.store, "dl") == [
            (2, "undo_second", "dead", 3),
            (1, "undo_first", "pending", 0),  # waits behind the newer step
        ]
        assert env.hooks.dead == ["undo_second"]
        assert env.store.load("job", "dl").state == "second"
        stuck = [(s.key, [t.status for t in tasks]) for s, tasks in env.sweeper.stuck()]
        assert stuck == [("dl", ["dead", "pending"])]
        record = env.sweeper.retry("job", "dl", actor="ops-ann")
        assert (record.event, record.actor) == ("@retry", "ops-ann")
        assert record.payload == {"note": "retrying 1 dead-lettered compensation(s)"}
        assert env.store.load("job", "dl").stuck_at is not None
        result = env.sweeper.run_once()
        assert (result.compensations_run, result.compensated) == (2, 1)
        assert env.store.load("job", "dl").state == "undone"
        with pytest.raises(SweeperError, match="no dead-lettered compensations") as refused:
            env.sweeper.retry("job", "dl", actor="ops-ann")
        refusal = refused.value
        assert (refusal.entity_type, refusal.key, refusal.lever, refusal.state) == (
            "job",
            "dl",
            "retry",
            "undone",
        )

    def test_a_person_resolves_a_stuck_instance(self, env: Env) -> None:
        env.job("r", "advance")
        FAILURES["r", "undo_first"] = 99
        env.clock.advance(minutes=11)
        env.sweeper.run_once()
        record = env.sweeper.resolve("job", "r", "done", note="shipped by hand", actor="ops-bo")
        assert (record.event, record.source, record.target) == ("@resolve", "first", "done")
        snapshot = env.store.load("job", "r")
        assert (snapshot.state, snapshot.stuck_at, snapshot.stuck_reason) == ("done", None, None)
        assert [status for _, _, status, _ in self.tasks(env.store, "r")] == ["cancelled"]
        env.clock.advance(hours=1)
        assert env.sweeper.run_once().compensations_failed == 0

    @pytest.mark.parametrize(
        ("actor", "note", "argument", "error"),
        [
            ("o" * 129, "fixed", "actor", UnstorableTextError),  # longer than its column
            ("ops\x00", "fixed", "actor", UnstorableTextError),  # PostgreSQL refuses a NUL
            (42, "fixed", "actor", InvalidArgumentTypeError),
            ("ops", None, "note", InvalidArgumentTypeError),
            ("ops", "fixed \ud800", "note", UnstorableTextError),  # MariaDB's JSON refuses it
        ],
    )
    def test_a_levers_actor_and_note_are_checked_before_anything_is_written(
        self, env: Env, actor: Any, note: Any, argument: str, error: type[Exception]
    ) -> None:
        """Alike on every database: SQLite stored what PostgreSQL and MariaDB refused
        at the write (`StoreError`), and a None note raised a raw AttributeError. Text
        no history holds is refused as a fire refuses it (`UnstorableTextError`)."""
        env.job("lv", "advance")
        FAILURES["lv", "undo_first"] = 99
        env.clock.advance(minutes=11)
        env.sweeper.run_once()
        before = self.events(env.store, "lv")
        with pytest.raises(error) as refused:
            env.sweeper.resolve("job", "lv", "done", note=note, actor=actor)
        assert refused.value.argument == argument  # type: ignore[attr-defined]
        if argument == "actor":
            with pytest.raises(error):
                env.sweeper.retry("job", "lv", actor=actor)
            with pytest.raises(error):
                env.sweeper.compensate("job", "lv", reason="again", actor=actor)
        assert self.events(env.store, "lv") == before
        assert env.store.load("job", "lv").stuck_at is not None

    def test_compensate_aborts_a_saga_on_demand(self, env: Env) -> None:
        env.job("saga", "advance", "continue_")
        record = env.sweeper.compensate("job", "saga", reason="customer cancelled", actor="app")
        assert (record.event, record.actor) == ("@stuck", "app")
        assert env.hooks.stuck == ["saga"]
        with pytest.raises(StatekitError, match="already stuck"):
            env.sweeper.compensate("job", "saga", reason="again", actor="app")
        env.sweeper.run_once()
        assert env.store.load("job", "saga").state == "undone"
        assert [a for _, a, _ in CALLS] == ["undo_second", "undo_first"]

    # -- instances that misbehave or move on -------------------------------------------

    def test_a_poison_instance_is_set_aside_and_the_rest_processed(self, env: Env) -> None:
        env.job("early")  # fired in the first batch, which then fails on the poison
        env.clock.advance(seconds=1)
        env.job("poison")
        env.clock.advance(seconds=1)
        for n in range(3):
            env.job(f"ok{n}")
            env.job(f"stuck{n}", "advance")
        env.clock.advance(minutes=11)
        result = env.sweeper.run_once()
        assert (result.timed_out, result.marked_stuck, result.set_aside) == (4, 3, 1)
        assert result.compensated == 3
        assert env.hooks.set_aside == ["poison"]
        # The failed batch left nothing: "early" expired once, and was reported once.
        assert self.events(env.store, "early") == ["expire"]
        assert [k for k, event in env.hooks.transitions if event == "expire"].count("early") == 1
        poison = env.store.load("job", "poison")
        assert (poison.state, poison.version, poison.stuck_at) == ("new", 0, env.clock.now())
        assert "the guard of poison blew up" in (poison.stuck_reason or "")
        assert poison.deadline_at == env.clock.now() + timedelta(seconds=30)
        assert env.store.history("job", "poison") == []
        env.clock.advance(seconds=29)
        assert env.sweeper.run_once().set_aside == 0  # not before its backoff
        env.clock.advance(seconds=1)
        assert env.sweeper.run_once().set_aside == 1  # tried again, set aside again

    def test_a_stuck_instance_that_moves_on_is_not_compensated(self, env: Env) -> None:
        env.job("final", "advance", "continue_")
        env.sweeper.compensate("job", "final", reason="test", actor="app")
        env.runner.fire_by_key("final", "finish")  # the application completes it after all
        result = env.sweeper.run_once()
        assert (result.compensations_run, result.compensated, result.compensations_settled) == (
            0,
            0,
            2,
        )
        assert CALLS == []
        assert (env.read_job("final").state, env.read_job("final").undone) == ("done", None)
        assert [status for _, _, status, _ in self.tasks(env.store, "final")] == [
            "cancelled",
            "cancelled",
        ]

    def test_a_transition_while_the_handler_runs_discards_its_writes(self, env: Env) -> None:
        env.job("racing", "advance", "continue_")
        env.sweeper.compensate("job", "racing", reason="test", actor="app")
        gate = Gate("racing", "undo_second")
        HOOKS.append(gate)
        results: list[SweepResult] = []
        thread = threading.Thread(target=lambda: results.append(env.sweeper.run_once()))
        thread.start()
        assert gate.entered.wait(30)
        env.runner.fire_by_key("racing", "finish")  # lands while the handler is out
        gate.go.set()
        thread.join(60)
        [result] = results
        assert (result.compensations_run, result.compensations_settled) == (0, 2)
        assert (env.read_job("racing").state, env.read_job("racing").undone) == ("done", None)
        assert self.events(env.store, "racing") == ["advance", "continue_", "@stuck", "finish"]

    def test_a_hung_handler_times_out_as_a_failed_attempt(self, env: Env) -> None:
        hasty = Sweeper(
            [env.runner],
            clock=env.clock,
            backoff=Backoff(base=timedelta(seconds=30), jitter=0),
            handler_timeout=timedelta(seconds=0.2),
        )
        env.job("hung", "advance")
        hasty.compensate("job", "hung", reason="test", actor="app")
        gate = Gate("hung", "undo_first")
        HOOKS.append(gate)
        result = hasty.run_once()  # returns although the handler never does
        assert (result.compensations_run, result.compensations_failed) == (0, 1)
        [task] = env.store.compensations("job", "hung")
        assert (task.status, task.attempts) == ("pending", 1)
        assert "did not return within 0.2s" in (task.last_error or "")
        gate.go.set()
        for thread in threading.enumerate():
            if thread.name.startswith("statekit-compensation"):
                thread.join(60)
        assert env.read_job("hung").undone is None  # the abandoned call never commits
        HOOKS.clear()
        env.clock.advance(seconds=30)
        assert hasty.run_once().compensations_run == 1
        assert (env.read_job("hung").state, env.read_job("hung").undone) == ("undone", "1")
