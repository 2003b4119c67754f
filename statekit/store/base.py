"""The store protocol: six methods, small enough for any backend to implement."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from statekit.records import Plan, Snapshot, TransitionRecord

__all__ = ["AfterCommit", "Store"]

AfterCommit = Callable[[TransitionRecord], None]
"""Called with the written record once the write is durable; never on rollback."""


@runtime_checkable
class Store(Protocol):
    """Where snapshots and history live.

    Implementations guarantee that `apply` is atomic (state, version and history row
    together or not at all) and compare-and-set on the version.

    A store may also offer `state_writer(entity) -> StateWriter | None`. The `Runner`
    asks it before moving an entity to its new state, so that a store which loaded
    the entity itself (in `transaction`) can set the state attributes the cheapest
    way its objects allow; `apply` writes the same values to the row. None means
    plain attribute assignment.

    A store may also offer `firing(entity_type, key)`, shaped like `transaction`,
    for a block that fires exactly one event on the entity and does nothing else
    with it; `Runner.fire_by_key` uses it when present. Knowing that, the store
    may make the one `apply` its own atomic commit.

    A store may also offer `foreign_error(error, entity_type, entity, event) ->
    StoreError | None`: the `StoreError` for an exception its database raised outside
    the store's own calls while `Runner.fire` worked on the entity (an ORM attribute
    reloading from a database that is down, say), or None for any other exception,
    which the Runner lets through as it is.
    A key names one instance's life: `create` under a key an earlier, deleted instance
    had starts clean (no history, no idempotency keys of the old one). A store may
    also offer `delete(entity_type, key, *, keep_history=False)`, removing an instance
    with its history atomically, and `retired_history(entity_type, key)`, the
    transitions of the key's earlier lives.
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

    def apply(
        self,
        plan: Plan,
        *,
        entity: object | None = None,
        after_commit: AfterCommit | None = None,
    ) -> TransitionRecord:
        """Write the plan: new state and version plus one history row, atomically,
        only if the stored version still equals `plan.expected_version`.

        Raises:
            ConcurrentTransitionError: the stored version moved on, or the
                idempotency key was recorded meanwhile.
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

    def transaction(self, entity_type: str, key: str) -> AbstractContextManager[Any]:
        """Load the entity object for one unit of work: transitions fired on it inside
        the block commit together on a clean exit and roll back on an exception.

        Raises:
            InstanceNotFoundError: no instance has this key.
        """
        ...
