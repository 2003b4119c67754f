"""`DjangoStore`'s units for the sweeper: overdue batches, the levers' session units
and the drain's handler units, plus the database's clock.

Every unit is a `transaction.atomic()` block on the store's database. Entities handed
out by a unit are written back (their changed fields, never the state fields, which
only `apply` writes) when it commits, so what actions and handlers do to them commits
with the unit or not at all.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import connections, models, transaction
from django.db.transaction import Atomic

from statekit.clock import Clock, ServerClock, SystemClock
from statekit.compensation import CompensationTask
from statekit.contrib.django.mixin import mark_state_synced, mark_synced
from statekit.contrib.django.models import Transition
from statekit.contrib.django.signals import post_transition, pre_transition
from statekit.contrib.django.store.binding import ModelBinding
from statekit.contrib.django.store.outbox import schedule
from statekit.contrib.django.store.units import (
    database_errors,
    open_unit,
    write_back,
)
from statekit.entity import restore_attributes, save_attributes
from statekit.errors import ConcurrentTransitionError, InstanceNotFoundError
from statekit.records import HISTORY_FIELDS, Plan, Snapshot, TransitionRecord

__all__ = ["DatabaseClock", "DjangoBatch", "DjangoHandlerUnit", "SweepOperations"]

NOTE_LIMIT = 4000
"""Longest stuck reason a set-aside instance keeps (as the SQL store's)."""


class SweepOperations:
    """Mixed into `DjangoStore`: what the `Sweeper` needs besides the outbox."""

    db: str

    if TYPE_CHECKING:

        def binding(self, entity_type: str) -> ModelBinding: ...  # StoreCore's

        def history(
            self, entity_type: str, key: str, *, idempotency_key: str | None = None
        ) -> list[TransitionRecord]: ...

        def _in_unit(self, entity: object, what: str) -> tuple[str, str]: ...

        @property
        def skip_locked(self) -> bool: ...

    @contextmanager
    def overdue_batch(self, entity_type: str, now: datetime, limit: int) -> Iterator[DjangoBatch]:
        """Claim up to `limit` instances whose deadline is at or before `now`,
        earliest first, in one atomic block that commits on a clean exit (see
        `SweepStore.overdue_batch`); `SKIP LOCKED` where the database has it."""
        binding = self.binding(entity_type)
        deadline = binding.names[3]
        query = binding.rows(self.db).filter(**{f"{deadline}__lte": now}).order_by(deadline, "pk")
        if self.skip_locked:
            query = query.select_for_update(skip_locked=True)
        with database_errors(f"sweeping {entity_type}"), transaction.atomic(using=self.db):
            rows = query.values_list(*binding.snapshot_fields())[:limit]
            batch = DjangoBatch(self.db, binding, [binding.snapshot(row) for row in rows])
            with batch.units:
                try:
                    yield batch
                except BaseException:
                    batch.put_back()
                    raise
                batch.write_back()

    @contextmanager
    def session_unit(self, entity_type: str, key: str) -> Iterator[Any]:
        """The entity in a unit of its own (the levers `compensate`, `retry`,
        `resolve` work through it): `transaction(entity_type, key)`."""
        with self.transaction(entity_type, key) as entity:  # type: ignore[attr-defined]
            yield entity

    @contextmanager
    def handler_unit(
        self, entity_type: str, key: str, task: CompensationTask | None = None
    ) -> Iterator[DjangoHandlerUnit]:
        """The entity of one compensation, for its handler (see `DjangoHandlerUnit`)."""
        unit = DjangoHandlerUnit(self.db, self.binding(entity_type), key)
        try:
            with database_errors(f"compensating {entity_type} {key}"):
                unit.relock()
                yield unit
                if not unit.abandoned:
                    unit.commit()
        finally:
            if not unit.abandoned:
                unit.close()

    def steps(self, entity: object) -> list[TransitionRecord]:
        """The entity's history, oldest first, read in its unit."""
        name, key = self._in_unit(entity, "steps are read")
        return list(self.history(name, key))

    def database_clock(self) -> Clock:
        """The clock sweepers read by default: the database server's time on
        PostgreSQL and MySQL/MariaDB (see `DatabaseClock`), the system clock on SQLite."""
        if connections[self.db].vendor not in _CLOCK_QUERIES:
            return SystemClock()
        clock: DatabaseClock | None = self.__dict__.get("_database_clock")
        if clock is None:
            clock = self.__dict__["_database_clock"] = DatabaseClock(self.db)
        return clock


class DjangoBatch:
    """Overdue instances claimed by one sweeper transaction (see `OverdueBatch`)."""

    def __init__(self, db: str, binding: ModelBinding, snapshots: list[Snapshot]) -> None:
        self._db = db
        self._binding = binding
        self.snapshots = snapshots
        self.units = ExitStack()
        # key -> (entity, its attributes when loaded)
        self._loaded: dict[str, tuple[models.Model, dict[str, object]]] = {}
        self._forgotten: set[str] = set()

    def entity(self, key: str) -> Any:
        """The entity of a claimed instance, loaded in the batch's transaction."""
        if key in self._loaded and key not in self._forgotten:
            return self._loaded[key][0]
        binding = self._binding
        found = list(binding.rows(self._db).filter(pk=binding.coerce_key(key)))
        if not found:  # the row is locked by this transaction
            raise InstanceNotFoundError(entity_type=binding.machine.name, key=key)
        entity = found[0]
        mark_synced(entity)
        self.units.enter_context(open_unit(entity, self._db))
        self._loaded[key] = (entity, save_attributes(entity, binding.machine.fields))
        self._forgotten.discard(key)
        return entity

    def forget(self, entity: object) -> None:
        """Put an entity whose fire failed back as loaded; the commit does not write it."""
        for key, (loaded, attributes) in self._loaded.items():
            if loaded is entity:
                restore_attributes(loaded, attributes)
                self._forgotten.add(key)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A savepoint: its writes (and what it did to loaded entities) roll back
        alone when it raises."""
        saved = {
            key: save_attributes(entity, self._binding.machine.fields)
            for key, (entity, _) in self._loaded.items()
        }
        try:
            with transaction.atomic(using=self._db):
                yield
        except BaseException:
            for key, (entity, attributes) in self._loaded.items():
                restore_attributes(entity, saved.get(key, attributes))
            raise

    def set_aside(self, snapshot: Snapshot, note: str, since: datetime, until: datetime) -> bool:
        """Mark a claimed instance to be tried again at `until` without moving it;
        False when it is no longer at the claimed version."""
        binding = self._binding
        names = binding.names
        rows = binding.rows(self._db).filter(
            pk=binding.coerce_key(snapshot.key), **{names[1]: snapshot.version}
        )
        values = {names[4]: since, names[5]: note[:NOTE_LIMIT], names[3]: until}
        if rows.update(**values) != 1:
            return False
        self._sync(snapshot.key, values)
        self._forgotten.add(snapshot.key)
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
        if not plans:
            return [], 0
        binding, db = self._binding, self._db
        records = []
        sender = binding.model
        for plan in plans:
            key = plan.key or ""
            record = plan.record()
            loaded = self._loaded.get(key)
            entity = None if loaded is None else loaded[0]
            if pre_transition.receivers:  # as `DjangoStore.apply` sends it, for every write
                pre_transition.send(sender, instance=entity, record=record)
            rows = binding.rows(db).filter(
                pk=binding.coerce_key(key), **{binding.names[1]: plan.expected_version}
            )
            values = binding.new_values(plan)
            if rows.update(**values) != 1:
                raise ConcurrentTransitionError(
                    entity_type=plan.entity_type,
                    key=key,
                    event=plan.event,
                    expected_version=plan.expected_version,
                    actual_version=None,
                )
            records.append(record)
            self._sync(key, values)
            if post_transition.receivers:
                sent = functools.partial(
                    post_transition.send, sender, instance=entity, record=record
                )
                transaction.on_commit(sent, using=db)
        Transition.objects.using(db).bulk_create(
            [
                Transition(
                    entity_type=r.entity_type,
                    entity_key=r.key,
                    **{name: getattr(r, name) for name in HISTORY_FIELDS},
                )
                for r in records
            ]
        )
        keys = [r.key for r in records]
        steps = (
            Transition.objects.using(db)
            .filter(entity_type=binding.machine.name, entity_key__in=keys)
            .values_list("entity_key", "seq", "source", "event", "target")
        )
        tasks = [
            CompensationTask(binding.machine.name, key, seq, action, event, attempts)
            for key, seq, source, event, target in steps
            for (action, attempts), declared in compensated_steps.items()
            if (source, event, target) in declared
        ]
        return records, schedule(db, tasks, now)

    def _sync(self, key: str, values: Mapping[str, Any]) -> None:
        """Bring a loaded entity in line with what its row now holds."""
        loaded = self._loaded.get(key)
        if loaded is None:
            return
        entity = loaded[0]
        for name, value in values.items():
            setattr(entity, name, value)
        mark_state_synced(entity)

    def write_back(self) -> None:
        """Save what was done to the loaded entities (the batch commits next)."""
        for key, (entity, _) in self._loaded.items():
            if key not in self._forgotten:
                write_back(entity, self._db)

    def put_back(self) -> None:
        """The batch rolls back: every loaded entity as it was loaded."""
        for entity, attributes in self._loaded.values():
            restore_attributes(entity, attributes)


class DjangoHandlerUnit:
    """One compensation's entity for the drain (see `HandlerUnit`): an atomic block
    is open only while statekit checks (`relock`) and completes, never while the
    handler runs. What the handler does to the entity object is written with the
    completion; `discard` (or a failure) puts the object back as it was released."""

    def __init__(self, db: str, binding: ModelBinding, key: str) -> None:
        self._db = db
        self._binding = binding
        self._key = key
        self._atomic: Atomic | None = None
        self._thread = threading.get_ident()
        self._units = ExitStack()
        self._released: dict[str, object] | None = None
        self.entity: Any = None
        self.abandoned = False

    def _begin(self) -> None:
        atomic = transaction.atomic(using=self._db)
        atomic.__enter__()
        self._atomic = atomic

    def _end(self, *, commit: bool) -> None:
        atomic, self._atomic = self._atomic, None
        if atomic is None:
            return
        if not commit:
            transaction.set_rollback(True, using=self._db)
        atomic.__exit__(None, None, None)

    def relock(self) -> Snapshot:
        """Open the completion transaction (if none is open), lock the row and return
        what it holds; the entity's state fields are set to it."""
        if self._atomic is None:
            self._begin()
        binding = self._binding
        rows = binding.rows(self._db).select_for_update().filter(pk=binding.coerce_key(self._key))
        if self.entity is None:
            found = list(rows)
            if not found:
                raise InstanceNotFoundError(entity_type=binding.machine.name, key=self._key)
            self.entity = found[0]
            mark_synced(self.entity)
            self._units.enter_context(open_unit(self.entity, self._db))
            return binding.snapshot(
                [self.entity.pk, *(getattr(self.entity, n) for n in binding.names)]
            )
        values = list(rows.values_list(*binding.snapshot_fields()))
        if not values:
            raise InstanceNotFoundError(entity_type=binding.machine.name, key=self._key)
        for name, value in zip(binding.names, values[0][1:], strict=True):
            setattr(self.entity, name, value)
        mark_state_synced(self.entity)  # what the handler did is still to be written
        return binding.snapshot(values[0])

    def release(self) -> None:
        """Commit the read transaction: from here until `relock` no lock is held."""
        self._end(commit=True)
        self._released = save_attributes(self.entity, self._binding.machine.fields)

    def discard(self) -> None:
        """Roll back what is open and put the entity back as it was released."""
        self._end(commit=False)
        if self._released is not None:
            restore_attributes(self.entity, self._released)

    def abandon(self) -> None:
        """The handler outlived its timeout: its thread closes the unit when it returns."""
        self.abandoned = True

    def commit(self) -> None:
        """Write the handler's changes to the entity and commit (the drain's clean exit)."""
        if self._atomic is not None:
            write_back(self.entity, self._db)
        self._end(commit=True)

    def close(self) -> None:
        """Roll back whatever is open (in the thread that opened it) and undo the
        handler's changes to the entity."""
        if threading.get_ident() == self._thread:
            self._end(commit=False)
            self._units.close()
        if self._released is not None and self.entity is not None:
            restore_attributes(self.entity, self._released)


_CLOCK_QUERIES = {
    "postgresql": "SELECT clock_timestamp()",
    "mysql": "SELECT UTC_TIMESTAMP(6)",
}


class DatabaseClock(ServerClock):
    """A `ServerClock` that reads the time of the server behind the Django database
    alias `db` (PostgreSQL, MySQL/MariaDB), once per `resync` interval."""

    def __init__(self, db: str, *, resync: timedelta = timedelta(seconds=30)) -> None:
        super().__init__(resync=resync)
        self._db = db
        self._query = _CLOCK_QUERIES[connections[db].vendor]

    def read_server_time(self) -> datetime:
        """The server's current time, read on the alias's connection."""
        with database_errors("reading the database's clock"):
            with connections[self._db].cursor() as cursor:
                cursor.execute(self._query)
                value: datetime = cursor.fetchone()[0]
        return value
