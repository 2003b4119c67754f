"""Read-only queries of `SQLAlchemyStore` beyond the `Store` protocol."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Connection, Select, func, select

from statekit.errors import StoreError
from statekit.records import TransitionRecord
from statekit.store.sqlalchemy.binding import EntityBinding
from statekit.store.sqlalchemy.history import record_of as _record
from statekit.store.sqlalchemy.tables import StatekitTables

__all__ = ["Queries"]


class Queries:
    """Mixed into `SQLAlchemyStore`: the last transition, selects by state, counts."""

    tables: StatekitTables
    _history_columns: list[Column[Any]]

    def _binding(self, entity_type: str) -> EntityBinding:  # provided by SQLAlchemyStore
        raise NotImplementedError

    def _reading(self) -> AbstractContextManager[Connection]:  # provided by SQLAlchemyStore
        raise NotImplementedError

    def last_transition(self, entity_type: str, key: str) -> TransitionRecord | None:
        """The instance's most recent transition, or None."""
        t = self.tables.transitions
        query = (
            select(*self._history_columns)
            .where(t.c.entity_type == entity_type, t.c.entity_key == key)
            .order_by(t.c.seq.desc())
            .limit(1)
        )
        with self._reading() as conn:
            row = conn.execute(query).first()
        return None if row is None else _record(entity_type, key, row)

    def in_states(self, entity_type: str, *states: str) -> Select[Any]:
        """A select of the entity class for instances in any of `states`."""
        binding = self._binding(entity_type)
        unknown = [s for s in states if s not in binding.machine.states]
        if unknown:
            raise StoreError(f"machine {entity_type!r} has no state {', '.join(unknown)}")
        return select(binding.entity_class).where(binding.columns["state"].in_(states))

    def count_by_state(self, entity_type: str, *, stuck_only: bool = False) -> dict[str, int]:
        """How many instances are in each state now (states with none are omitted);
        with `stuck_only`, count only the stuck ones."""
        binding = self._binding(entity_type)
        state = binding.columns["state"]
        query = select(state, func.count()).group_by(state)
        if stuck_only:
            query = query.where(binding.columns["stuck_at"].is_not(None))
        with self._reading() as conn:
            rows = conn.execute(query).all()
        return {row[0]: row[1] for row in rows}

    def transition_counts(
        self, entity_type: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> dict[tuple[str, str, str], int]:
        """How often each `(source, event, target)` was taken, optionally only from
        `since` and up to `until` (both included)."""
        t = self.tables.transitions
        query = (
            select(t.c.source, t.c.event, t.c.target, func.count())
            .where(t.c.entity_type == entity_type)
            .group_by(t.c.source, t.c.event, t.c.target)
        )
        if since is not None:
            query = query.where(t.c.at >= since)
        if until is not None:
            query = query.where(t.c.at <= until)
        with self._reading() as conn:
            rows = conn.execute(query).all()
        return {(row[0], row[1], row[2]): row[3] for row in rows}
