"""`MemoryStore`'s compensation outbox: the reference for what a store's outbox does.

One task per (entity type, key, step, action). A claim takes due tasks (pending and
their next attempt has come, or running and their lease ran out), newest step first
within an instance: a task waits while a newer step of the same instance is open
(pending, running or dead), so one instance never has two tasks running. Each claim
gets its own token; completing or failing a task whose token no longer matches (its
lease ran out and another sweeper took it, a person cancelled it, the instance was
deleted or replaced) raises `ConcurrentTransitionError` and changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from statekit.compensation import CompensationTask, TaskStatus, lost_claim
from statekit.records import TransitionRecord
from statekit.store.memory_units import Ident, MemoryUnits
from statekit.store.protocol import COMPENSATIONS_DUE, PRUNABLE, Attempt

__all__ = ["MemoryOutbox"]

_OPEN: tuple[TaskStatus, ...] = ("pending", "running", "dead")


class MemoryOutbox(MemoryUnits):
    """Mixed into `MemoryStore`: the outbox members of `SweepStore` and its reads."""

    def _schedule(self, task: CompensationTask, now: datetime) -> int:
        """Add `task` as pending unless the instance has it; a cancelled one (an
        earlier stuck episode, settled) is reopened with its attempts granted again.
        Returns 1 when a task was added or reopened."""
        unique = (task.entity_type, task.key, task.step_seq, task.action)
        due = task.next_attempt_at or now
        found = self._task_ids.get(unique)
        if found is None:
            self._next_task_id += 1
            ident = self._task_ids[unique] = self._next_task_id
            self._tasks[ident] = replace(
                task, status="pending", attempts=0, next_attempt_at=due, id=ident
            )
            self._attempts[ident] = []
            self._changed_at[ident] = now
            return 1
        old = self._tasks[found]
        if old.status != "cancelled":
            return 0
        self._tasks[found] = replace(
            old,
            status="pending",
            next_attempt_at=due,
            max_attempts=old.attempts + task.max_attempts,
            last_error=None,
        )
        self._changed_at[found] = now
        return 1

    def _drop_tasks(self, ident: Ident) -> None:
        """Forget the outbox rows of one instance's life (deleted or replaced)."""
        for unique, task_id in list(self._task_ids.items()):
            if unique[:2] == ident:
                del self._task_ids[unique]
                del self._tasks[task_id]
                self._attempts.pop(task_id, None)
                self._leases.pop(task_id, None)
                self._changed_at.pop(task_id, None)

    def add_compensations(
        self, entity: object, tasks: Sequence[CompensationTask], now: datetime
    ) -> None:
        """Schedule `tasks` in the entity's unit; existing ones are left alone."""
        with self._lock:
            self._in_unit(entity, "compensations are scheduled")
            for task in tasks:
                self._schedule(task, now)

    def _due(self, task: CompensationTask, now: datetime) -> bool:
        if task.status == "pending":
            return task.next_attempt_at is not None and task.next_attempt_at <= now
        lease = self._leases.get(task.id or 0)
        return task.status == "running" and lease is not None and lease <= now

    def _blocked(self, task: CompensationTask) -> bool:
        """Whether a newer step of the same instance is still open."""
        return any(
            other.entity_type == task.entity_type
            and other.key == task.key
            and other.step_seq > task.step_seq
            and other.status in _OPEN
            for other in self._tasks.values()
        )

    def claim_compensations(
        self, now: datetime, limit: int, lease: timedelta
    ) -> list[CompensationTask]:
        """Claim up to `limit` due tasks for this caller (see the module docstring):
        each becomes `running` with one more attempt and a lease until `now + lease`,
        expired leases first, then by next attempt."""
        token = uuid.uuid4().hex
        with self._lock:  # nothing here can fail halfway: no unit needed
            due = [t for t in self._tasks.values() if self._due(t, now) and not self._blocked(t)]
            due.sort(key=lambda t: (t.status != "running", t.next_attempt_at, t.id))
            claimed = []
            for task in due[:limit]:
                ident = task.id or 0
                self._tasks[ident] = replace(
                    task, status="running", attempts=task.attempts + 1, claim_token=token
                )
                self._leases[ident] = now + lease
                claimed.append(self._tasks[ident])
        claimed.sort(key=lambda t: (t.next_attempt_at, t.id))
        return [replace(task) for task in claimed]

    def _finish(
        self,
        task: CompensationTask,
        now: datetime,
        *,
        status: TaskStatus,
        error: str | None,
        next_attempt_at: datetime | None,
    ) -> None:
        """Record one attempt's outcome, if this caller still holds the claim."""
        stored = self._tasks.get(task.id or 0)
        if (
            stored is None
            or stored.claim_token != task.claim_token
            or stored.status != "running"
            or task.claim_token is None
        ):
            raise lost_claim(task)
        ident = task.id or 0
        self._tasks[ident] = replace(
            stored,
            status=status,
            last_error=error,
            claim_token=None,
            next_attempt_at=next_attempt_at or stored.next_attempt_at,
        )
        self._leases.pop(ident, None)
        self._changed_at[ident] = now
        self._attempts[ident].append(Attempt(task.attempts, now, status == "done", error))

    def complete_compensation(self, task: CompensationTask, entity: object, now: datetime) -> int:
        """Mark `task` done in the entity's unit and return how many compensations of
        the instance are still open.

        Raises:
            ConcurrentTransitionError: the claim was lost; nothing changed.
        """
        with self._lock:
            self._in_unit(entity, "a compensation completes")
            self._finish(task, now, status="done", error=None, next_attempt_at=None)
            return sum(
                1
                for t in self._tasks.values()
                if (t.entity_type, t.key) == (task.entity_type, task.key) and t.status in _OPEN
            )

    def fail_compensation(
        self,
        task: CompensationTask,
        now: datetime,
        *,
        error: str,
        next_attempt_at: datetime,
        dead: bool,
    ) -> None:
        """Record a failed attempt: back to `pending` at `next_attempt_at`, or `dead`.

        Raises:
            ConcurrentTransitionError: the claim was lost; nothing changed.
        """
        with self._lock:  # `_finish` checks the claim before it writes
            status: TaskStatus = "dead" if dead else "pending"
            self._finish(task, now, status=status, error=error, next_attempt_at=next_attempt_at)

    def claimed_step(self, task: CompensationTask, entity: object) -> TransitionRecord | None:
        """The history record of the step `task` undoes, read in the entity's unit;
        None when the claim holds but the history has no such step.

        Raises:
            ConcurrentTransitionError: the claim is lost (see the module docstring).
        """
        with self._lock:
            ident = self._in_unit(entity, "a step is read")
            stored = self._tasks.get(task.id or 0)
            if (
                stored is None
                or (stored.entity_type, stored.key) != ident
                or stored.status != "running"
                or stored.claim_token != task.claim_token
            ):
                raise lost_claim(task)
            for record in self._history.get(ident, ()):
                if record.seq == task.step_seq:
                    return record
            return None

    def _update_tasks(
        self, entity: object, what: str, statuses: Sequence[TaskStatus], **values: object
    ) -> list[int]:
        """Replace `values` on the entity's tasks in `statuses`; return their ids."""
        with self._lock:
            ident = self._in_unit(entity, what)
            changed = [
                task_id
                for task_id, t in self._tasks.items()
                if (t.entity_type, t.key) == ident and t.status in statuses
            ]
            for task_id in changed:
                self._tasks[task_id] = replace(self._tasks[task_id], **values)  # type: ignore[arg-type]
            return changed

    def reopen_dead_compensations(self, entity: object, now: datetime, extra_attempts: int) -> int:
        """In the entity's unit, give its dead compensations `extra_attempts` more
        tries starting now; returns how many were reopened."""
        reopened = self._update_tasks(
            entity, "compensations are retried", ("dead",), status="pending", next_attempt_at=now
        )
        for task_id in reopened:
            task = self._tasks[task_id]
            self._tasks[task_id] = replace(task, max_attempts=task.attempts + extra_attempts)
            self._changed_at[task_id] = now
        return len(reopened)

    def cancel_compensations(
        self, entity: object, now: datetime, *, reason: str | None = None
    ) -> int:
        """In the entity's unit, cancel its open compensations (a running one loses
        its claim); `reason`, when given, is kept as their `last_error`."""
        values: dict[str, object] = {"status": "cancelled", "claim_token": None}
        if reason is not None:
            values["last_error"] = reason
        cancelled = self._update_tasks(entity, "compensations are cancelled", _OPEN, **values)
        for task_id in cancelled:
            self._leases.pop(task_id, None)
            self._changed_at[task_id] = now
        return len(cancelled)

    def due(self, entity_types: Sequence[str], now: datetime) -> set[str]:
        """Which of `entity_types` have an overdue instance, plus `"@compensations"`
        when a compensation is due."""
        wanted = set(entity_types)
        with self._lock:
            found = {
                kind
                for (kind, _), s in self._snapshots.items()
                if kind in wanted and s.deadline_at is not None and s.deadline_at <= now
            }
            if any(self._due(task, now) for task in self._tasks.values()):
                found.add(COMPENSATIONS_DUE)
        return found

    # -- retention -------------------------------------------------------------------

    def _prunable(self, before: datetime) -> list[int]:
        return [
            task_id
            for task_id, task in self._tasks.items()
            if task.status in PRUNABLE and self._changed_at[task_id] < before
        ]

    def prunable_compensations(self, before: datetime) -> int:
        """How many settled tasks (done, cancelled) last changed before `before` there are."""
        with self._lock:
            return len(self._prunable(before))

    def prune_compensations(self, before: datetime, limit: int) -> int:
        """Forget up to `limit` settled tasks last changed before `before`, oldest id
        first, with their attempts; returns how many (see `OutboxRetention`)."""
        with self._lock:
            doomed = sorted(self._prunable(before))[:limit]
            for task_id in doomed:
                task = self._tasks.pop(task_id)
                del self._task_ids[(task.entity_type, task.key, task.step_seq, task.action)]
                self._attempts.pop(task_id, None)
                self._changed_at.pop(task_id, None)
            return len(doomed)

    # -- reads -----------------------------------------------------------------------

    def compensations(
        self,
        entity_type: str | None = None,
        key: str | None = None,
        *,
        status: Sequence[TaskStatus] = (),
    ) -> list[CompensationTask]:
        """Outbox rows, optionally of one machine, one instance and/or in `status`;
        by machine and key, newest step first (see `Reads.compensations`)."""
        with self._lock:
            found = [
                replace(t)
                for t in self._tasks.values()
                if (entity_type is None or t.entity_type == entity_type)
                and (key is None or t.key == key)
                and (not status or t.status in status)
            ]
        return sorted(found, key=lambda t: (t.entity_type, t.key, -t.step_seq))

    def attempts(self, task_id: int) -> list[Attempt]:
        """Every attempt at one compensation, first first (see `Reads.attempts`)."""
        with self._lock:
            return list(self._attempts.get(task_id, ()))
