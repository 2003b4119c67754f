"""What `MemoryStore`'s sweeper units hand out: a batch of claimed overdue instances
and the drain's handler unit, both working inside a `MemoryUnits` unit (see
memory_units.py for how units hold the store's lock and roll back)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from statekit.compensation import CompensationTask
from statekit.entity import save_attributes
from statekit.errors import ConcurrentTransitionError, InstanceNotFoundError
from statekit.records import Plan, Snapshot, TransitionRecord

if TYPE_CHECKING:
    from statekit.store.memory_units import Ident, Journal, MemoryUnits

__all__ = ["MemoryBatch", "MemoryHandlerUnit"]

_NOTE_LIMIT = 4000
"""Longest stuck reason a set-aside instance keeps (as the SQL store's column)."""


class MemoryBatch:
    """Overdue instances claimed by one `MemoryStore` unit (see `OverdueBatch`)."""

    def __init__(
        self, store: MemoryUnits, journal: Journal, entity_type: str, snapshots: list[Snapshot]
    ) -> None:
        self._store = store
        self._journal = journal
        self._entity_type = entity_type
        self.snapshots = snapshots

    def entity(self, key: str) -> Any:
        """The stored entity object of a claimed instance, read into the batch."""
        return self._store._load(self._journal, self._entity_type, key)

    def forget(self, entity: object) -> None:
        """Put an entity whose fire failed back as the batch found it."""
        for loaded, ident, attributes in self._journal.entities:
            if loaded is entity:
                self._store._put_back([(loaded, ident, attributes)])

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A block whose writes (and entity changes) roll back alone when it raises."""
        store, journal = self._store, self._journal
        saved = store._save()
        loaded = [
            (entity, ident, save_attributes(entity, store._fields(ident[0])))
            for entity, ident, _ in journal.entities
        ]
        first_new, held = len(journal.entities), len(journal.held)
        try:
            yield
        except BaseException:
            store._restore(saved)
            store._put_back([*loaded, *journal.entities[first_new:]])
            del journal.held[held:]
            raise

    def set_aside(self, snapshot: Snapshot, note: str, since: datetime, until: datetime) -> bool:
        """Mark a claimed instance to be tried again at `until` without moving it;
        False when it is no longer at the claimed version."""
        store, ident = self._store, (snapshot.entity_type, snapshot.key)
        current = store._snapshots.get(ident)
        if current is None or current.version != snapshot.version:
            return False
        store._snapshots[ident] = replace(
            current, stuck_at=since, stuck_reason=note[:_NOTE_LIMIT], deadline_at=until
        )
        self._refresh(ident)
        return True

    def mark(
        self,
        plans: Sequence[Plan],
        compensated_steps: Mapping[tuple[str, int], Sequence[tuple[str, str, str]]],
        now: datetime,
    ) -> tuple[list[TransitionRecord], int]:
        """Apply the system plans of claimed instances and schedule the compensations
        of every step in their histories that declares one; returns the records and
        how many compensations were scheduled.

        Raises:
            ConcurrentTransitionError: an instance is no longer at its plan's version.
        """
        store = self._store
        records = []
        for plan in plans:
            ident = (plan.entity_type, plan.key or "")
            current = store._snapshots.get(ident)
            if current is None or current.version != plan.expected_version:
                raise ConcurrentTransitionError(
                    entity_type=plan.entity_type,
                    key=ident[1],
                    event=plan.event,
                    expected_version=plan.expected_version,
                    actual_version=None if current is None else current.version,
                )
            record = plan.record()
            store._snapshots[ident] = plan.snapshot()
            store._history.setdefault(ident, []).append(record)
            records.append(record)
            self._refresh(ident)
        scheduled = 0
        for (action, attempts), steps in compensated_steps.items():
            for record in records:
                ident = (record.entity_type, record.key)
                for step in store._history.get(ident, ()):
                    if (step.source, step.event, step.target) in steps:
                        task = CompensationTask(
                            record.entity_type, record.key, step.seq, action, step.event, attempts
                        )
                        scheduled += store._schedule(task, now)
        return records, scheduled

    def _refresh(self, ident: Ident) -> None:
        """Bring a loaded entity object (and the stored one) in line with its row."""
        entity = self._store._entities.get(ident)
        if entity is not None:
            self._store._sync(entity, ident)


class MemoryHandlerUnit:
    """One compensation's entity for the drain (see `HandlerUnit`): a unit is open
    only while statekit checks (`relock`) and completes, never while the handler
    runs. What the handler does to the entity object commits with the completion;
    `discard` (or a failure) puts the object back as it was when released."""

    def __init__(self, store: MemoryUnits, entity_type: str, key: str) -> None:
        self._store = store
        self._ident = (entity_type, key)
        self._journal: Journal | None = None
        self._released: dict[str, object] | None = None
        self.entity: Any = None
        self.abandoned = False

    def release(self) -> None:
        """Commit the read unit: from here until `relock` no lock is held."""
        journal, self._journal = self._journal, None
        if journal is not None:
            self._store._commit_unit(journal)
        self._released = save_attributes(self.entity, self._store._fields(self._ident[0]))

    def relock(self) -> Snapshot:
        """Open the completion unit (if none is open) and return what the store holds."""
        store = self._store
        if self._journal is None:
            self._journal = store._open_unit()
            try:
                if self.entity is None:
                    self.entity = store._load(self._journal, *self._ident)
                else:
                    attributes = self._released or save_attributes(
                        self.entity, store._fields(self._ident[0])
                    )
                    self._journal.entities.append((self.entity, self._ident, attributes))
            except BaseException:
                self.close()
                raise
        snapshot = store._snapshots.get(self._ident)
        if snapshot is None:
            raise InstanceNotFoundError(entity_type=self._ident[0], key=self._ident[1])
        store._sync(self.entity, self._ident)
        return replace(snapshot)

    def discard(self) -> None:
        """Roll back everything the handler (and the completion unit) wrote."""
        journal, self._journal = self._journal, None
        if journal is not None:
            self._store._roll_back_unit(journal)
        elif self._released is not None:
            self._put_back()

    def abandon(self) -> None:
        """The handler outlived its timeout: its thread closes the unit when it returns."""
        self.abandoned = True

    def close(self) -> None:
        """Roll back whatever is open and undo the handler's changes to the entity."""
        journal, self._journal = self._journal, None
        if journal is not None:
            self._store._roll_back_unit(journal)
        elif self._released is not None and self.entity is not None:
            self._put_back()

    def commit(self) -> None:
        """Commit the open unit (the drain's clean exit)."""
        journal, self._journal = self._journal, None
        if journal is not None:
            self._store._commit_unit(journal)

    def _put_back(self) -> None:
        assert self._released is not None
        with self._store._lock:
            self._store._put_back([(self.entity, self._ident, self._released)])
