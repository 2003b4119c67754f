"""The deadline side of the sweeper: overdue instances, batch by batch.

A batch of claimed instances runs in one transaction with no per-instance cost:
timeout events fire through the normal decide/apply path, and instances to mark
stuck are marked set-based at the end. Where the store implements `StuckMarking`,
the instances that are only to be marked stuck go first, claimed and marked at the
store's depth with nothing built per instance (`statekit.store.marks`). If anything
in a batch fails, it is rolled back and swept again one instance per savepoint, so
an instance that cannot be handled (an unknown state, a raising guard, a name too
long for a column) is set aside with its error and a backoff, and never stops the
others.
A `Sweeper` holds one `Deadlines` (and one `statekit.drain.Drain`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from statekit.clock import Clock
from statekit.compensation import SWEEPER_ACTOR, Backoff
from statekit.engine import Machine
from statekit.errors import TransitionError
from statekit.records import Snapshot, TransitionRecord
from statekit.runtime import Runner
from statekit.store.marks import StuckMarking

if TYPE_CHECKING:
    from statekit.store.protocol import OverdueBatch, SweepStore

__all__ = ["Deadlines", "Notify", "SweepResult"]

logger = logging.getLogger("statekit.sweeper")

Notify = Callable[..., None]
"""`notify(hook, *args)`: calls `hook` (`"on_stuck"`, ...) on the sweeper's listeners."""


@dataclass
class SweepResult:
    """What one pass did."""

    claimed: int = 0
    timed_out: int = 0
    marked_stuck: int = 0
    compensations_run: int = 0
    compensations_failed: int = 0
    dead_lettered: int = 0
    compensated: int = 0
    lost_races: int = 0
    compensations_settled: int = 0
    set_aside: int = 0
    pruned: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts as a plain dict (for `--json`)."""
        return asdict(self)

    def add(self, other: SweepResult) -> None:
        """Add `other`'s counts to these."""
        for name, count in asdict(other).items():
            setattr(self, name, getattr(self, name) + count)


@dataclass
class _BatchDone:
    """What one committed batch of overdue instances did."""

    size: int
    result: SweepResult = field(default_factory=SweepResult)
    keys: list[str] = field(default_factory=list)
    notices: list[TransitionRecord] = field(default_factory=list)
    set_aside: list[tuple[Snapshot, Exception, datetime]] = field(default_factory=list)
    stopped: bool = False


class Deadlines:
    """The deadline side of a `Sweeper`: times out or marks stuck each machine's
    overdue instances.

    Args:
        store: Claims overdue instances in batches and marks them.
        clock: The time deadlines are compared with.
        batch_size: Instances claimed per transaction.
        backoff: Its base and cap bound how long a failing instance is set aside.
        notify: Tells the listeners about stuck and set-aside instances.
        notices: Whether anyone listens for stuck instances (`on_stuck`); when not,
            a set-based mark builds no record per instance.
    """

    def __init__(
        self,
        store: SweepStore,
        clock: Clock,
        batch_size: int,
        backoff: Backoff,
        notify: Notify,
        *,
        notices: bool = True,
    ) -> None:
        self.store = store
        self.clock = clock
        self.batch_size = batch_size
        self.backoff = backoff
        self.notify = notify
        self.notices = notices

    def sweep(self, runner: Runner, result: SweepResult, stop: Callable[[], bool]) -> None:
        """Sweep one machine's overdue instances, batch after batch.

        A batch runs in one transaction with no per-instance cost. If anything in
        it fails, it is rolled back and swept again one instance at a time, each in
        a savepoint, so the bad instances are set aside and the others proceed.
        Where the store marks stuck set-based (`StuckMarking`), the instances that
        are only to be marked stuck go first, batch after batch, at the store's depth.
        """
        if isinstance(self.store, StuckMarking):
            self._mark_stuck_sets(self.store, runner.machine, result, stop)
        seen: set[str] = set()
        while not stop():
            now = self.clock.now()
            try:
                done = self._sweep_batch(runner, now, seen, stop, isolated=False)
            except Exception as exc:
                logger.info(
                    "a %s batch failed (%s: %s); sweeping it one instance at a time",
                    runner.machine.name,
                    type(exc).__name__,
                    exc,
                )
                done = self._sweep_batch(runner, now, seen, stop, isolated=True)
            seen.update(done.keys)
            result.add(done.result)
            for record in done.notices:
                self.notify("on_stuck", record)
            for snapshot, error, until in done.set_aside:
                logger.warning(
                    "%s %s set aside until %s: %s",
                    snapshot.entity_type,
                    snapshot.key,
                    until.isoformat(),
                    _described(error),
                    extra={"entity_type": snapshot.entity_type, "entity_key": snapshot.key},
                )
                self.notify("on_set_aside", snapshot, error)
            if done.stopped or done.size < self.batch_size or not done.keys:
                return

    def _mark_stuck_sets(
        self, store: StuckMarking, machine: Machine, result: SweepResult, stop: Callable[[], bool]
    ) -> None:
        """Mark stuck, batch after batch and set-based, the overdue instances whose
        state fires no timeout event. If a batch fails it is rolled back and left to
        the per-instance sweep that follows, which sets the bad instances aside."""
        reasons = _stuck_reasons(machine)
        while reasons and not stop():
            now = self.clock.now()
            plans = {
                state: machine.system_plan(
                    Snapshot(machine.name, "", state, 0),
                    "@stuck",
                    state,
                    now=now,
                    actor=SWEEPER_ACTOR,
                    note=reason,
                    stuck_reason=reason,
                )
                for state, reason in reasons.items()
            }
            try:
                marks = store.mark_overdue_stuck(
                    machine.name,
                    plans,
                    machine.spec.accepted_versions,
                    machine.compensated_steps,
                    now,
                    self.batch_size,
                    self.notices,  # keys: only listeners need the marked instances
                )
            except Exception as exc:
                logger.info(
                    "marking %s batch stuck failed (%s: %s); sweeping one instance at a time",
                    machine.name,
                    type(exc).__name__,
                    exc,
                )
                return
            if marks is None:
                return
            marked = marks.count
            result.claimed += marked
            result.marked_stuck += marked
            if marked:
                self._log_marked(machine, marked, marks.scheduled)
            if self.notices:
                for record in marks.records():
                    self.notify("on_stuck", record)
            if marked < self.batch_size:
                return

    def _sweep_batch(
        self,
        runner: Runner,
        now: datetime,
        seen: set[str],
        stop: Callable[[], bool],
        *,
        isolated: bool,
    ) -> _BatchDone:
        """Claim one batch and time out or mark stuck each new instance in it."""
        machine = runner.machine
        with self.store.overdue_batch(machine.name, now, self.batch_size) as batch:
            done = _BatchDone(len(batch.snapshots))
            stuck: list[tuple[Snapshot, str]] = []
            for snapshot in batch.snapshots:
                if snapshot.key in seen:
                    continue
                if stop():  # the claimed rest is released untouched
                    done.stopped = True
                    break
                done.keys.append(snapshot.key)
                if isolated:
                    self._sweep_one(runner, batch, snapshot, now, done)
                    continue
                reason = self._time_out(runner, batch, snapshot, done.result)
                if reason is not None:
                    stuck.append((snapshot, reason))
            if stuck:
                done.notices = self._mark_batch_stuck(machine, batch, stuck, now)
        done.result.claimed = len(done.keys)
        done.result.marked_stuck = len(done.notices)
        return done

    def _sweep_one(
        self,
        runner: Runner,
        batch: OverdueBatch,
        snapshot: Snapshot,
        now: datetime,
        done: _BatchDone,
    ) -> None:
        """Time out or mark stuck one claimed instance in a savepoint; if that fails,
        set it aside: its stuck marker gets the error and its deadline moves on by a
        backoff that grows with the time since its first failure."""
        try:
            with batch.savepoint():
                reason = self._time_out(runner, batch, snapshot, done.result)
                if reason is not None:
                    done.notices += self._mark_batch_stuck(
                        runner.machine, batch, [(snapshot, reason)], now
                    )
        except Exception as exc:
            first = snapshot.stuck_at if snapshot.stuck_at is not None else now
            delay = min(max(self.backoff.base, now - first), self.backoff.cap)
            until = now + delay
            note = f"set aside by the sweeper until {until.isoformat()}: {_described(exc)}"
            try:
                with batch.savepoint():
                    aside = batch.set_aside(snapshot, note, first, until)
            except Exception as failed:  # even that: skip it, the others go on
                logger.error(
                    "%s %s failed (%s) and could not be set aside (%s); skipped",
                    snapshot.entity_type,
                    snapshot.key,
                    _described(exc),
                    _described(failed),
                    extra={"entity_type": snapshot.entity_type, "entity_key": snapshot.key},
                )
                return
            if aside:
                done.result.set_aside += 1
                done.set_aside.append((snapshot, exc, until))
            else:  # its version moved: another writer got there first
                done.result.lost_races += 1

    def _time_out(
        self, runner: Runner, batch: OverdueBatch, snapshot: Snapshot, result: SweepResult
    ) -> str | None:
        """Fire the timeout event of one claimed instance; return why it is stuck instead."""
        machine = runner.machine
        timeout = machine.timeouts.get(snapshot.state)
        if timeout is None or timeout.event is None:
            return _stuck_reason(machine, snapshot.state)
        entity = batch.entity(snapshot.key)
        try:
            runner.fire(entity, timeout.event, actor=SWEEPER_ACTOR)
        except TransitionError as exc:
            batch.forget(entity)
            return f"timeout event {timeout.event!r} refused: {exc}"
        result.timed_out += 1
        return None

    def _mark_batch_stuck(
        self,
        machine: Machine,
        batch: OverdueBatch,
        stuck: list[tuple[Snapshot, str]],
        now: datetime,
    ) -> list[TransitionRecord]:
        plans = [
            machine.system_plan(
                snapshot,
                "@stuck",
                snapshot.state,
                now=now,
                actor=SWEEPER_ACTOR,
                note=reason,
                stuck_reason=reason,
            )
            for snapshot, reason in stuck
        ]
        records: list[TransitionRecord]
        records, scheduled = batch.mark(plans, machine.compensated_steps, now)
        self._log_marked(machine, len(records), scheduled)
        return records

    @staticmethod
    def _log_marked(machine: Machine, marked: int, scheduled: int) -> None:
        logger.info(
            "%d %s instance(s) marked stuck, %d compensation(s) scheduled",
            marked,
            machine.name,
            scheduled,
            extra={"entity_type": machine.name, "stuck": marked},
        )


def _stuck_reason(machine: Machine, state: str) -> str | None:
    """Why an overdue instance in `state` is marked stuck: its state declares no
    timeout, or one that fires no event; None when the timeout fires an event."""
    timeout = machine.timeouts.get(state)
    if timeout is None:
        return f"deadline passed in {state!r}, which declares no timeout"
    if timeout.event is None:
        return _no_progress(state, timeout.after)
    return None


def _stuck_reasons(machine: Machine) -> dict[str, str]:
    """state -> why an overdue instance in it is marked stuck, for each of the
    machine's states whose timeout fires no event."""
    reasons = {state: _stuck_reason(machine, state) for state in machine.states}
    return {state: reason for state, reason in reasons.items() if reason is not None}


@functools.lru_cache(maxsize=256)
def _no_progress(state: str, after: timedelta) -> str:
    """Why an instance is stuck in a state whose timeout fires no event."""
    return f"no progress in {state!r} within {_duration(after)}"


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _described(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
