"""`SQLAlchemyStore`'s reads (the `Reads` protocol, `statekit.store.protocol`) and its
SQL-only helpers: counts, stays, waiting instances, stored states, the check of
versions against history, the last transition and a select by state.

Every read runs in `reading`, so a database that cannot be reached is one `StoreError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    FromClause,
    Select,
    String,
    and_,
    cast,
    func,
    or_,
    select,
)

from statekit.engine import Machine
from statekit.errors import StoreError
from statekit.records import MARKS_IN_PLACE, TransitionRecord
from statekit.store.protocol import Attempt, Disagreement, Stay, StoredState, Waiting
from statekit.store.sqlalchemy.binding import EntityBinding
from statekit.store.sqlalchemy.history import record_of as _record
from statekit.store.sqlalchemy.tables import StatekitTables

__all__ = ["ReadOperations", "disagreements"]


class ReadOperations:
    """Mixed into `SQLAlchemyStore`: the reads beyond the `Store` protocol."""

    tables: StatekitTables
    _history_columns: list[Column[Any]]

    def _binding(self, entity_type: str) -> EntityBinding:  # provided by SQLAlchemyStore
        raise NotImplementedError

    def _all_bindings(self) -> Sequence[EntityBinding]:  # provided by SQLAlchemyStore
        raise NotImplementedError

    def _reading(self, what: str = "reading from the store") -> AbstractContextManager[Connection]:
        raise NotImplementedError  # provided by SQLAlchemyStore

    def machines(self) -> Mapping[str, Machine]:
        """Every registered machine, by name, in the order they were registered."""
        return {b.machine.name: b.machine for b in self._all_bindings()}

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

    def stays(self, entity_type: str, since: datetime, until: datetime) -> list[Stay]:
        """Stays that ended in the window (see `Reads.stays`): one self-join of the
        history, each leaving row with the latest earlier row that moved the instance."""
        t = self.tables.transitions
        leave, enter, earlier = t.alias("leave"), t.alias("enter"), t.alias("earlier")
        entered = (
            select(func.max(earlier.c.seq))
            .where(
                earlier.c.entity_type == leave.c.entity_type,
                earlier.c.entity_key == leave.c.entity_key,
                earlier.c.seq < leave.c.seq,
                _moved(earlier),
            )
            .scalar_subquery()
        )
        query = (
            select(leave.c.source, enter.c.at, leave.c.at)
            .select_from(
                leave.join(
                    enter,
                    and_(
                        enter.c.entity_type == leave.c.entity_type,
                        enter.c.entity_key == leave.c.entity_key,
                        enter.c.seq == entered,
                    ),
                )
            )
            .where(
                leave.c.entity_type == entity_type,
                leave.c.at >= since,
                leave.c.at <= until,
                _moved(leave),
            )
        )
        with self._reading(f"reading {entity_type} stays") as conn:
            return [
                Stay(state, entered_at, left_at)
                for state, entered_at, left_at in conn.execute(query)
            ]

    def waiting(self, entity_type: str, now: datetime) -> list[Waiting]:
        """Instances in a non-final state that entered it at or before `now`."""
        binding = self._binding(entity_type)
        finals = sorted(s.name for s in binding.machine.spec.states if s.final)
        state, entered = binding.columns["state"], binding.columns["entered_at"]
        query = select(state, entered).where(
            state.not_in(finals), entered.is_not(None), entered <= now
        )
        with self._reading(f"reading {entity_type} stays") as conn:
            return [Waiting(s, at) for s, at in conn.execute(query)]

    def stored_states(self, entity_type: str) -> list[StoredState]:
        """Instance counts per stored state and definition version."""
        binding = self._binding(entity_type)
        state, version = binding.columns["state"], binding.columns["definition_version"]
        query = select(state, version, func.count()).group_by(state, version)
        with self._reading(f"reading the stored states of {entity_type}") as conn:
            return [StoredState(s, v, n) for s, v, n in conn.execute(query)]

    def disagreements(self, entity_type: str) -> list[Disagreement]:
        """Rows of `entity_type` whose version disagrees with their history (what
        `statekit check --db` reports)."""
        binding = self._binding(entity_type)
        with self._reading(f"checking {entity_type} against its history") as conn:
            return disagreements(conn, binding, self.tables)

    def attempts(self, task_id: int) -> list[Attempt]:
        """Every attempt at one compensation, first first."""
        a = self.tables.attempts
        query = (
            select(a.c.attempt, a.c.at, a.c.succeeded, a.c.error)
            .where(a.c.compensation_id == task_id)
            .order_by(a.c.attempt)
        )
        with self._reading(f"listing attempts of compensation {task_id}") as conn:
            return [Attempt(r[0], r[1], bool(r[2]), r[3]) for r in conn.execute(query).all()]


def _moved(row: FromClause) -> ColumnElement[bool]:
    """A row that moved the instance: a mark in place (a stuck mark) neither ends
    nor starts a stay."""
    return or_(row.c.event.not_in(MARKS_IN_PLACE), row.c.source != row.c.target)


def disagreements(
    conn: Connection, binding: EntityBinding, tables: StatekitTables
) -> list[Disagreement]:
    """Rows of `binding`'s table whose `state_version` disagrees with their live
    history: a version other than the number of history rows, or than the last seq."""
    history = tables.transitions
    per_key = (
        select(
            history.c.entity_key,
            func.count().label("transitions"),
            func.max(history.c.seq).label("last_seq"),
        )
        .where(history.c.entity_type == binding.machine.name)
        .group_by(history.c.entity_key)
        .subquery("per_key")
    )
    version = binding.columns["version"]
    counted = func.coalesce(per_key.c.transitions, 0)
    query = (
        select(binding.key, version, counted, per_key.c.last_seq)
        .select_from(
            binding.table.outerjoin(per_key, per_key.c.entity_key == cast(binding.key, String()))
        )
        .where(or_(version != counted, version != func.coalesce(per_key.c.last_seq, 0)))
        .order_by(binding.key)
    )
    return [Disagreement(str(k), v, n, last) for k, v, n, last in conn.execute(query)]
