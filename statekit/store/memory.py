"""`MemoryStore`: the reference store, a faithful in-process model of a database."""

from __future__ import annotations

import functools
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from statekit.clock import Clock, SystemClock
from statekit.engine import Machine
from statekit.entity import StateFields, StateWriter, restore_attributes, save_attributes
from statekit.errors import (
    CREATE_EVENT,
    ConcurrentTransitionError,
    InstanceNotFoundError,
    StoreError,
)
from statekit.records import MARKS_IN_PLACE, Plan, Snapshot, TransitionRecord
from statekit.store.memory_outbox import MemoryOutbox
from statekit.store.protocol import (
    AfterCommit,
    Disagreement,
    Stay,
    Store,
    StoredState,
    Unit,
    Waiting,
)

__all__ = ["MemoryStore", "MemoryUnit"]


class MemoryStore(MemoryOutbox, Store):
    """Keeps snapshots, history and idempotency keys in dictionaries, under a lock.

    It holds every other store to the same behaviour through the shared contract
    tests: compare-and-set on the version, history seqs 1..version, one record per
    idempotency key, after-commit callbacks only for writes that happened, and a
    key that a new instance reuses starts a clean life (the old one is retired).

    It implements every tier of `statekit.store.protocol`: `Store`, `SweepStore`
    (overdue batches, the compensation outbox and the drain's units, in
    `memory_units.py`, `memory_handles.py` and `memory_outbox.py`) and `Reads`, the
    reference for the SQL store. `machines`, `waiting` and the sweeper's units know
    the machines passed in or registered; `clock` is what `database_clock` returns
    (default: the system clock).
    """

    def __init__(self, machines: Iterable[Machine] = (), *, clock: Clock | None = None) -> None:
        self._machines: dict[str, Machine] = {}
        for machine in machines:
            self.register(machine)
        self._lock = threading.RLock()  # a sweeper unit holds it from claim to commit
        self._journal = None
        self.clock = clock or SystemClock()
        self._snapshots: dict[tuple[str, str], Snapshot] = {}
        self._history: dict[tuple[str, str], list[TransitionRecord]] = defaultdict(list)
        self._by_idempotency_key: dict[tuple[str, str, str], TransitionRecord] = {}
        self._retired: dict[tuple[str, str], list[TransitionRecord]] = defaultdict(list)
        self._entities: dict[tuple[str, str], object] = {}
        self._units: dict[tuple[str, str], list[MemoryUnit]] = {}  # open, by key
        self._key_locks: dict[tuple[str, str], threading.RLock] = {}
        self._tasks = {}
        self._task_ids = {}
        self._leases = {}
        self._attempts = {}
        self._changed_at = {}
        self._next_task_id = 0

    def register(self, machine: Machine) -> MemoryStore:
        """Make `machine` known to the reads (`machines`, `waiting`); returns the store."""
        self._machines[machine.name] = machine
        return self

    def load(self, entity_type: str, key: str) -> Snapshot:
        """Return the stored snapshot (see `Store.load`)."""
        try:
            return self._snapshots[entity_type, key]
        except KeyError:
            raise InstanceNotFoundError(entity_type=entity_type, key=key) from None

    def create(self, snapshot: Snapshot, *, entity: object | None = None) -> None:
        """Store a new instance (see `Store.create`)."""
        self.create_many([snapshot], [entity])

    def create_many(self, snapshots: Sequence[Snapshot], entities: Sequence[object | None]) -> None:
        """Store new instances, all or none (see `Store.create_many`)."""
        for snapshot in snapshots:
            if not snapshot.key:
                raise StoreError(f"cannot store a {snapshot.entity_type} without a key")
        with self._lock:
            seen: set[tuple[str, str]] = set()
            for snapshot in snapshots:
                ident = (snapshot.entity_type, snapshot.key)
                existing = self._snapshots.get(ident)
                if existing is not None or ident in seen:
                    raise ConcurrentTransitionError(
                        entity_type=snapshot.entity_type,
                        key=snapshot.key,
                        event=CREATE_EVENT,
                        expected_version=snapshot.version,
                        actual_version=existing.version if existing is not None else 0,
                    )
                seen.add(ident)
            for snapshot, entity in zip(snapshots, entities, strict=True):
                ident = (snapshot.entity_type, snapshot.key)
                self._retire(ident)  # what an earlier instance with this key left
                self._snapshots[ident] = snapshot
                if entity is not None:
                    self._entities[ident] = entity

    def delete(self, entity_type: str, key: str, *, keep_history: bool = False) -> None:
        """Delete the instance and its history; with `keep_history`, retire the
        history instead (see `retired_history`).

        Raises:
            InstanceNotFoundError: no instance has this key.
        """
        ident = (entity_type, key)
        with self._lock:
            if self._snapshots.pop(ident, None) is None:
                raise InstanceNotFoundError(entity_type=entity_type, key=key)
            self._entities.pop(ident, None)
            if keep_history:
                self._retire(ident)
            else:
                self._forget(ident)

    def retired_history(self, entity_type: str, key: str) -> Sequence[TransitionRecord]:
        """The transitions of the key's earlier lives, oldest life first."""
        with self._lock:
            return list(self._retired.get((entity_type, key), ()))

    def _retire(self, ident: tuple[str, str]) -> None:
        self._retired[ident].extend(self._forget(ident))

    def _forget(self, ident: tuple[str, str]) -> list[TransitionRecord]:
        """Drop the live history of `ident` and its idempotency keys; return it."""
        records = self._history.pop(ident, [])
        self._drop_tasks(ident)
        for record in records:
            if record.idempotency_key is not None:
                self._by_idempotency_key.pop((*ident, record.idempotency_key), None)
        return records

    def apply(
        self,
        plan: Plan,
        *,
        entity: object | None = None,
        unit: Unit | None = None,
        after_commit: AfterCommit | None = None,
    ) -> TransitionRecord:
        """Compare-and-set the version and append the history row (see `Store.apply`);
        in a `transaction` block's unit, undone if the block raises."""
        key = plan.key or ""
        ident = (plan.entity_type, key)
        if unit is None and entity is not None:  # a caller that did not ask `unit_of`
            unit = MemoryStore.unit_of(self, plan.entity_type, key, entity)
        if unit is not None and not isinstance(unit, MemoryUnit):
            raise StoreError(
                f"{plan.entity_type} {key}: {type(unit).__name__} is not a unit of this MemoryStore"
            )
        with self._lock:
            current = self._snapshots.get(ident)
            if current is None:
                raise InstanceNotFoundError(entity_type=plan.entity_type, key=key)
            duplicate = (
                plan.idempotency_key is not None
                and (plan.entity_type, key, plan.idempotency_key) in self._by_idempotency_key
            )
            stored = (current.version, current.state)
            if duplicate or stored != (plan.expected_version, plan.source):
                raise plan.lost_race(stored)
            record = plan.record()
            self._snapshots[ident] = plan.snapshot()
            self._history[ident].append(record)
            if plan.idempotency_key is not None:
                self._by_idempotency_key[plan.entity_type, key, plan.idempotency_key] = record
            if entity is not None:  # the object that matches the stored state now
                self._entities[ident] = entity
            if after_commit is not None and self._held(functools.partial(after_commit, record)):
                after_commit = None  # a sweeper unit is open: it runs on its commit
        if unit is not None:
            unit.undo.append((ident, current, record))
            if after_commit is not None:
                unit.held.append(lambda: after_commit(record))
        elif after_commit is not None:
            after_commit(record)
        return record

    def history(
        self, entity_type: str, key: str, *, idempotency_key: str | None = None
    ) -> Sequence[TransitionRecord]:
        """Return the instance's transitions, oldest first (see `Store.history`)."""
        with self._lock:
            if idempotency_key is not None:
                found = self._by_idempotency_key.get((entity_type, key, idempotency_key))
                return [] if found is None else [found]
            return list(self._history.get((entity_type, key), ()))

    def find_overdue(self, entity_type: str, now: datetime, limit: int) -> Sequence[Snapshot]:
        """Return due, non-stuck instances, earliest deadline first."""
        with self._lock:
            return self._overdue(entity_type, now, limit, lambda s: s.stuck_at is None)

    def unit_of(self, entity_type: str, key: str, entity: object) -> MemoryUnit | None:
        """The `transaction` block this thread has open on `entity` (see `Store.unit_of`)."""
        with self._lock:
            units = self._units.get((entity_type, key))
            if not units:
                return None
            thread = threading.get_ident()
            for unit in reversed(units):
                if unit.entity is entity and unit.thread == thread:
                    return unit
        return None

    @contextmanager
    def transaction(self, entity_type: str, key: str) -> Iterator[Any]:
        """Yield the entity object last written for this key (see `Store.transaction`).

        Transitions fired on that object inside the block, in this thread, are undone
        if the block raises (snapshot, history row, idempotency key and the object
        itself), and their after-commit callbacks run only on a clean exit. Writes by
        other objects, or from other threads, are independent writers and commit at
        once, as in a database. Like a database's row lock, a block holds its key:
        another thread's block on the same key waits for it to end.
        """
        ident = (entity_type, key)
        with self._lock:
            lock = self._key_locks.setdefault(ident, threading.RLock())
        with lock:
            with self._lock:
                entity = self._entities.get(ident)
                if entity is None:
                    raise InstanceNotFoundError(entity_type=entity_type, key=key)
                unit = MemoryUnit(entity)
                self._units.setdefault(ident, []).append(unit)
            attributes = save_attributes(entity, StateFields())
            try:
                yield entity
            except BaseException:
                self._undo(unit)
                restore_attributes(entity, attributes)
                raise
            finally:
                with self._lock:
                    units = self._units[ident]
                    units.remove(unit)
                    if not units:
                        del self._units[ident]
        for callback in unit.held:
            callback()

    def _undo(self, unit: MemoryUnit) -> None:
        with self._lock:
            for ident, previous, record in reversed(unit.undo):
                current = self._snapshots.get(ident)
                if current is None or current.version != record.seq:
                    continue  # someone wrote after us; a database would have blocked them
                self._snapshots[ident] = previous
                history = self._history[ident]
                if history and history[-1] is record:
                    history.pop()
                if record.idempotency_key is not None:
                    self._by_idempotency_key.pop((*ident, record.idempotency_key), None)

    # -- Reads (statekit.store.protocol) ---------------------------------------------

    def machines(self) -> Mapping[str, Machine]:
        """The registered machines, by name."""
        return dict(self._machines)

    def _snapshots_of(self, entity_type: str) -> list[Snapshot]:
        with self._lock:
            return [s for (kind, _), s in self._snapshots.items() if kind == entity_type]

    def _histories_of(self, entity_type: str) -> list[list[TransitionRecord]]:
        with self._lock:
            return [list(h) for (kind, _), h in self._history.items() if kind == entity_type]

    def stuck(self, entity_type: str) -> list[Snapshot]:
        """The stuck instances, oldest mark first (see `Reads.stuck`)."""
        stuck = [s for s in self._snapshots_of(entity_type) if s.stuck_at is not None]
        return sorted(stuck, key=lambda s: (s.stuck_at, s.key))

    def count_by_state(self, entity_type: str, *, stuck_only: bool = False) -> dict[str, int]:
        """Instances per state now (see `Reads.count_by_state`)."""
        counts: dict[str, int] = defaultdict(int)
        for snapshot in self._snapshots_of(entity_type):
            if not stuck_only or snapshot.stuck_at is not None:
                counts[snapshot.state] += 1
        return dict(counts)

    def transition_counts(
        self, entity_type: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> dict[tuple[str, str, str], int]:
        """How often each `(source, event, target)` was taken in the window."""
        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        for history in self._histories_of(entity_type):
            for r in history:
                if (since is None or r.at >= since) and (until is None or r.at <= until):
                    counts[r.source, r.event, r.target] += 1
        return dict(counts)

    def stays(self, entity_type: str, since: datetime, until: datetime) -> list[Stay]:
        """The stays that ended in the window (see `Reads.stays`)."""
        stays = []
        for history in self._histories_of(entity_type):
            entered: TransitionRecord | None = None
            for r in history:
                if r.event in MARKS_IN_PLACE and r.source == r.target:
                    continue  # a mark in place neither ends nor starts a stay
                if entered is not None and since <= r.at <= until:
                    stays.append(Stay(r.source, entered.at, r.at))
                entered = r
        return stays

    def waiting(self, entity_type: str, now: datetime) -> list[Waiting]:
        """Instances in a non-final state entered at or before `now`.

        Raises:
            StoreError: the machine is not registered (its final states are unknown).
        """
        machine = self._machines.get(entity_type)
        if machine is None:
            raise StoreError(
                f"no machine {entity_type!r} registered with this MemoryStore "
                f"(registered: {', '.join(sorted(self._machines)) or 'none'})"
            )
        finals = {s.name for s in machine.spec.states if s.final}
        return [
            Waiting(s.state, s.entered_at)
            for s in self._snapshots_of(entity_type)
            if s.state not in finals and s.entered_at is not None and s.entered_at <= now
        ]

    def stored_states(self, entity_type: str) -> list[StoredState]:
        """Instance counts per stored state and definition version."""
        counts: dict[tuple[str, int | None], int] = defaultdict(int)
        for snapshot in self._snapshots_of(entity_type):
            counts[snapshot.state, snapshot.definition_version] += 1
        return [StoredState(state, version, n) for (state, version), n in counts.items()]

    def disagreements(self, entity_type: str) -> list[Disagreement]:
        """Instances whose version is not their history's length and last seq."""
        with self._lock:
            found = [
                Disagreement(key, s.version, len(h), h[-1].seq if h else None)
                for (kind, key), s in self._snapshots.items()
                if kind == entity_type
                for h in [self._history.get((kind, key), [])]
                if s.version != len(h) or s.version != (h[-1].seq if h else 0)
            ]
        return sorted(found, key=lambda d: d.key)


class MemoryUnit:
    """One `MemoryStore.transaction` block: its entity, the thread running it, the
    writes to undo if it raises, and the after-commit callbacks held until it ends."""

    __slots__ = ("entity", "held", "thread", "undo")

    def __init__(self, entity: object) -> None:
        self.entity = entity
        self.thread = threading.get_ident()
        self.held: list[Callable[[], None]] = []
        self.undo: list[tuple[tuple[str, str], Snapshot, TransitionRecord]] = []

    def state_writer(self) -> StateWriter | None:
        """None: the state attributes are plain attributes."""
        return None
