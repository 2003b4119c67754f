"""The sweeper: time out overdue instances and run their compensations to the end.

    sweeper = Sweeper([orders, tickets])   # Runners sharing one store (a SweepStore)
    result = sweeper.run_once()            # or run_forever(interval=30, stop=event)

A pass claims overdue instances in batches, fires each one's timeout event through
the normal decide/apply path (guards, history, locking) or marks it stuck and
schedules the compensations of its completed steps, newest first, as durable rows.
Then it drains the outbox (`statekit.drain`): each task is claimed with its own
lease, up to `concurrency` handlers run at once (never two of one instance), each with
no lock held and within `handler_timeout`, and the
entity's transaction then records its completion with the handler's writes; a
failure is retried with exponential backoff and jitter until its attempts are used
up, then dead-lettered for a person. Time is the database's clock unless a clock is
passed in.
A `Sweeper` holds its two halves with their collaborators given explicitly: the
deadline side (`statekit.deadlines.Deadlines`: batches, and setting aside an instance
that fails) and the compensation side (`statekit.drain.Drain`); it keeps the passes,
the levers and the listeners.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from statekit.clock import Clock
from statekit.compensation import Backoff, CompensationTask
from statekit.deadlines import Deadlines, SweepResult
from statekit.drain import Drain
from statekit.engine import Machine
from statekit.errors import (
    InvalidArgumentError,
    StoreError,
    SweeperError,
)
from statekit.limits import check_lever_text
from statekit.records import Snapshot, TransitionRecord
from statekit.retention import DEFAULT_PRUNE_BATCH, PRUNE_EVERY, Retention
from statekit.runtime import Listener, Runner
from statekit.store.protocol import COMPENSATIONS_DUE, SweepStore

__all__ = [
    "COMPENSATIONS_DUE",
    "DEFAULT_HANDLER_TIMEOUT",
    "DEFAULT_PRUNE_BATCH",
    "PRUNE_EVERY",
    "SweepResult",
    "SweepStore",
    "Sweeper",
]

DEFAULT_HANDLER_TIMEOUT = timedelta(minutes=1)
"""The default `handler_timeout` (half the lease instead, when that is shorter)."""


logger = logging.getLogger("statekit.sweeper")


class Sweeper:
    """Runs deadlines and compensations for the machines of `runners`.

    Args:
        runners: One Runner per machine; they must share one store that implements
            `SweepStore` (`MemoryStore` and `SQLAlchemyStore` do).
        clock: Time source for deadlines, leases and due checks; defaults to the
            store's database clock (the server's time on PostgreSQL and MySQL/MariaDB,
            so a skewed machine clock neither steals leases nor runs work early).
        batch_size: Instances claimed per transaction (compensations are claimed
            as slots come free: see `concurrency`).
        lease: How long a claimed compensation is reserved before another sweeper
            may take it over (a sweeper that died mid-handler); longer than
            `handler_timeout`.
        handler_timeout: How long to wait for a compensation handler (None: no
            limit); a handler still running then counts as a failed attempt. By
            default one minute, or half the lease when that is shorter.
        backoff: Delay between attempts of a failing compensation; its base and cap
            also bound the wait before a set-aside instance is tried again.
        listeners: Hooks for stuck instances, failed and dead-lettered compensations.
        concurrency: How many compensation handlers may run at once, in a bounded
            thread pool (1: one at a time). Never two of one instance; each keeps its
            own lease, timeout and completion transaction.
        drain_batch_size: The most compensations one pass runs (None: until none is
            due), so a pass that drains has a bounded length of its own.
        keep_done: How long done and cancelled compensations stay in the outbox
            (None, the default: for ever, as before). With a value, a pass that
            drains also prunes older ones, at most once per `PRUNE_EVERY`.
        prune_batch_size: Outbox rows deleted per transaction when pruning.
    """

    def __init__(
        self,
        runners: Sequence[Runner],
        *,
        clock: Clock | None = None,
        batch_size: int = 100,
        lease: timedelta = timedelta(minutes=5),
        handler_timeout: timedelta | None = DEFAULT_HANDLER_TIMEOUT,
        backoff: Backoff | None = None,
        listeners: Sequence[Listener] = (),
        concurrency: int = 1,
        drain_batch_size: int | None = None,
        keep_done: timedelta | None = None,
        prune_batch_size: int = DEFAULT_PRUNE_BATCH,
    ) -> None:
        if not runners:
            raise InvalidArgumentError(
                "runners", runners, "a Sweeper needs at least one Runner, one per machine"
            )
        stores = {id(r.store): r.store for r in runners}
        if len(stores) != 1:
            held = ", ".join(
                f"{r.machine.name} on {type(r.store).__name__} at {id(r.store):#x}" for r in runners
            )
            raise InvalidArgumentError(
                "runners",
                runners,
                "the runners of one Sweeper must share one store",
                message=(
                    f"the runners of one Sweeper must share one store; these use "
                    f"{len(stores)} ({held})"
                ),
            )
        sizes = {"batch_size": batch_size, "drain_batch_size": drain_batch_size}
        for name, size in {**sizes, "prune_batch_size": prune_batch_size}.items():
            if size is not None and size < 1:
                message = f"{name} {size!r} refused: it must be at least 1"
                raise InvalidArgumentError(name, size, "at least 1", message=message)
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidArgumentError(
                "concurrency",
                concurrency,
                "a whole number, at least 1",
                message=(
                    f"concurrency {concurrency!r} refused: it must be a whole number of "
                    "handlers that may run at once, at least 1"
                ),
            )
        if handler_timeout is DEFAULT_HANDLER_TIMEOUT:
            handler_timeout = min(handler_timeout, lease / 2)
        if handler_timeout is not None and not timedelta(0) < handler_timeout < lease:
            raise InvalidArgumentError(
                "handler_timeout",
                handler_timeout,
                f"positive and shorter than the lease ({lease}), or None for no limit",
                message=(
                    f"handler_timeout ({handler_timeout}) must be positive and shorter than "
                    f"the lease ({lease}), or None for no limit: a handler still running "
                    "when its lease ends could be run again by another sweeper"
                ),
            )
        store = runners[0].store
        if not isinstance(store, SweepStore):
            raise StoreError(
                f"{type(store).__name__} cannot run the sweeper: it does not implement "
                f"statekit.store.protocol.SweepStore (MemoryStore and SQLAlchemyStore do)"
            )
        self.runners = {r.machine.name: r for r in runners}
        self.store: SweepStore = store
        self.clock = clock or store.database_clock()
        self.batch_size = batch_size
        self.lease = lease
        self.handler_timeout = handler_timeout
        self.backoff = backoff or Backoff()
        self.listeners = tuple(listeners)
        self.concurrency = concurrency
        self.drain_batch_size = drain_batch_size
        self.retention = Retention(self.store, self.clock, keep_done, prune_batch_size)
        """Retention of settled compensations (`keep_done`) and `prune`."""
        self.deadlines = Deadlines(
            self.store,
            self.clock,
            batch_size,
            self.backoff,
            notify=self._notify,
            notices=bool(self.listeners),
        )
        """The deadline side: times out or marks stuck each machine's overdue instances."""
        self.drain = Drain(
            self.store,
            self.runners,
            self.clock,
            lease,
            handler_timeout,
            self.backoff,
            notify=self._notify,
            concurrency=concurrency,
        )
        """The compensation side: runs due compensations, up to `concurrency` at once."""

    # -- passes ----------------------------------------------------------------------

    def run_once(
        self,
        stop: Callable[[], bool] = lambda: False,
        *,
        deadlines: bool = True,
        drain: bool = True,
    ) -> SweepResult:
        """One pass: time out everything overdue, then drain due compensations.

        `deadlines=False` or `drain=False` leaves that half out, for operators who
        run them on separate schedules (`statekit sweep --only`). The drain runs at
        most `drain_batch_size` compensations; with `keep_done`, it then prunes.
        `stop` is checked between instances on the deadline side and between
        compensations. An instance that fails is set aside (see `Deadlines`) and
        never fails the pass. A machine whose deadline side fails
        otherwise (the database) does not keep the other machines or the drain
        from running; its error is raised at the end of the pass.

        Raises:
            StatekitError: the store failed (the first such error of the pass).
        """
        result = SweepResult()
        names = list(self.runners) if deadlines else []
        due = self.store.due(names, self.clock.now())
        failed: list[Exception] = []
        for name, runner in self.runners.items():
            if name in due and not stop():
                try:
                    self.deadlines.sweep(runner, result, stop)
                except Exception as exc:  # the store, not an instance: see Deadlines
                    logger.error("sweeping %s deadlines failed: %s", name, exc)
                    failed.append(exc)
        if drain and (COMPENSATIONS_DUE in due or result.marked_stuck):
            self.drain.run(result, stop, self.drain_batch_size)
        if drain and not stop():
            result.pruned += self.retention.due_prune(stop)
        if failed:
            raise failed[0]
        return result

    def prune(self, before: datetime, *, stop: Callable[[], bool] = lambda: False) -> int:
        """Delete done and cancelled compensations last changed before `before` (see
        `statekit.retention.Retention.prune`); returns how many."""
        return self.retention.prune(before, stop=stop)

    def run_forever(
        self,
        interval: float,
        stop: threading.Event,
        on_pass: Callable[[SweepResult], None] | None = None,
        *,
        max_failures: int = 10,
        max_delay: float = 300.0,
        deadlines: bool = True,
        drain: bool = True,
    ) -> None:
        """Run passes every `interval` seconds until `stop` is set.

        A pass that fails (the database went away) is logged and followed by a
        wait that doubles with each consecutive failure, from `interval` up to
        `max_delay` seconds; a pass that succeeds resets it. `deadlines` and `drain`
        are `run_once`'s.

        Raises:
            Exception: the error of the `max_failures`-th failed pass in a row
                (`max_failures` 0: never give up).
        """
        failures = 0
        while not stop.is_set():
            try:
                result = self.run_once(stop.is_set, deadlines=deadlines, drain=drain)
            except Exception as exc:
                failures += 1
                if max_failures and failures >= max_failures:
                    logger.error("%d sweeper passes in a row failed; giving up", failures)
                    raise
                delay = min(interval * 2 ** (failures - 1), max(max_delay, interval))
                logger.error(
                    "sweeper pass failed (%d in a row); next pass in %.1fs: %s",
                    failures,
                    delay,
                    exc,
                    extra={"failures": failures},
                )
                stop.wait(delay)
                continue
            failures = 0
            if on_pass is not None:
                on_pass(result)
            stop.wait(interval)

    def _mark_stuck(
        self, runner: Runner, entity: object, reason: str, now: datetime, actor: str
    ) -> TransitionRecord:
        """Mark one loaded instance stuck in its own transaction (`compensate`)."""
        machine = runner.machine
        key = machine.key_of(entity) or ""
        tasks = _tasks(machine, key, self.store.steps(entity), now)
        plan = machine.system_plan(
            entity,
            "@stuck",
            machine.state_of(entity) or "",
            now=now,
            actor=actor,
            note=reason,
            stuck_reason=reason,
        )
        restore = machine.stage(entity, plan)
        try:
            record = runner.store.apply(
                plan, entity=entity, after_commit=lambda r: self._notify("on_stuck", r)
            )
            self.store.add_compensations(entity, tasks, now)
        except BaseException:
            restore()
            raise
        return record

    def _notify(self, hook: str, *args: Any) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, hook)(*args)
            except Exception:
                logger.exception("listener %r failed in %s", listener, hook)

    # -- levers ----------------------------------------------------------------------

    def compensate(
        self, entity_type: str, key: str, *, reason: str, actor: str
    ) -> TransitionRecord:
        """Mark an instance stuck now and schedule its compensations (abort a saga).

        Raises:
            SweeperError: the instance is already stuck, or in a final state.
            InvalidArgumentError: this sweeper has no machine `entity_type`, or the
                actor or reason is not text the history holds (`statekit.limits.check_lever_text`).
        """
        runner = self._runner(entity_type)
        check_lever_text(f"compensate {entity_type} {key}", actor=actor, reason=reason)
        with self.store.session_unit(entity_type, key) as entity:
            snapshot = runner.machine.snapshot(entity)
            where = {"entity_type": entity_type, "key": key, "state": snapshot.state}
            if snapshot.stuck_at is not None:
                raise SweeperError(
                    f"{entity_type} {key} is already stuck in {snapshot.state!r} "
                    f"({snapshot.stuck_reason}); its compensations are scheduled",
                    lever="compensate",
                    **where,
                )
            if snapshot.state in runner.machine.final_states:
                raise SweeperError(
                    f"{entity_type} {key} is in final state {snapshot.state!r}: a finished "
                    "instance is not compensated",
                    lever="compensate",
                    **where,
                )
            return self._mark_stuck(runner, entity, reason, self.clock.now(), actor)

    def retry(
        self, entity_type: str, key: str, *, actor: str, extra_attempts: int = 3
    ) -> TransitionRecord:
        """Give an instance's dead-lettered compensations `extra_attempts` more tries,
        recorded in its history with the actor.

        Raises:
            SweeperError: it has no dead-lettered compensations.
            InvalidArgumentError: this sweeper has no machine `entity_type`, or the
                actor is not text the history holds.
        """
        runner = self._runner(entity_type)
        machine = runner.machine
        check_lever_text(f"retry {entity_type} {key}", actor=actor)
        now = self.clock.now()
        with self.store.session_unit(entity_type, key) as entity:
            reopened = self.store.reopen_dead_compensations(entity, now, extra_attempts)
            if reopened == 0:
                raise SweeperError(
                    f"{entity_type} {key} has no dead-lettered compensations to retry",
                    lever="retry",
                    entity_type=entity_type,
                    key=key,
                    state=machine.state_of(entity),
                )
            snapshot = machine.snapshot(entity)
            plan = machine.system_plan(
                entity,
                "@retry",
                snapshot.state,
                now=now,
                actor=actor,
                note=f"retrying {reopened} dead-lettered compensation(s)",
                stuck_reason=snapshot.stuck_reason or "compensations retried",
            )
            machine.stage(entity, plan)
            return runner.store.apply(plan, entity=entity)

    def resolve(
        self, entity_type: str, key: str, state: str, *, note: str, actor: str
    ) -> TransitionRecord:
        """Move an instance into `state` by hand, with a note; it is no longer stuck
        and its open compensations are cancelled. Recorded in history with the actor.

        Raises:
            InvalidArgumentError: `state` is not declared, the note is empty, the
                actor or note is not text the history holds, or this sweeper has no
                machine `entity_type`.
        """
        runner = self._runner(entity_type)
        machine = runner.machine
        if state not in machine.states:
            known = ", ".join(machine.states)
            raise InvalidArgumentError(
                "state",
                state,
                f"states: {known}",
                message=f"machine {entity_type!r} has no state {state!r} (states: {known})",
            )
        check_lever_text(f"resolve {entity_type} {key}", actor=actor, note=note)
        if not note.strip():
            raise InvalidArgumentError(
                "note",
                note,
                "a note saying why",
                message=(
                    f"resolving {entity_type} {key} by hand needs a note saying why (got {note!r})"
                ),
            )
        now = self.clock.now()
        with self.store.session_unit(entity_type, key) as entity:
            plan = machine.system_plan(entity, "@resolve", state, now=now, actor=actor, note=note)
            machine.stage(entity, plan)
            record = runner.store.apply(plan, entity=entity)
            self.store.cancel_compensations(entity, now)
        return record

    def stuck(self) -> Iterator[tuple[Snapshot, list[CompensationTask]]]:
        """Every stuck instance with its compensations, and every instance with a
        dead-lettered compensation."""
        for name in self.runners:
            tasks: dict[str, list[CompensationTask]] = {}
            for task in self.store.compensations(name):
                tasks.setdefault(task.key, []).append(task)
            for snapshot in self.store.stuck(name):
                yield snapshot, tasks.get(snapshot.key, [])

    def _runner(self, entity_type: str) -> Runner:
        try:
            return self.runners[entity_type]
        except KeyError:
            known = ", ".join(sorted(self.runners))
            raise InvalidArgumentError(
                "entity_type",
                entity_type,
                f"this sweeper's machines: {known}",
                message=f"this sweeper has no machine {entity_type!r} (it has: {known})",
            ) from None


def _tasks(
    machine: Machine, key: str, history: Sequence[TransitionRecord], now: datetime
) -> list[CompensationTask]:
    """The compensations of `history`'s completed steps, newest first."""
    tasks = []
    for record in reversed(history):
        declared = machine.compensation_of(record.source, record.event, record.target)
        if declared is not None:
            action, attempts = declared
            tasks.append(
                CompensationTask(
                    entity_type=machine.name,
                    key=key,
                    step_seq=record.seq,
                    action=action,
                    event=record.event,
                    max_attempts=attempts,
                    next_attempt_at=now,
                )
            )
    return tasks
