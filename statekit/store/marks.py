"""Set-based stuck marking: an optional capability of a `SweepStore`.

Most overdue instances the sweeper meets sit in a state whose timeout fires no event
(or that declares no timeout): each is only marked stuck in place, with its `@stuck`
history row and the compensations of its history. A store that implements
`StuckMarking` does that for a whole batch at the store's depth (claim, mark, history
and outbox rows in a few statements, nothing built per instance in Python); the
`Deadlines` phase uses it first and sweeps what is left (timeout events, unknown
states or definition versions, failures) one claimed instance at a time, as a store
without it does for everything. The semantics are the per-instance path's exactly:
`OverdueBatch.mark` of the plans `Machine.system_plan` makes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from statekit.records import Plan, TransitionRecord
from statekit.store.protocol import CompensatedSteps

__all__ = ["StuckMarking", "StuckMarks"]


@dataclass
class StuckMarks:
    """What one `StuckMarking.mark_overdue_stuck` call wrote."""

    templates: Mapping[str, TransitionRecord]
    """state -> the `@stuck` record of an instance in it, but for key and seq."""
    marked: list[tuple[str, int, str]] = field(default_factory=list)
    """(key, seq of the `@stuck` row, state) of each instance marked; empty when the
    caller asked for the count alone (`keys=False`)."""
    count: int = 0
    """Instances marked."""
    scheduled: int = 0
    """Compensation rows scheduled (or reopened)."""

    def records(self) -> Iterator[TransitionRecord]:
        """The `@stuck` records written, built only when asked (for the listeners)."""
        for key, seq, state in self.marked:
            t = self.templates[state]
            payload = None if t.payload is None else dict(t.payload)
            yield TransitionRecord(
                t.entity_type,
                key,
                seq,
                t.event,
                t.source,
                t.target,
                t.at,
                t.actor,
                t.correlation_id,
                t.idempotency_key,
                payload,
                t.definition_version,
            )


@runtime_checkable
class StuckMarking(Protocol):
    """A `SweepStore` that marks a batch of overdue instances stuck set-based."""

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
        """In one transaction: claim up to `limit` instances of `entity_type` whose
        deadline is at or before `now`, whose state is a key of `plans`, whose version
        is a whole number from 0 up and whose definition version is in
        `accepted_versions` (or unset), that is the instances `Machine.system_plan`
        takes, earliest deadline first and skipping rows another sweeper holds; apply
        to each the plan of its state (a `Machine.system_plan` of `@stuck` for a
        snapshot with no key at version 0: the store writes it at the instance's key
        and version, with a compare-and-set on that version where the claim takes no
        lock); write each `@stuck` history row; and schedule the compensation of every
        step in their histories that declares one (`compensated_steps`), as
        `OverdueBatch.mark` does.

        `keys`: whether the caller needs each marked instance (`StuckMarks.marked`,
        for the `on_stuck` listeners); with False a store may return the counts
        alone, sparing the transfer of a row per instance.

        Returns None, having done nothing, when this store cannot do that for
        `entity_type` (the sweeper then marks instance by instance).

        Raises:
            ConcurrentTransitionError: a claimed row's version moved (possible only
                where the claim takes no lock); nothing is written.
        """
        ...
