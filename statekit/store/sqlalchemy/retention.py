"""Retention for `SQLAlchemyStore`'s compensation outbox: deleting settled rows.

`done` and `cancelled` rows (and their attempt rows) whose status last changed
before a moment go, a bounded batch per short transaction, so pruning a large outbox
never holds many locks for long. The batch is found by primary key and locked with
`FOR UPDATE SKIP LOCKED` where the server has it (a row a sweeper holds is left for
the next batch); the DELETEs test the status and time again, so a row reopened by a
new stuck mark since (a cancelled step scheduled again) is never deleted.
"""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import Engine, Integer, Select, bindparam, delete, func, select

from statekit.store.protocol import PRUNABLE
from statekit.store.sqlalchemy.connections import reading
from statekit.store.sqlalchemy.errors import wrap
from statekit.store.sqlalchemy.outbox import OutboxOperations
from statekit.store.sqlalchemy.tables import StatekitTables, UTCDateTime

__all__ = ["RetentionOperations"]


class RetentionOperations(OutboxOperations):
    """Mixed into `SQLAlchemyStore` (through `SweepOperations`): `OutboxRetention`."""

    engine: Engine
    tables: StatekitTables

    def _settled(self, before: Any) -> Any:
        c = self.tables.compensations.c
        return (c.status.in_(PRUNABLE), c.updated_at < before)

    @cached_property
    def _prune_ids(self) -> Select[Any]:
        """The ids of one batch, oldest first (by primary key: no other index needed)."""
        c = self.tables.compensations.c
        before = bindparam("before", type_=UTCDateTime())
        query = (
            select(c.id)
            .where(*self._settled(before))
            .order_by(c.id)
            .limit(bindparam("limit", type_=Integer(), literal_execute=True))
        )
        if self.skip_locked:
            query = query.with_for_update(skip_locked=True)
        return query

    def prunable_compensations(self, before: datetime) -> int:
        """How many settled outbox rows (done, cancelled) last changed before `before`."""
        with reading(self.engine, "counting prunable compensations") as conn:
            found = conn.execute(select(func.count()).where(*self._settled(before))).scalar()
        return int(found or 0)

    def prune_compensations(self, before: datetime, limit: int) -> int:
        """Delete up to `limit` settled outbox rows last changed before `before`, with
        their attempt rows, in one transaction; returns how many rows were deleted."""
        c, a = self.tables.compensations, self.tables.attempts
        with wrap("pruning the compensation outbox", self.engine):
            with self._sweep_engine.begin() as conn:
                ids = list(
                    conn.execute(self._prune_ids, {"before": before, "limit": limit}).scalars()
                )
                if not ids:
                    return 0
                still = select(c.c.id).where(c.c.id.in_(ids), *self._settled(before))
                if self.engine.dialect.name in {"mysql", "mariadb"}:
                    # MySQL refuses a subquery on the table a DELETE deletes from; the
                    # attempts go by the ids read, the rows by their settled test.
                    kept = list(conn.execute(still).scalars())
                    conn.execute(delete(a).where(a.c.compensation_id.in_(kept)))
                else:
                    conn.execute(delete(a).where(a.c.compensation_id.in_(still)))
                result = conn.execute(delete(c).where(c.c.id.in_(ids), *self._settled(before)))
        return int(result.rowcount)
