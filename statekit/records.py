"""The values that flow between engine, runtime and store.

`Snapshot` is an instance's persisted state, `Plan` is what the engine decided a
transition will write, and `TransitionRecord` is the history row it left. They are
slotted dataclasses: the hot path builds one `Plan` per transition and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from statekit.errors import (
    ConcurrentTransitionError,
    InstanceNotFoundError,
    InvalidArgumentTypeError,
    ProtectedStateError,
    StoreError,
)

M = TypeVar("M", bound=BaseModel)

__all__ = [
    "HISTORY_FIELDS",
    "MARKS_IN_PLACE",
    "Context",
    "Plan",
    "Snapshot",
    "TransitionRecord",
]

MARKS_IN_PLACE = ("@stuck", "@retry")
"""statekit's own events that mark an instance where it is (source = target) without
moving it: the instance keeps its entry time, and its stay goes on."""


HISTORY_FIELDS = (
    "seq",
    "event",
    "source",
    "target",
    "at",
    "actor",
    "correlation_id",
    "idempotency_key",
    "payload",
    "definition_version",
)
"""The fields of a `TransitionRecord` a store keeps in its history row, beside the
instance's type and key: every store reads and writes these, in this order."""


@dataclass(slots=True)
class Snapshot:
    """An instance's persisted state: what the entity row holds."""

    entity_type: str
    key: str
    state: str
    version: int
    entered_at: datetime | None = None
    deadline_at: datetime | None = None
    stuck_at: datetime | None = None
    stuck_reason: str | None = None
    definition_version: int | None = None


@dataclass(slots=True)
class TransitionRecord:
    """One applied transition: a row of the history table.

    `seq` equals the instance's version after the transition, so an instance's
    history is numbered 1..version with no gaps. `replayed` is true when the
    record is returned for a repeated idempotency key instead of being written.
    """

    entity_type: str
    key: str
    seq: int
    event: str
    source: str
    target: str
    at: datetime
    actor: str | None = None
    correlation_id: str | None = None
    idempotency_key: str | None = None
    payload: dict[str, Any] | None = None
    definition_version: int | None = None
    replayed: bool = field(default=False, compare=False)


@dataclass(slots=True)
class Context:
    """What guards, conditions, actions and effects are handed besides the entity."""

    event: str
    source: str
    target: str
    payload: BaseModel | None
    now: datetime
    actor: str | None = None
    entity_type: str = ""
    key: str | None = None

    def payload_as(self, model: type[M]) -> M:
        """Return the payload typed as `model` (the model the event declares)."""
        if not isinstance(self.payload, model):
            raise InvalidArgumentTypeError(
                "model",
                model,
                f"the model event {self.event!r} carries ({type(self.payload).__name__})",
                message=(
                    f"event {self.event!r} carries {type(self.payload).__name__}, "
                    f"not {model.__name__}"
                ),
            )
        return self.payload


@dataclass(slots=True)
class Plan(Context):
    """A decided transition: everything the store writes, nothing written yet.

    A plan is also the `Context` its guards, actions and effects were handed
    (`now` is the transition's time, also readable as `at`), so deciding builds
    one object per transition.
    """

    expected_version: int = 0
    deadline_at: datetime | None = None
    definition_version: int = 0
    branch: Any = field(default=None, repr=False, compare=False)
    correlation_id: str | None = None
    idempotency_key: str | None = None
    stuck_reason: str | None = None
    entered_at: datetime | None = None
    """Set when the plan leaves the instance in its state (a stuck mark): when it
    really entered it. None: the instance enters `target` at `at`."""

    @property
    def at(self) -> datetime:
        """When the transition happens: the time it was decided at."""
        return self.now

    @property
    def entered(self) -> datetime:
        """When the instance entered `target`, as the store writes it."""
        return self.now if self.entered_at is None else self.entered_at

    @property
    def context(self) -> Context:
        """What the transition's handlers are handed: the plan itself."""
        return self

    @property
    def version(self) -> int:
        """The instance's version once this plan is applied."""
        return self.expected_version + 1

    def lost_race(self, stored: tuple[int, str] | None) -> StoreError:
        """The error of this plan's compare-and-set that matched no row, from the
        row's `(version, state)` read back: the row is gone (None), another
        transition moved it, or it is at the expected version in another state than
        the one this plan was decided from (changed outside a transition)."""
        key = self.key or ""
        if stored is None:
            return InstanceNotFoundError(entity_type=self.entity_type, key=key)
        version, state = stored
        if version == self.expected_version and state != self.source:
            return ProtectedStateError(
                entity_type=self.entity_type,
                key=key,
                event=self.event,
                state=self.source,
                stored_state=state,
            )
        return ConcurrentTransitionError(
            entity_type=self.entity_type,
            key=key,
            event=self.event,
            expected_version=self.expected_version,
            actual_version=version,
        )

    def payload_data(self) -> dict[str, Any] | None:
        """The payload as JSON-compatible data, for the history row."""
        if self.payload is None:
            return None
        return self.payload.model_dump(mode="json")

    def snapshot(self) -> Snapshot:
        """The instance's snapshot once this plan is applied."""
        return Snapshot(
            self.entity_type,
            self.key or "",
            self.target,
            self.expected_version + 1,
            self.entered,
            self.deadline_at,
            self.at if self.stuck_reason is not None else None,
            self.stuck_reason,
            self.definition_version,
        )

    def record(self) -> TransitionRecord:
        """The history row this plan writes."""
        payload = self.payload
        return self.record_with(None if payload is None else payload.model_dump(mode="json"))

    def record_with(self, payload: dict[str, Any] | None) -> TransitionRecord:
        """The history row this plan writes, its payload already dumped as `payload`."""
        return TransitionRecord(
            self.entity_type,
            self.key or "",
            self.expected_version + 1,
            self.event,
            self.source,
            self.target,
            self.now,
            self.actor,
            self.correlation_id,
            self.idempotency_key,
            payload,
            self.definition_version,
        )
