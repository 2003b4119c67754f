"""Recording a compensation's attempt on `SQLAlchemyStore`: its completion (in the
entity's transaction, with the handler's writes) or its failure.

After a handler returned, the drain locks the entity's row again and completes the
task only if the row has not moved (`relock_and_complete`, the `LockedCompletion`
protocol). On PostgreSQL that is one statement: the row lock with its snapshot, the
claim-checked UPDATE of the task and its attempt row, and, for a drain slot, the claim
of the slot's next task, all as CTEs of one statement.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from functools import cached_property, partial
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import object_session

from statekit.compensation import CompensationTask, task_of
from statekit.errors import StoreError
from statekit.records import Snapshot
from statekit.store.protocol import Relocked, relock_then_complete
from statekit.store.sqlalchemy.claims import Claim, Finish, finish_statements, locked_completion
from statekit.store.sqlalchemy.dialects import capabilities
from statekit.store.sqlalchemy.draining import HandlerUnit
from statekit.store.sqlalchemy.errors import wrap
from statekit.store.sqlalchemy.lives import lost_claim
from statekit.store.sqlalchemy.tables import StatekitTables

__all__ = ["CompletionOperations"]


class CompletionOperations:
    """Mixed into `SQLAlchemyStore` through `OutboxOperations`: recording attempts."""

    engine: Engine
    tables: StatekitTables

    @property
    def _sweep_engine(self) -> Engine:  # provided by OutboxOperations
        raise NotImplementedError

    @property
    def _claim_engine(self) -> Engine:  # provided by OutboxOperations
        raise NotImplementedError

    @property
    def _claim_statements(self) -> Claim:  # provided by OutboxOperations
        raise NotImplementedError

    def _expiry_probe_due(self, now: datetime) -> bool:  # provided by OutboxOperations
        raise NotImplementedError

    @cached_property
    def _finish_statements(self) -> Finish:
        """The statements recording an attempt, built once with everything bound."""
        return finish_statements(
            self.tables.compensations,
            self.tables.attempts,
            combine=capabilities(self.engine).name == "postgresql",
        )

    def complete_compensation(self, task: CompensationTask, entity: object, now: datetime) -> int:
        """Mark `task` done in the entity's transaction (with its attempt row) and
        return how many compensations of the instance are still open.

        Raises:
            ConcurrentTransitionError: the task's claim was lost (lease expired and
                another sweeper took it, or a person cancelled it); roll back.
        """
        session = object_session(entity)
        if session is None:
            raise StoreError("a compensation completes in the entity's transaction")
        conn = session.connection()
        return self._finish(conn, task, now, status="done", error=None, next_attempt_at=None)

    def relock_and_complete(
        self,
        unit: HandlerUnit,
        task: CompensationTask,
        version: int,
        now: datetime,
        claim: int = 0,
        lease: timedelta = timedelta(0),
    ) -> Relocked:
        """`HandlerUnit.relock`, then `complete_compensation` if the row is still at
        `version` and stuck (`statekit.store.protocol.LockedCompletion`). On
        PostgreSQL one statement does both and, with `claim` 1, claims the next
        pending task (unless this claim should also look for expired leases: then,
        as for more than one, the caller claims)."""
        if self._finish_statements.combined is None:
            complete = partial(self.complete_compensation, task, unit.entity, now)
            return relock_then_complete(unit, version, complete)
        binding = unit.binding
        claiming = claim == 1 and not self._expiry_probe_due(now)
        statement = self._locked_completion(binding, claiming=claiming)
        parameters = _attempt(task, now, status="done", error=None, retry_at=None)
        parameters["expected_version"] = version
        if claiming:
            parameters.update(token=uuid.uuid4().hex, lease_until=now + lease)
        row = unit.locked_row(statement, parameters)
        held = len(binding.locked_snapshot.selected_columns)
        current: Snapshot = binding.snapshot(row[:held])
        if current.version != version or current.stuck_at is None:
            return Relocked(current, None)
        remaining = _remaining(task, row[held], row[held + 1])
        if not claiming:
            return Relocked(current, remaining)
        claimed = row[held + 2 :]
        return Relocked(current, remaining, [] if claimed[0] is None else [task_of(claimed)])

    def _locked_completion(self, binding: Any, *, claiming: bool) -> Any:
        """`claims.locked_completion` for `binding`, with the claim of pending tasks
        or without, built once each."""
        built: dict[tuple[str, bool], Any] = self.__dict__.setdefault("_locked_completions", {})
        name = (binding.machine.name, claiming)
        statement = built.get(name)
        if statement is None:
            take = self._claim_statements.single if claiming else None  # one pending
            c, attempts = self.tables.compensations, self.tables.attempts
            statement = built[name] = locked_completion(
                self._finish_statements, c, attempts, binding, take
            )
        return statement

    def fail_compensation(
        self,
        task: CompensationTask,
        now: datetime,
        *,
        error: str,
        next_attempt_at: datetime,
        dead: bool,
    ) -> None:
        """Record a failed attempt: back to `pending` at `next_attempt_at`, or `dead`
        (one self-committing statement on PostgreSQL)."""
        engine = self._claim_engine if self._finish_statements.combined is not None else None
        with wrap("recording a failed compensation", self.engine):
            with (engine or self._sweep_engine).begin() as conn:
                self._finish(
                    conn,
                    task,
                    now,
                    status="dead" if dead else "pending",
                    error=error,
                    next_attempt_at=next_attempt_at,
                )

    def _finish(
        self,
        conn: Connection,
        task: CompensationTask,
        now: datetime,
        *,
        status: str,
        error: str | None,
        next_attempt_at: datetime | None,
    ) -> int:
        """Record the attempt if the claim holds and return how many of the instance's
        compensations are open after it (counted only for a completion elsewhere)."""
        finish = self._finish_statements
        values = _attempt(task, now, status=status, error=error, retry_at=next_attempt_at)
        if finish.combined is not None:
            return _remaining(task, *conn.execute(finish.combined, values).one())
        if conn.execute(finish.update, values).rowcount != 1:
            raise lost_claim(task)
        conn.execute(
            finish.attempt,
            {
                "compensation_id": task.id,
                "attempt": task.attempts,
                "at": now,
                "succeeded": status == "done",
                "error": error,
            },
        )
        if status != "done":
            return 0
        remaining = conn.execute(
            finish.remaining, {"type_": task.entity_type, "key_": task.key}
        ).scalar()
        return int(remaining or 0)


def _remaining(task: CompensationTask, recorded: int, open_before: int) -> int:
    """The instance's open compensations after a one-statement attempt at `task` that
    wrote `recorded` attempt rows and counted `open_before` open tasks in its snapshot
    (which still showed `task` open).

    Raises:
        ConcurrentTransitionError: nothing was recorded: the claim was lost.
    """
    if recorded != 1:
        raise lost_claim(task)
    return int(open_before) - 1


def _attempt(
    task: CompensationTask,
    now: datetime,
    *,
    status: str,
    error: str | None,
    retry_at: datetime | None,
) -> dict[str, Any]:
    """The parameters of the statements that record an attempt at `task` (`Finish`,
    and `locked_completion` but for the row's key and version)."""
    return {
        "id_": task.id,
        "held_token": task.claim_token,
        "new_status": status,
        "error": error,
        "now": now,
        "retry_at": retry_at,
        "attempt": task.attempts,
        "succeeded": status == "done",
        "type_": task.entity_type,
        "key_": task.key,
    }
