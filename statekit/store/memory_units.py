"""`MemoryStore`'s transactions for the sweeper: claims of overdue instances, the
drain's handler units and the levers' units, all or nothing.

The memory store models a database with one writer at a time (as SQLite is): a
unit holds the store's re-entrant lock from its first read to its commit, so the
writes made inside it (through `apply`, a batch or the outbox) are invisible to
other threads until it commits and vanish if it fails. A unit remembers what the
store held when it began and the attributes of every entity object it handed out;
rolling back puts both back. After-commit callbacks wait for the commit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from statekit.clock import Clock
from statekit.compensation import CompensationTask
from statekit.engine import Machine
from statekit.entity import STATE_KEYS, StateFields, restore_attributes, save_attributes
from statekit.errors import InstanceNotFoundError, StoreError
from statekit.records import Plan, Snapshot, TransitionRecord
from statekit.store.marks import StuckMarks
from statekit.store.memory_handles import MemoryBatch, MemoryHandlerUnit
from statekit.store.protocol import Attempt, CompensatedSteps

__all__ = ["Ident", "Journal", "MemoryBatch", "MemoryHandlerUnit", "MemoryUnits"]

Ident = tuple[str, str]
"""(entity type, key): one instance."""


@dataclass
class _Saved:
    """Everything a `MemoryStore` holds, copied one level down (the values are
    never changed in place, only replaced)."""

    tables: dict[str, dict[Any, Any]]
    lists: dict[str, dict[Any, list[Any]]]
    next_task_id: int


@dataclass
class Journal:
    """One open unit: what the store held when it began, the entity objects it
    handed out (with their attributes then) and the callbacks held for its commit."""

    saved: _Saved
    entities: list[tuple[object, Ident, dict[str, object]]] = field(default_factory=list)
    held: list[Callable[[], None]] = field(default_factory=list)

    def ident_of(self, entity: object) -> Ident | None:
        """The instance `entity` was loaded as in this unit, if it was."""
        for loaded, ident, _ in self.entities:
            if loaded is entity:
                return ident
        return None


_TABLES = (
    "_snapshots",
    "_by_idempotency_key",
    "_entities",
    "_tasks",
    "_task_ids",
    "_leases",
    "_changed_at",
)
_LISTS = ("_history", "_retired", "_attempts")


class MemoryUnits:
    """Mixed into `MemoryStore`: units of work, overdue batches and handler units."""

    _lock: threading.RLock
    _journal: Journal | None
    _machines: dict[str, Machine]
    _snapshots: dict[Ident, Snapshot]
    _history: dict[Ident, list[TransitionRecord]]
    _by_idempotency_key: dict[tuple[str, str, str], TransitionRecord]
    _entities: dict[Ident, object]
    _tasks: dict[int, CompensationTask]
    _task_ids: dict[tuple[str, str, int, str], int]
    _leases: dict[int, datetime]
    _attempts: dict[int, list[Attempt]]
    _changed_at: dict[int, datetime]  # when each task's status last changed
    _next_task_id: int
    clock: Clock

    # -- units -----------------------------------------------------------------------

    def _save(self) -> _Saved:
        return _Saved(
            {name: dict(getattr(self, name)) for name in _TABLES},
            {name: {k: list(v) for k, v in getattr(self, name).items()} for name in _LISTS},
            self._next_task_id,
        )

    def _restore(self, saved: _Saved) -> None:
        for name, values in saved.tables.items():
            table = getattr(self, name)
            table.clear()
            table.update(values)
        for name, lists in saved.lists.items():
            table = getattr(self, name)
            table.clear()
            table.update({k: list(v) for k, v in lists.items()})
        self._next_task_id = saved.next_task_id

    def _open_unit(self) -> Journal:
        """Take the write lock and open a unit (one per store at a time)."""
        self._lock.acquire()
        if self._journal is not None:
            self._lock.release()
            raise StoreError(
                "a MemoryStore unit of work is already open in this thread; "
                "units do not nest (finish the batch, handler or lever first)"
            )
        journal = self._journal = Journal(self._save())
        return journal

    def _commit_unit(self, journal: Journal) -> None:
        """Make the unit's writes final, release the lock, run the held callbacks."""
        self._journal = None
        self._lock.release()
        for callback in journal.held:
            callback()

    def _roll_back_unit(self, journal: Journal) -> None:
        """Undo the unit's writes and what was done to its entities; release the lock."""
        try:
            self._restore(journal.saved)
            self._put_back(journal.entities)
        finally:
            self._journal = None
            self._lock.release()

    def _put_back(self, entities: Sequence[tuple[object, Ident, dict[str, object]]]) -> None:
        """Restore entity objects as they were, then their state as stored now."""
        for entity, ident, attributes in reversed(entities):
            restore_attributes(entity, attributes)
            self._sync(entity, ident)

    @contextmanager
    def _work(self) -> Iterator[Journal]:
        """A unit of work: commit on a clean exit, roll back on an exception."""
        journal = self._open_unit()
        try:
            yield journal
        except BaseException:
            self._roll_back_unit(journal)
            raise
        self._commit_unit(journal)

    def _held(self, callback: Callable[[], None]) -> bool:
        """Hold `callback` for the open unit's commit (called under the lock by
        `apply`); False when no unit is open."""
        if self._journal is None:
            return False
        self._journal.held.append(callback)
        return True

    def _fields(self, entity_type: str) -> StateFields:
        machine = self._machines.get(entity_type)
        if machine is None:
            raise StoreError(
                f"no machine {entity_type!r} registered with this MemoryStore "
                f"(registered: {', '.join(sorted(self._machines)) or 'none'}); the sweeper "
                "needs it: MemoryStore([machine]) or store.register(machine)"
            )
        return machine.fields

    def _sync(self, entity: object, ident: Ident) -> None:
        """Set the entity's state attributes to what the store holds (as a database
        row read back would)."""
        snapshot = self._snapshots.get(ident)
        if snapshot is None:
            return
        names = self._fields(ident[0]).state_attributes()
        for name, key in zip(names, STATE_KEYS, strict=True):
            value = getattr(snapshot, key)
            if getattr(entity, name, None) != value:
                setattr(entity, name, value)

    def _load(self, journal: Journal, entity_type: str, key: str) -> object:
        """The entity object of an instance, read into the open unit."""
        ident = (entity_type, key)
        entity = self._entities.get(ident)
        if entity is None or ident not in self._snapshots:
            if ident not in self._snapshots:
                raise InstanceNotFoundError(entity_type=entity_type, key=key)
            raise StoreError(
                f"MemoryStore holds no object for {entity_type} {key}: it was created "
                "without one, so the sweeper cannot fire on it"
            )
        if journal.ident_of(entity) is None:
            self._sync(entity, ident)
            fields = self._fields(entity_type)
            journal.entities.append((entity, ident, save_attributes(entity, fields)))
        return entity

    def _in_unit(self, entity: object, what: str) -> Ident:
        """The instance `entity` was loaded as in the open unit (the lock is held)."""
        ident = None if self._journal is None else self._journal.ident_of(entity)
        if ident is None:
            raise StoreError(
                f"{what} in the entity's transaction: this {type(entity).__name__} was "
                "not loaded by an open MemoryStore unit (session_unit, handler_unit or "
                "an overdue batch)"
            )
        return ident

    # -- what the sweeper and the levers use ----------------------------------------

    @contextmanager
    def overdue_batch(self, entity_type: str, now: datetime, limit: int) -> Iterator[MemoryBatch]:
        """Claim up to `limit` instances whose deadline is at or before `now`,
        earliest first, in one unit that commits on a clean exit (see
        `SweepStore.overdue_batch`)."""
        self._fields(entity_type)
        with self._work() as journal:
            yield MemoryBatch(self, journal, entity_type, self._overdue(entity_type, now, limit))

    def _overdue(
        self,
        entity_type: str,
        now: datetime,
        limit: int,
        taken: Callable[[Snapshot], bool] = lambda s: True,
    ) -> list[Snapshot]:
        """Up to `limit` instances whose deadline is at or before `now` and that
        `taken` accepts, earliest deadline first (call it holding the lock)."""
        due = [
            s
            for (kind, _), s in self._snapshots.items()
            if kind == entity_type
            and s.deadline_at is not None
            and s.deadline_at <= now
            and taken(s)
        ]
        due.sort(key=lambda s: (s.deadline_at, s.key))
        return due[:limit]

    def mark_overdue_stuck(
        self,
        entity_type: str,
        plans: Mapping[str, Plan],
        accepted_versions: Collection[int],
        compensated_steps: CompensatedSteps,
        now: datetime,
        limit: int,
        keys: bool = True,
    ) -> StuckMarks | None:
        """Claim up to `limit` overdue instances the plans of `plans` take and mark
        them stuck in one unit (see `StuckMarking`): the reference, through
        `MemoryBatch.mark` with each state's plan at the instance's key and version."""
        self._fields(entity_type)
        marks = StuckMarks({state: plan.record() for state, plan in plans.items()})
        with self._work() as journal:
            claimed = self._overdue(
                entity_type,
                now,
                limit,
                lambda s: (
                    s.state in plans
                    and type(s.version) is int
                    and s.version >= 0
                    and (s.definition_version is None or s.definition_version in accepted_versions)
                ),
            )
            mine = [
                replace(
                    plans[s.state],
                    key=s.key,
                    expected_version=s.version,
                    entered_at=s.entered_at or plans[s.state].entered_at,
                )
                for s in claimed
            ]
            batch = MemoryBatch(self, journal, entity_type, claimed)
            records, marks.scheduled = batch.mark(mine, compensated_steps, now)
        marks.count = len(records)
        if keys:
            marks.marked = [(r.key, r.seq, r.source) for r in records]
        return marks

    @contextmanager
    def session_unit(self, entity_type: str, key: str) -> Iterator[Any]:
        """The entity in a unit of its own; the levers (`Sweeper.compensate`, `retry`,
        `resolve`) work through it."""
        with self._work() as journal:
            yield self._load(journal, entity_type, key)

    @contextmanager
    def handler_unit(
        self, entity_type: str, key: str, task: CompensationTask | None = None
    ) -> Iterator[MemoryHandlerUnit]:
        """The entity of one compensation, for its handler (see `MemoryHandlerUnit`)."""
        self._fields(entity_type)
        unit = MemoryHandlerUnit(self, entity_type, key)
        try:
            unit.relock()
            yield unit
        except BaseException:
            if not unit.abandoned:
                unit.close()
            raise
        if not unit.abandoned:
            unit.commit()

    def steps(self, entity: object) -> list[TransitionRecord]:
        """The entity's history, oldest first, read in its unit."""
        with self._lock:
            return list(self._history.get(self._in_unit(entity, "steps are read"), ()))

    def _schedule(self, task: CompensationTask, now: datetime) -> int:
        """Add one outbox task unless it exists (provided by `MemoryOutbox`)."""
        raise NotImplementedError

    def database_clock(self) -> Clock:
        """The store's clock (the `clock` it was given): what sweepers read by default."""
        return self.clock
