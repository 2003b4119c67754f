"""`DjangoStore`'s compensation outbox: scheduling, claims, attempts, levers.

A claim is a short transaction of its own, committed before any handler runs:
`select_for_update(skip_locked=True)` where the database has it (PostgreSQL, MySQL 8,
MariaDB 10.6+), so sweepers take disjoint tasks; elsewhere (SQLite) the claim's write
transaction (`BEGIN IMMEDIATE`) and the compare-and-set on the claim token keep them
apart. Completing or failing a task checks its claim token: a lost claim is
`ConcurrentTransitionError` and changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import connections, transaction
from django.db.models import Exists, F, OuterRef, Q

from statekit.compensation import TASK_COLUMNS, CompensationTask, lost_claim, task_of
from statekit.contrib.django.models import Compensation, CompensationAttempt, Transition
from statekit.contrib.django.store.binding import ModelBinding
from statekit.contrib.django.store.core import RECORD_FIELDS, record_of
from statekit.contrib.django.store.units import database_errors, unit_of_entity
from statekit.errors import StoreError
from statekit.records import TransitionRecord
from statekit.store.protocol import COMPENSATIONS_DUE

__all__ = ["OPEN", "OutboxOperations", "schedule"]

OPEN = ("pending", "running", "dead")
"""Statuses of a task that still has to happen (and blocks older steps)."""


def schedule(db: str, tasks: Iterable[CompensationTask], now: datetime) -> int:
    """Add the tasks as pending unless the instance has them; a cancelled one (an
    earlier stuck episode, settled) is reopened with its attempts granted again.
    Returns how many were added or reopened."""
    wanted = {(t.entity_type, t.key, t.step_seq, t.action): t for t in tasks}
    if not wanted:
        return 0
    outbox = Compensation.objects.using(db)
    which = Q()
    for entity_type, key, step, action in wanted:
        which |= Q(entity_type=entity_type, entity_key=key, step_seq=step, action=action)
    found = {
        (row[0], row[1], row[2], row[3]): row[4]
        for row in outbox.filter(which).values_list(
            "entity_type", "entity_key", "step_seq", "action", "status"
        )
    }
    new = [
        Compensation(
            entity_type=t.entity_type,
            entity_key=t.key,
            step_seq=t.step_seq,
            action=t.action,
            event=t.event,
            status="pending",
            attempts=0,
            max_attempts=t.max_attempts,
            next_attempt_at=t.next_attempt_at or now,
            created_at=now,
            updated_at=now,
        )
        for unique, t in wanted.items()
        if unique not in found
    ]
    outbox.bulk_create(new, ignore_conflicts=True)
    reopened = 0
    for unique, status in found.items():
        if status != "cancelled":
            continue
        task = wanted[unique]
        reopened += outbox.filter(
            entity_type=unique[0],
            entity_key=unique[1],
            step_seq=unique[2],
            action=unique[3],
            status="cancelled",
        ).update(
            status="pending",
            next_attempt_at=task.next_attempt_at or now,
            max_attempts=F("attempts") + task.max_attempts,
            last_error=None,
            updated_at=now,
        )
    return len(new) + reopened


class OutboxOperations:
    """Mixed into `DjangoStore`: the outbox members of `SweepStore`."""

    db: str
    _bindings: dict[str, ModelBinding]

    if TYPE_CHECKING:

        def binding(self, entity_type: str) -> ModelBinding: ...  # StoreCore's

    @property
    def skip_locked(self) -> bool:
        """Whether claims use SKIP LOCKED on this store's database."""
        return bool(connections[self.db].features.has_select_for_update_skip_locked)

    def _in_unit(self, entity: object, what: str) -> tuple[str, str]:
        """The machine name and key of `entity`, which must be in an open unit of this
        thread (`transaction`, `session_unit`, `handler_unit` or an overdue batch)."""
        unit = unit_of_entity(entity)
        if unit is None or not connections[self.db].in_atomic_block:
            raise StoreError(
                f"{what} in the entity's transaction: this {type(entity).__name__} is not in "
                "an open DjangoStore unit (transaction, session_unit, handler_unit or an "
                "overdue batch) of this thread"
            )
        for name, binding in self._bindings.items():
            if isinstance(entity, binding.model):
                return name, str(entity.pk)
        raise StoreError(f"{type(entity).__name__} is not registered with this DjangoStore")

    def add_compensations(
        self, entity: object, tasks: Sequence[CompensationTask], now: datetime
    ) -> None:
        """Schedule `tasks` in the entity's unit; existing ones are left alone."""
        self._in_unit(entity, "compensations are scheduled")
        with database_errors("scheduling compensations"):
            schedule(self.db, tasks, now)

    def claim_compensations(
        self, now: datetime, limit: int, lease: timedelta
    ) -> list[CompensationTask]:
        """Claim up to `limit` due tasks, newest step first per instance (expired
        leases first, then by next attempt): each becomes `running` with one more
        attempt and a lease until `now + lease`, committed before any handler runs."""
        outbox = Compensation.objects.using(self.db)
        blocked = Exists(
            outbox.filter(
                entity_type=OuterRef("entity_type"),
                entity_key=OuterRef("entity_key"),
                step_seq__gt=OuterRef("step_seq"),
                status__in=OPEN,
            )
        )
        ways = (
            Q(status="running", lease_until__lte=now),
            Q(status="pending", next_attempt_at__lte=now),
        )
        token = uuid.uuid4().hex
        with database_errors("claiming compensations"), transaction.atomic(using=self.db):
            ids: list[int] = []
            for due in ways:
                if len(ids) >= limit:
                    break
                query = outbox.filter(due).exclude(blocked).order_by("next_attempt_at", "id")
                if self.skip_locked:
                    query = query.select_for_update(skip_locked=True)
                ids += query.values_list("id", flat=True)[: limit - len(ids)]
            if not ids:
                return []
            outbox.filter(id__in=ids, status__in=("pending", "running")).update(
                status="running",
                attempts=F("attempts") + 1,
                claim_token=token,
                lease_until=now + lease,
                updated_at=now,
            )
            rows = (
                outbox.filter(id__in=ids, claim_token=token)
                .order_by("next_attempt_at", "id")
                .values_list(*TASK_COLUMNS)
            )
            return [task_of(row) for row in rows]

    def _finish(
        self,
        task: CompensationTask,
        now: datetime,
        *,
        status: str,
        error: str | None,
        next_attempt_at: datetime | None,
    ) -> None:
        """Record one attempt's outcome, if this caller still holds the claim."""
        if task.claim_token is None or task.id is None:
            raise lost_claim(task)
        values: dict[str, Any] = {
            "status": status,
            "last_error": error,
            "lease_until": None,
            "claim_token": None,
            "updated_at": now,
        }
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        claimed = Compensation.objects.using(self.db).filter(
            id=task.id, claim_token=task.claim_token, status="running"
        )
        if claimed.update(**values) != 1:
            raise lost_claim(task)
        CompensationAttempt.objects.using(self.db).create(
            compensation_id=task.id,
            attempt=task.attempts,
            at=now,
            succeeded=status == "done",
            error=error,
        )

    def complete_compensation(self, task: CompensationTask, entity: object, now: datetime) -> int:
        """Mark `task` done in the entity's unit (with its attempt row) and return
        how many compensations of the instance are still open.

        Raises:
            ConcurrentTransitionError: the claim was lost; roll back.
        """
        self._in_unit(entity, "a compensation completes")
        with database_errors(f"completing compensation {task.action!r} of {task.key}"):
            self._finish(task, now, status="done", error=None, next_attempt_at=None)
            return (
                Compensation.objects.using(self.db)
                .filter(entity_type=task.entity_type, entity_key=task.key, status__in=OPEN)
                .count()
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
        """Record a failed attempt in a transaction of its own: back to `pending` at
        `next_attempt_at`, or `dead`.

        Raises:
            ConcurrentTransitionError: the claim was lost; nothing changed.
        """
        status = "dead" if dead else "pending"
        with database_errors("recording a failed compensation"):
            with transaction.atomic(using=self.db):
                self._finish(task, now, status=status, error=error, next_attempt_at=next_attempt_at)

    def claimed_step(self, task: CompensationTask, entity: object) -> TransitionRecord | None:
        """The history record of the step `task` undoes, read in the entity's unit
        with the claim; None when the claim holds but the history has no such step.

        Raises:
            ConcurrentTransitionError: the claim is lost (lease expired and taken,
                cancelled, or the instance was deleted or replaced).
        """
        name, key = self._in_unit(entity, "a step is read")
        with database_errors(f"reading step {task.step_seq} of {name} {key}"):
            held = Compensation.objects.using(self.db).filter(
                id=task.id,
                claim_token=task.claim_token,
                status="running",
                entity_type=name,
                entity_key=key,
            )
            if task.claim_token is None or not held.exists():
                raise lost_claim(task)
            rows = (
                Transition.objects.using(self.db)
                .filter(entity_type=name, entity_key=key, seq=task.step_seq)
                .values_list(*RECORD_FIELDS)
            )
            found = list(rows)
        return record_of(name, key, found[0]) if found else None

    def _update_tasks(
        self, entity: object, what: str, statuses: Sequence[str], **values: Any
    ) -> int:
        name, key = self._in_unit(entity, what)
        with database_errors(f"{what} for {name} {key}"):
            rows = Compensation.objects.using(self.db).filter(
                entity_type=name, entity_key=key, status__in=list(statuses)
            )
            return rows.update(**values)

    def reopen_dead_compensations(self, entity: object, now: datetime, extra_attempts: int) -> int:
        """In the entity's unit, give its dead compensations `extra_attempts` more
        tries starting now; returns how many were reopened."""
        return self._update_tasks(
            entity,
            "compensations are retried",
            ("dead",),
            status="pending",
            max_attempts=F("attempts") + extra_attempts,
            next_attempt_at=now,
            updated_at=now,
        )

    def cancel_compensations(
        self, entity: object, now: datetime, *, reason: str | None = None
    ) -> int:
        """In the entity's unit, cancel its open compensations (a running one loses
        its claim); `reason`, when given, is kept as their `last_error`."""
        values: dict[str, Any] = {
            "status": "cancelled",
            "claim_token": None,
            "lease_until": None,
            "updated_at": now,
        }
        if reason is not None:
            values["last_error"] = reason
        return self._update_tasks(entity, "compensations are cancelled", OPEN, **values)

    def due(self, entity_types: Sequence[str], now: datetime) -> set[str]:
        """Which of `entity_types` have an overdue instance, plus `"@compensations"`
        when a compensation is due: one indexed probe each, outside any lock."""
        found: set[str] = set()
        with database_errors("checking for due work"):
            for name in entity_types:
                binding = self.binding(name)
                deadline = binding.names[3]
                if binding.rows(self.db).filter(**{f"{deadline}__lte": now}).exists():
                    found.add(name)
            due = Q(status="pending", next_attempt_at__lte=now) | Q(
                status="running", lease_until__lte=now
            )
            if Compensation.objects.using(self.db).filter(due).exists():
                found.add(COMPENSATIONS_DUE)
        return found
