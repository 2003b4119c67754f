"""What a store provides, split by who needs it.

- `Store`: what the `Runner` needs to fire events (load, create, apply, history, a
  unit of work). Every member is declared; the optional ones have defaults here, so a
  store that subclasses `Store` implements only what it does differently.
- `SweepStore`: what the `Sweeper` needs on top (claims of overdue instances, the
  compensation outbox, the drain's units, the database's clock), with the objects it
  hands out: `OverdueBatch` and `HandlerUnit`.
- `OutboxRetention`: deleting settled outbox rows (`Sweeper(keep_done=...)`, `statekit
  prune`); a protocol of its own, so a store without it still is a `SweepStore`.
- `Reads`: what the CLI (and Flask views, the Django admin) read, with the records it
  returns (`Attempt`, `Disagreement`, `Stay`, `StoredState`, `Waiting`). `MemoryStore`
  implements it as the reference; `SQLAlchemyStore` in `store/sqlalchemy/reads.py`.

This module imports only the records, the compiled machine's type, the entity helpers
and the error tree: the runtime, the sweeper, the CLI and every store depend on it,
never the other way round.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from statekit.clock import Clock
from statekit.compensation import CompensationTask, TaskStatus
from statekit.engine import Machine
from statekit.entity import StateWriter
from statekit.errors import StoreError
from statekit.records import Plan, Snapshot, TransitionRecord

__all__ = [
    "COMPENSATIONS_DUE",
    "PRUNABLE",
    "AfterCommit",
    "Attempt",
    "ChainedClaims",
    "Disagreement",
    "HandlerUnit",
    "LockedCompletion",
    "OutboxRetention",
    "OverdueBatch",
    "Reads",
    "Relocked",
    "Stay",
    "Store",
    "StoredState",
    "SweepStore",
    "Unit",
    "Waiting",
    "relock_then_complete",
]

AfterCommit = Callable[[TransitionRecord], None]
"""Called with the written record once the write is durable; never on rollback."""

COMPENSATIONS_DUE = "@compensations"
"""What `SweepStore.due` reports when a compensation is due."""

CompensatedSteps = Mapping[tuple[str, int], Sequence[tuple[str, str, str]]]
"""`Machine.compensated_steps`: per (handler, attempts), the steps it undoes."""


class Unit(Protocol):
    """One open unit of work around one entity (`Store.transaction`, `Store.firing`,
    or the caller's own transaction the entity belongs to), as the store that made
    it knows it: where `apply` writes, whose commit runs the after-commit work, and
    what happens when a write fails halfway. The `Runner` asks `Store.unit_of` once
    per fire and passes the unit back to `recorded` and `apply`; only the store that
    made a unit looks inside it."""

    @property
    def entity(self) -> object:
        """The entity the unit loaded (or that belongs to it)."""
        ...

    def state_writer(self) -> StateWriter | None:
        """How the `Runner` sets the state attributes of the unit's entity (the
        cheapest way the store's objects allow; `apply` writes the same values).
        None: plain attribute assignment."""
        ...


@runtime_checkable
class Store(Protocol):
    """Where snapshots and history live; what the `Runner` needs.

    Implementations guarantee that `apply` is atomic (state, version and history row
    together or not at all) and compare-and-set on the version. A key names one
    instance's life: `create` under a key an earlier, deleted instance had starts
    clean (no history, no idempotency keys of the old one).

    `firing`, `unit_of`, `recorded` and `foreign_error` have defaults here; a store
    that subclasses `Store` overrides them only to do better.
    """

    def load(self, entity_type: str, key: str) -> Snapshot:
        """Return the stored snapshot.

        Raises:
            InstanceNotFoundError: no instance has this key.
        """
        ...

    def create(self, snapshot: Snapshot, *, entity: object | None = None) -> None:
        """Store a new instance at the snapshot's state and version (normally 0).

        Raises:
            ConcurrentTransitionError: an instance with this key already exists.
        """
        ...

    def create_many(self, snapshots: Sequence[Snapshot], entities: Sequence[object | None]) -> None:
        """Store many new instances (`Runner.start_many`), all or none. By default one
        `create` after the other, which is all or none only inside the caller's own
        transaction; a store overrides it to write them in one transaction."""
        for snapshot, entity in zip(snapshots, entities, strict=True):
            self.create(snapshot, entity=entity)

    def apply(
        self,
        plan: Plan,
        *,
        entity: object | None = None,
        unit: Unit | None = None,
        after_commit: AfterCommit | None = None,
    ) -> TransitionRecord:
        """Write the plan: new state and version plus one history row, atomically,
        only if the stored version still equals `plan.expected_version` and the
        stored state `plan.source`.

        In `unit` (what `unit_of` returned for `entity`; without it the store looks
        the entity's unit up itself) the write commits with the unit and
        `after_commit(record)` runs after that commit; with no unit the store
        commits the write before `after_commit` runs.

        Raises:
            ConcurrentTransitionError: the stored version moved on, or the
                idempotency key was recorded meanwhile.
            ProtectedStateError: the stored state is not `plan.source` at the
                expected version (the entity's state was changed outside a
                transition).
            InstanceNotFoundError: the instance does not exist.
        """
        ...

    def history(
        self, entity_type: str, key: str, *, idempotency_key: str | None = None
    ) -> Sequence[TransitionRecord]:
        """Return the instance's transitions, oldest first; with `idempotency_key`,
        only the one recorded under that key (or none)."""
        ...

    def find_overdue(self, entity_type: str, now: datetime, limit: int) -> Sequence[Snapshot]:
        """Return up to `limit` instances whose deadline is at or before `now` and
        that are not stuck, earliest deadline first."""
        ...

    def recorded(
        self,
        entity_type: str,
        key: str,
        idempotency_key: str,
        *,
        entity: object | None = None,
        unit: Unit | None = None,
    ) -> TransitionRecord | None:
        """The transition recorded under `idempotency_key`, or None, read where the
        writes of `entity`'s own transaction (`unit`) are visible (the `Runner` asks
        before it decides). By default, `history(..., idempotency_key=...)`."""
        found = self.history(entity_type, key, idempotency_key=idempotency_key)
        return found[0] if found else None

    def transaction(self, entity_type: str, key: str) -> AbstractContextManager[Any]:
        """Load the entity object for one unit of work: transitions fired on it inside
        the block commit together on a clean exit and roll back on an exception.

        Raises:
            InstanceNotFoundError: no instance has this key.
        """
        ...

    def firing(self, entity_type: str, key: str) -> AbstractContextManager[Any]:
        """Like `transaction`, for a block that fires exactly one event on the entity
        and does nothing else with it (`Runner.fire_by_key`); knowing that, a store
        may make the one `apply` its own atomic commit. By default, `transaction`."""
        return self.transaction(entity_type, key)

    def unit_of(self, entity_type: str, key: str, entity: object) -> Unit | None:
        """The open unit of work `entity` (an instance of `entity_type` under `key`)
        is in, for the calling thread, or None: then `apply` commits on its own. The
        `Runner` asks once per fire. By default None (no units)."""
        return None

    def foreign_error(
        self, error: BaseException, entity_type: str, entity: object, event: str
    ) -> StoreError | None:
        """The `StoreError` for an exception the store's database raised outside the
        store's own calls while `Runner.fire` worked on `entity` (an ORM attribute
        reloading from a database that is down, say); None lets it through as it is.
        By default None."""
        return None


class OverdueBatch(Protocol):
    """Overdue instances claimed by one sweeper transaction (`SweepStore.overdue_batch`)."""

    @property
    def snapshots(self) -> Sequence[Snapshot]:
        """The claimed instances, earliest deadline first."""
        ...

    def entity(self, key: str) -> Any:
        """The entity object of a claimed instance, in the batch's transaction."""
        ...

    def forget(self, entity: object) -> None:
        """Drop an entity whose fire failed, so the batch's commit does not write it."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A block whose writes roll back alone when it raises (per-instance isolation)."""
        ...

    def set_aside(self, snapshot: Snapshot, note: str, since: datetime, until: datetime) -> bool:
        """Mark an instance the sweeper could not handle, to be tried again at `until`;
        False when the row moved on meanwhile."""
        ...

    def mark(
        self, plans: Sequence[Plan], compensated_steps: CompensatedSteps, now: datetime
    ) -> tuple[list[TransitionRecord], int]:
        """Mark instances stuck (set-based) and schedule their compensations; returns
        the `@stuck` records and how many compensations were scheduled."""
        ...


class HandlerUnit(Protocol):
    """One compensation's entity, held by the store for the drain: a transaction is
    open only while statekit checks (`relock`) and completes, never around the handler."""

    entity: Any

    def release(self) -> None:
        """End the read transaction: from here until `relock` no lock is held."""
        ...

    def relock(self) -> Snapshot:
        """Begin the completion transaction, lock the row and return what it holds."""
        ...

    def discard(self) -> None:
        """Roll back everything the handler wrote."""
        ...

    def abandon(self) -> None:
        """The handler outlived its timeout: its thread owns the unit from now on."""
        ...

    def close(self) -> None:
        """Roll back whatever is open and release the connection."""
        ...


@runtime_checkable
class SweepStore(Store, Protocol):
    """What the `Sweeper` needs on top of `Store`: claims, the outbox and its units."""

    def overdue_batch(
        self, entity_type: str, now: datetime, limit: int
    ) -> AbstractContextManager[OverdueBatch]: ...

    def due(self, entity_types: Sequence[str], now: datetime) -> set[str]: ...

    def add_compensations(
        self, entity: object, tasks: Sequence[CompensationTask], now: datetime
    ) -> None: ...

    def claim_compensations(
        self, now: datetime, limit: int, lease: timedelta
    ) -> list[CompensationTask]: ...

    def complete_compensation(
        self, task: CompensationTask, entity: object, now: datetime
    ) -> int: ...

    def fail_compensation(
        self,
        task: CompensationTask,
        now: datetime,
        *,
        error: str,
        next_attempt_at: datetime,
        dead: bool,
    ) -> None: ...

    def claimed_step(self, task: CompensationTask, entity: object) -> TransitionRecord | None: ...

    def reopen_dead_compensations(
        self, entity: object, now: datetime, extra_attempts: int
    ) -> int: ...

    def cancel_compensations(
        self, entity: object, now: datetime, *, reason: str | None = None
    ) -> int: ...

    def handler_unit(
        self, entity_type: str, key: str, task: CompensationTask | None = None
    ) -> AbstractContextManager[HandlerUnit]:
        """The entity of `key` for a compensation handler (see `HandlerUnit`). The
        drain passes the claimed `task`, which a store may read with the entity
        (for `claimed_step`); the answers are the same either way."""
        ...

    def database_clock(self) -> Clock: ...

    def stuck(self, entity_type: str) -> list[Snapshot]: ...

    def compensations(
        self, entity_type: str | None = None, key: str | None = None, *, status: Sequence[str] = ()
    ) -> list[CompensationTask]: ...

    def session_unit(self, entity_type: str, key: str) -> AbstractContextManager[Any]: ...

    def steps(self, entity: object) -> list[TransitionRecord]: ...


@runtime_checkable
class ChainedClaims(Protocol):
    """Optional for a `SweepStore`: claiming in a compensation's completion
    transaction, so that a drain slot whose handler returned takes its next task
    without a transaction of its own. Without it every claim is its own."""

    def claim_compensations_in(
        self, entity: object, now: datetime, limit: int, lease: timedelta
    ) -> list[CompensationTask]:
        """`SweepStore.claim_compensations`, in the transaction of `entity` (a
        `HandlerUnit`'s, before it commits): the tasks are claimed if and only if
        that transaction commits."""
        ...


@dataclass(frozen=True)
class Relocked:
    """What `LockedCompletion.relock_and_complete` found and did."""

    snapshot: Snapshot
    """The entity's row, locked."""
    remaining: int | None
    """The instance's open compensations after the completion; None when the row had
    moved (nothing was completed, nothing claimed)."""
    claimed: list[CompensationTask] | None = None
    """Tasks claimed in the same transaction (as `ChainedClaims`); None when the store
    made no claim (the caller claims, if it wants one)."""


def relock_then_complete(unit: HandlerUnit, version: int, complete: Callable[[], int]) -> Relocked:
    """`LockedCompletion.relock_and_complete` in two steps, for a store without the
    one-statement form: `unit.relock()`, then `complete()` (the store's
    `complete_compensation`) if the row is still at `version` and stuck."""
    current = unit.relock()
    if current.version != version or current.stuck_at is None:
        return Relocked(current, None)
    return Relocked(current, complete())


@runtime_checkable
class LockedCompletion(Protocol):
    """Optional for a `SweepStore`: locking a compensation's entity again after its
    handler returned and completing the task in one step, where the database can do
    both in one statement. Without it the drain calls `HandlerUnit.relock` and then
    `SweepStore.complete_compensation`."""

    def relock_and_complete(
        self,
        unit: HandlerUnit,
        task: CompensationTask,
        version: int,
        now: datetime,
        claim: int = 0,
        lease: timedelta = timedelta(0),
    ) -> Relocked:
        """Begin `unit`'s completion transaction and lock its entity's row (as
        `HandlerUnit.relock`); if the row is still at `version` and still stuck,
        complete `task` in that transaction (as `complete_compensation`) and, where
        the store can in the same statement, claim up to `claim` more tasks with
        `lease` (claimed if and only if the transaction commits; such a claim may not
        see this completion, so it never takes an older step of the same instance).

        Raises:
            InstanceNotFoundError: the row is gone.
            ConcurrentTransitionError: the row had not moved, but the task's claim
                was lost; roll back.
        """
        ...


PRUNABLE: tuple[TaskStatus, ...] = ("done", "cancelled")
"""The outbox statuses retention deletes: settled rows; never pending, running or dead."""


@runtime_checkable
class OutboxRetention(Protocol):
    """Deleting settled outbox rows: `done` and `cancelled` compensations (with their
    attempt rows) last changed before a moment. Pending, running and dead rows are
    never deleted. The defaults refuse: a store that cannot prune says so."""

    def prunable_compensations(self, before: datetime) -> int:
        """How many outbox rows `prune_compensations` would delete, in all."""
        raise StoreError(_no_retention(self))

    def prune_compensations(self, before: datetime, limit: int) -> int:
        """Delete up to `limit` settled rows last changed before `before`, with their
        attempt rows, in one short transaction; return how many were deleted (fewer
        than `limit`: none are left)."""
        raise StoreError(_no_retention(self))


def _no_retention(store: object) -> str:
    return (
        f"{type(store).__name__} cannot prune its compensation outbox: it does not "
        "implement statekit.store.protocol.OutboxRetention (MemoryStore and "
        "SQLAlchemyStore do)"
    )


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt at a compensation."""

    attempt: int
    at: datetime
    succeeded: bool
    error: str | None


@dataclass(frozen=True, slots=True)
class Disagreement:
    """An entity row whose version is not the number (and last seq) of its history."""

    key: str
    version: int
    transitions: int
    last_seq: int | None


@dataclass(frozen=True, slots=True)
class Stay:
    """One stay of an instance in `state` that ended: entered at one transition, left
    at a later one (a mark in place, such as a stuck mark, neither ends nor starts it)."""

    state: str
    entered_at: datetime
    left_at: datetime

    @property
    def seconds(self) -> float:
        """How long the stay lasted."""
        return (self.left_at - self.entered_at).total_seconds()


@dataclass(frozen=True, slots=True)
class Waiting:
    """An instance in a non-final state, and since when it has been there."""

    state: str
    entered_at: datetime


@dataclass(frozen=True, slots=True)
class StoredState:
    """How many instances are stored in `state` under `definition_version`."""

    state: str
    definition_version: int | None
    count: int


@runtime_checkable
class Reads(Protocol):
    """What a store answers to the CLI, admin pages and views. Reads never write; an
    unknown machine name raises `StoreError` naming the known ones (where the store
    keeps per-machine tables)."""

    def machines(self) -> Mapping[str, Machine]:
        """The machines whose instances the store holds, by name."""
        ...

    def load(self, entity_type: str, key: str) -> Snapshot:
        """The stored snapshot (`InstanceNotFoundError` when there is none)."""
        ...

    def history(
        self, entity_type: str, key: str, *, idempotency_key: str | None = None
    ) -> Sequence[TransitionRecord]:
        """The instance's transitions, oldest first."""
        ...

    def stuck(self, entity_type: str) -> list[Snapshot]:
        """Snapshots of the stuck instances, oldest mark first."""
        ...

    def compensations(
        self,
        entity_type: str | None = None,
        key: str | None = None,
        *,
        status: Sequence[TaskStatus] = (),
    ) -> list[CompensationTask]:
        """Outbox rows, optionally of one machine, one instance and/or in `status`;
        by machine and key, newest step first."""
        ...

    def attempts(self, task_id: int) -> list[Attempt]:
        """Every attempt at one compensation, first first."""
        ...

    def count_by_state(self, entity_type: str, *, stuck_only: bool = False) -> dict[str, int]:
        """Instances per state now (states with none omitted); with `stuck_only`,
        only the stuck ones."""
        ...

    def transition_counts(
        self, entity_type: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> dict[tuple[str, str, str], int]:
        """How often each `(source, event, target)` was taken, optionally only from
        `since` and up to `until` (both included)."""
        ...

    def stays(self, entity_type: str, since: datetime, until: datetime) -> list[Stay]:
        """The stays that ended from `since` to `until` (both included). A stay starts
        at the transition that entered the state, so an instance's first stay in the
        initial state (starting writes no history) is not among them."""
        ...

    def waiting(self, entity_type: str, now: datetime) -> list[Waiting]:
        """Instances in a non-final state that entered it at or before `now`."""
        ...

    def stored_states(self, entity_type: str) -> list[StoredState]:
        """Instance counts per stored state and definition version, whether or not the
        machine knows them (what `statekit check --db` compares)."""
        ...

    def disagreements(self, entity_type: str) -> list[Disagreement]:
        """Instances whose version is not the number, or not the last seq, of their
        history."""
        ...
