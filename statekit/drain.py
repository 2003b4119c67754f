"""The compensation drain: claim due tasks, run each handler with no lock held and a
timeout, then complete it, settle it or record the failure. With `concurrency` N, up to
N handlers run at once in N worker slots that claim their own work (`statekit.slots`);
each task is still its own unit (its own lease, check, completion transaction), and a
claim never hands out two tasks of one instance, nor one whose instance has a task
running.

A task whose handler returned and whose completion is about to commit claims the
slot's next task in that same transaction, where the store can (`ChainedClaims`):
the next task is taken only by a slot that is done with its handler, and starts as
soon as the commit returns, so its claim costs no commit and no round trip of its
own.

The rule for an instance that leaves stuck: its compensations run only while it is
still stuck where the sweeper (or `Sweeper.compensate`) marked it. A transition out
of stuck settles them: the drain cancels the instance's open compensations instead of
running them (before a handler runs, or after it if the transition landed while it
ran; then the handler's own writes are rolled back), and `@compensated` is applied
only to an instance that is still stuck and not in a final state.
A `Sweeper` holds one `Drain` (and one `statekit.deadlines.Deadlines`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from statekit.clock import Clock
from statekit.compensation import (
    SWEEPER_ACTOR,
    Backoff,
    CompensationContext,
    CompensationTask,
    call_with_timeout,
)
from statekit.deadlines import Notify, SweepResult
from statekit.errors import (
    CompensationError,
    CompensationTimeoutError,
    ConcurrentTransitionError,
)
from statekit.records import Snapshot
from statekit.slots import Slots, Superseded
from statekit.store.protocol import (
    ChainedClaims,
    HandlerUnit,
    LockedCompletion,
    Relocked,
    relock_then_complete,
)
from statekit.watchdog import Watchdog

if TYPE_CHECKING:
    from statekit.runtime import Runner
    from statekit.store.protocol import SweepStore

__all__ = ["Allowance", "Drain"]

logger = logging.getLogger("statekit.sweeper")


class Drain:
    """The compensation side of a `Sweeper`: runs due compensations, up to
    `concurrency` at once.

    Args:
        store: Claims compensations, and records their completion or failure.
        runners: The sweeper's runners by machine name; a task of another machine
            is skipped.
        clock: Time for claims, leases and retries.
        lease: How long a claimed compensation is reserved.
        handler_timeout: How long to wait for a handler (None: no limit).
        backoff: Delay between attempts of a failing compensation.
        notify: Tells the listeners about failed and dead-lettered compensations
            (from the pool's threads when `concurrency` is above 1).
        concurrency: How many handlers may run at once (1: one at a time, in the
            calling thread).
    """

    def __init__(
        self,
        store: SweepStore,
        runners: Mapping[str, Runner],
        clock: Clock,
        lease: timedelta,
        handler_timeout: timedelta | None,
        backoff: Backoff,
        notify: Notify,
        concurrency: int = 1,
    ) -> None:
        self.store = store
        self.concurrency = concurrency
        self.runners = runners
        self.clock = clock
        self.lease = lease
        self.handler_timeout = handler_timeout
        self.backoff = backoff
        self.notify = notify
        self.chained: ChainedClaims | None = store if isinstance(store, ChainedClaims) else None
        self.locked_completion: LockedCompletion | None = (
            store if isinstance(store, LockedCompletion) else None
        )

    def run(self, result: SweepResult, stop: Callable[[], bool], limit: int | None = None) -> None:
        """Run due compensations until none is due, `stop()` is true, or `limit`
        tasks (when given) were claimed: a claim never takes more than are left.

        Tasks are claimed (each with its own lease) only when a slot is free to run
        them at once, or by a slot whose handler returned, in its completion
        transaction, so a stop or a crash leaves no claimed-but-unstarted task
        waiting out a lease (but for the moment of that commit). After a stop no
        task is claimed; the handlers already running finish (or time out) before
        this returns.

        Raises:
            StatekitError: the store failed (claiming, or recording a failure); the
                running handlers are waited for first.
        """
        allowance = Allowance(stop, limit)
        if self.concurrency == 1:
            tasks: list[CompensationTask] = []
            while True:  # a task claimed is always run
                if not tasks:
                    tasks = self._claim(allowance, 1)
                    if not tasks:
                        return
                task = tasks.pop(0)
                tasks += self.compensate_one(task, result, allowance=allowance)
        self._run_pool(result, allowance)

    def _claim(self, allowance: Allowance, wanted: int) -> list[CompensationTask]:
        """Claim up to `wanted` tasks, as many as `allowance` still allows."""
        allowed = allowance.take(wanted)
        if not allowed:
            return []
        tasks: list[CompensationTask] = []
        try:
            tasks = self.store.claim_compensations(self.clock.now(), allowed, self.lease)
        finally:
            allowance.give_back(allowed - len(tasks))
        return tasks

    def _run_pool(self, result: SweepResult, allowance: Allowance) -> None:
        """Run tasks in `concurrency` slots that claim their own (`Slots`); each slot
        runs its handlers in its own thread (see `InSlot`)."""
        counting = threading.Lock()

        def work(task: CompensationTask) -> list[CompensationTask]:
            own = SweepResult()
            follow = self.compensate_one(task, own, allowance=allowance, in_slot=in_slot)
            with counting:
                result.add(own)
            return follow

        def timed_out(task: CompensationTask, seconds: float) -> None:
            own = SweepResult()
            self._record_failure(task, _timeout_error(task, seconds), own)
            with counting:
                result.add(own)

        slots = Slots(self.concurrency, partial(self._claim, allowance), work, allowance.stopped)
        timeout = self.handler_timeout
        watchdog = None if timeout is None else Watchdog(timeout.total_seconds())
        in_slot = InSlot(slots, watchdog, timed_out)
        try:
            slots.run()
        finally:
            if watchdog is not None:
                watchdog.stop()

    def compensate_one(
        self,
        task: CompensationTask,
        result: SweepResult,
        *,
        allowance: Allowance | None = None,
        in_slot: InSlot | None = None,
    ) -> list[CompensationTask]:
        """Claimed `task`: run it, settle it or record its failure, counting into
        `result`. Given the drain's `allowance`, if it still allows one when the
        task completes, the next task is claimed in the completion transaction
        where the store can (`ChainedClaims`): returned, committed with it, to run
        next. `in_slot`: the task runs in a worker slot, which runs the handler in
        its own thread (raising `Superseded` if the handler was given up)."""
        runner = self.runners.get(task.entity_type)
        if runner is None:
            logger.error("no runner for %s; compensation %s skipped", task.entity_type, task.action)
            return []
        follow: list[CompensationTask] = []
        try:
            with self.store.handler_unit(task.entity_type, task.key, task) as unit:
                ran, settled, compensated, follow = self._run(
                    runner, task, unit, allowance, in_slot
                )
        except ConcurrentTransitionError:
            self._rolled_back(follow, allowance)
            result.lost_races += 1
            return []
        except Exception as exc:  # the handler's failure is data: record and retry
            self._rolled_back(follow, allowance)
            self._record_failure(task, exc, result)
            return []
        result.compensations_run += ran
        result.compensations_settled += settled
        result.compensated += compensated
        return follow  # claimed by the transaction that just committed

    @staticmethod
    def _rolled_back(follow: list[CompensationTask], allowance: Allowance | None) -> None:
        """Tasks claimed in a completion that did not commit were never claimed."""
        if follow and allowance is not None:
            allowance.give_back(len(follow))

    def _run(
        self,
        runner: Runner,
        task: CompensationTask,
        unit: HandlerUnit,
        allowance: Allowance | None,
        in_slot: InSlot | None,
    ) -> tuple[int, int, int, list[CompensationTask]]:
        """Check, run the handler outside any transaction, complete (and, as far as
        `allowance` allows, claim the next task in the completion transaction):
        (ran, settled, compensated, the task claimed)."""
        machine, store = runner.machine, self.store
        # The claim and the step, read together: both belong to the life of the key that
        # was loaded (a claim on a deleted or replaced instance is lost, never run).
        step = store.claimed_step(task, unit.entity)
        marked = machine.snapshot(unit.entity)  # a plain read: a read-only commit is cheap
        if marked.stuck_at is None:
            marked = unit.relock()  # settle only what the locked row still says
            if marked.stuck_at is None:
                return 0, self._settle(task, unit, marked), 0, []
        handler = machine.compensations.get(task.action)
        if not callable(handler) or step is None:
            missing = "no such step" if callable(handler) else f"no handler {task.action!r}"
            raise CompensationError(
                f"cannot compensate step {task.step_seq} of {task.entity_type} {task.key}: "
                f"{missing}"
            )
        context = CompensationContext(step, task.idempotency_key, task.attempts, task.action)
        entity = unit.entity
        unit.release()
        timeout = self.handler_timeout
        seconds = None if timeout is None else timeout.total_seconds()
        if in_slot is not None:
            in_slot.call(lambda: handler(entity, context), task)
        elif not call_with_timeout(
            lambda: handler(entity, context),
            seconds,
            name=f"statekit-compensation-{task.action}",
            on_abandoned=unit.close,
        ):
            unit.abandon()
            raise _timeout_error(task, seconds or 0.0)
        now = self.clock.now()
        chained = self.chained
        # One task claimed for this slot in the completion, if the pass allows one.
        wanted = 1 if chained is not None and allowance is not None and allowance.take(1) else 0
        follow: list[CompensationTask] = []
        try:
            relocked = self._relock_and_complete(unit, task, marked.version, now, wanted)
            remaining, current = relocked.remaining, relocked.snapshot
            if remaining is None:
                unit.discard()  # the instance moved on while the handler ran
                current = unit.relock()
                if current.stuck_at is None:
                    return 0, self._settle(task, unit, current), 0, []
                raise CompensationError(
                    f"{task.entity_type} {task.key} changed while compensation "
                    f"{task.action!r} ran (version {marked.version} -> {current.version}); "
                    "its writes were discarded"
                )
            compensated = remaining == 0 and self._finish_instance(runner, entity, current, now)
            claimed = relocked.claimed
            if wanted and claimed is None and chained is not None:
                claimed = chained.claim_compensations_in(entity, now, wanted, self.lease)
            follow = claimed or []
        finally:
            if wanted and allowance is not None:  # a claim rolled back claimed nothing
                allowance.give_back(wanted - len(follow))
        return 1, 0, int(compensated), follow

    def _relock_and_complete(
        self, unit: HandlerUnit, task: CompensationTask, version: int, now: datetime, claim: int
    ) -> Relocked:
        """Lock the entity's row again and, if it is still at `version` and stuck,
        complete `task` (and, where the store can, claim up to `claim` tasks): in one
        statement where the store can (`LockedCompletion`)."""
        if self.locked_completion is not None:
            return self.locked_completion.relock_and_complete(
                unit, task, version, now, claim, self.lease
            )
        complete = partial(self.store.complete_compensation, task, unit.entity, now)
        return relock_then_complete(unit, version, complete)

    def _settle(self, task: CompensationTask, unit: HandlerUnit, current: Snapshot) -> int:
        """Cancel the open compensations of an instance that is no longer stuck."""
        reason = (
            f"settled: {task.entity_type} {task.key} left stuck (now in {current.state!r}, "
            f"version {current.version}) before compensation {task.action!r} of step "
            f"{task.step_seq} completed"
        )
        settled = self.store.cancel_compensations(unit.entity, self.clock.now(), reason=reason)
        logger.info(
            "%s; %d open compensation(s) cancelled",
            reason,
            settled,
            extra={"entity_type": task.entity_type, "entity_key": task.key, "action": task.action},
        )
        return settled

    @staticmethod
    def _finish_instance(runner: Runner, entity: object, current: Snapshot, now: datetime) -> bool:
        """Move a compensated instance into `compensated_state`: only from the state it is
        stuck in, and never out of a final state."""
        machine = runner.machine
        target = machine.compensated_state
        if target is None or current.state == target or current.stuck_at is None:
            return False
        if current.state in machine.final_states:
            logger.warning(
                "%s %s is compensated but stays in final state %r",
                current.entity_type,
                current.key,
                current.state,
            )
            return False
        plan = machine.system_plan(
            entity,
            "@compensated",
            target,
            now=now,
            actor=SWEEPER_ACTOR,
            note="every compensation completed",
        )
        machine.stage(entity, plan)
        runner.store.apply(plan, entity=entity)
        return True

    def _record_failure(
        self, task: CompensationTask, error: Exception, result: SweepResult
    ) -> None:
        dead = task.attempts >= task.max_attempts
        message = f"{type(error).__name__}: {error}"
        now = self.clock.now()
        try:
            self.store.fail_compensation(
                task,
                now,
                error=message[:2000],
                next_attempt_at=now + self.backoff.delay(task.attempts),
                dead=dead,
            )
        except ConcurrentTransitionError:
            result.lost_races += 1
            return
        result.compensations_failed += 1
        hook = "on_compensation_failed"
        if dead:
            result.dead_lettered += 1
            hook = "on_dead_lettered"
        logger.warning(
            "compensation %s of %s %s step %d failed (attempt %d of %d)%s: %s",
            task.action,
            task.entity_type,
            task.key,
            task.step_seq,
            task.attempts,
            task.max_attempts,
            "; dead-lettered" if dead else "",
            message,
            extra={"entity_type": task.entity_type, "entity_key": task.key, "action": task.action},
        )
        self.notify(hook, task, error)


def _timeout_error(task: CompensationTask, seconds: float) -> CompensationTimeoutError:
    return CompensationTimeoutError(
        entity_type=task.entity_type,
        key=task.key,
        step=task.step_seq,
        action=task.action,
        timeout=seconds,
    )


class InSlot:
    """How a worker slot runs handlers: in the slot's own thread (no hand-off to
    another thread and back), timed by the pool's `Watchdog`. A handler that outlives
    the timeout is given up: a new thread records the timeout (`timed_out`) and
    carries on as the slot (`Slots.supersede`); when the handler returns, its thread
    raises `Superseded`, which rolls its unit back, and ends."""

    def __init__(
        self,
        slots: Slots[CompensationTask],
        watchdog: Watchdog | None,
        timed_out: Callable[[CompensationTask, float], None],
    ) -> None:
        self.slots = slots
        self.watchdog = watchdog
        self.timed_out = timed_out

    def call(self, handler: Callable[[], None], task: CompensationTask) -> None:
        """Run `handler` for `task` here.

        Raises:
            Superseded: the handler outlived the timeout and was given up.
        """
        me = threading.current_thread()
        name, me.name = me.name, f"statekit-compensation-{task.action}"
        dog, watch = self.watchdog, None
        if dog is not None:
            timed_out = partial(self.timed_out, task, dog.seconds)
            watch = dog.watch(partial(self.slots.supersede, timed_out))
        try:
            handler()
        finally:
            if watch is not None and watch.end():
                raise Superseded  # the task's failure is recorded by the slot's successor
            me.name = name


class Allowance:
    """What a drain pass may still claim: nothing once `stop()` is true, and no more
    than `limit` tasks in all (None: no limit). Tasks a claim did not find, or that
    a completion claimed and then rolled back, are given back."""

    def __init__(self, stop: Callable[[], bool], limit: int | None = None) -> None:
        self.stopped = stop
        self._left = limit
        self._lock = threading.Lock()

    def take(self, wanted: int) -> int:
        """Reserve up to `wanted` claims; how many may be made."""
        if self.stopped():
            return 0
        if self._left is None:
            return wanted
        with self._lock:
            allowed = min(wanted, self._left)
            self._left -= allowed
            return allowed

    def give_back(self, unused: int) -> None:
        """Return `unused` reserved claims."""
        if unused and self._left is not None:
            with self._lock:
                self._left += unused
