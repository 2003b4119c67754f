"""The store protocols, split by consumer. This module holds `Reads`, what the CLI (and
later Flask views and the Django admin) read, and the records it returns.

`MemoryStore` implements `Reads` as the reference; `SQLAlchemyStore` implements it over
the SQL tables (`store/sqlalchemy/reads.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from statekit.compensation import CompensationTask, TaskStatus
from statekit.engine import Machine
from statekit.records import Snapshot, TransitionRecord

__all__ = ["Attempt", "Disagreement", "Reads", "Stay", "StoredState", "Waiting"]


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
