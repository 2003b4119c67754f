"""Marking a batch of overdue instances stuck in one PostgreSQL statement.

On PostgreSQL, `SQLAlchemyStore.mark_overdue_stuck` sends one self-committing
statement per batch, as a hand-written sweep would: data-modifying CTEs that claim
the batch (`FOR UPDATE SKIP LOCKED`), mark it (version + 1 on the rows just locked),
insert the `@stuck` history rows from the rows the UPDATE returns and the
compensation outbox rows from the instances' history, and return each marked
instance's key, new version and state with the counts (or, when the caller needs no
instance, the counts alone). Every
sub-statement sees the snapshot the statement started with, so the outbox rows come
from the history as it was before this mark: the `@stuck` rows undo nothing, so that
is the same set `OverdueBatch.mark` schedules.

Other databases take the claim and the few set-based statements of `MarkStatements`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Integer,
    Select,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    select,
    union_all,
    update,
)

from statekit.records import Plan, TransitionRecord
from statekit.store.protocol import CompensatedSteps
from statekit.store.sqlalchemy.dialects import Capabilities
from statekit.store.sqlalchemy.history import history_row
from statekit.store.sqlalchemy.marking import insert_ignoring_duplicates
from statekit.store.sqlalchemy.tables import StatekitTables

__all__ = ["OneStatementMark", "declared_steps"]

_SCHEDULED = (
    "entity_type entity_key step_seq action event max_attempts status attempts "
    "next_attempt_at created_at updated_at"
).split()
"""The outbox columns a stuck mark fills."""
_STEP = ("source", "event", "target", "action")
_SHARED = ("event", "at", "actor", "correlation_id", "idempotency_key", "definition_version")
"""History fields every state's `@stuck` record has in common (one parameter each)."""


def declared_steps(compensated_steps: CompensatedSteps) -> tuple[tuple[Any, ...], ...]:
    """`compensated_steps` as hashable rows: (source, event, target, action, attempts)."""
    return tuple(
        (*step, action, attempts)
        for (action, attempts), steps in compensated_steps.items()
        for step in steps
    )


def _declared(steps: tuple[tuple[Any, ...], ...]) -> Any:
    """The declared steps as a derived table (source, event, target, action,
    attempts) of bound values: a UNION ALL of one-row SELECTs, which SQLAlchemy
    caches where it would compile a VALUES clause on every execution."""
    rows = [
        select(
            *(
                literal(value, String()).label(name)
                for name, value in zip(_STEP, row[:4], strict=True)
            ),
            literal(row[4], Integer()).label("attempts"),
        )
        for row in steps
    ]
    return (rows[0] if len(rows) == 1 else union_all(*rows)).subquery("declared")


class OneStatementMark:
    """The one-statement stuck mark of one machine's states on PostgreSQL, built once.

    Args:
        claim: The claim of the batch (key, version, state; see `SweepOperations`).
        binding: The machine's entity binding.
        tables: statekit's tables.
        caps: The database's capabilities (for the outbox's upsert).
        states: The states to mark, in the order their parameters are numbered.
        steps: `declared_steps` of the machine's compensations.
    """

    def __init__(
        self,
        claim: Select[Any],
        binding: Any,
        tables: StatekitTables,
        caps: Capabilities,
        states: Sequence[str],
        steps: tuple[tuple[Any, ...], ...],
    ) -> None:
        self.states = tuple(states)
        table, key, cols = binding.table, binding.key, binding.columns
        history, outbox = tables.transitions, tables.compensations
        due = claim.cte("due")
        state = cols["state"]

        def per_state(name: str, type_: Any, of: Any) -> Any:
            """The parameter `name` of the state in column `of`: name0, name1, ..."""
            params = [bindparam(f"{name}{i}", type_=type_) for i in range(len(self.states))]
            if len(params) == 1:
                return params[0]
            return case(*((of == s, p) for s, p in zip(self.states, params, strict=True)))

        at = bindparam("at", type_=cols["stuck_at"].type)
        marked = (
            update(table)
            .where(key == due.c[key.name])
            .values(
                {
                    cols["version"]: cols["version"] + 1,
                    cols["entered_at"]: func.coalesce(cols["entered_at"], at),
                    cols["deadline_at"]: None,
                    cols["stuck_at"]: at,
                    cols["stuck_reason"]: per_state("reason", cols["stuck_reason"].type, state),
                    cols["definition_version"]: bindparam("definition", type_=Integer()),
                }
            )
            .returning(key.label("key"), cols["version"].label("version"), state.label("state"))
            .cte("marked")
        )
        text_key = cast(marked.c.key, String())
        shared = {name: bindparam(f"h_{name}", type_=history.c[name].type) for name in _SHARED}
        rows = select(
            literal(binding.machine.name, history.c.entity_type.type),
            text_key,
            marked.c.version,
            marked.c.state,
            marked.c.state,
            per_state("payload", history.c.payload.type, marked.c.state),
            *shared.values(),
        )
        written = (
            history.insert()
            .from_select(
                ["entity_type", "entity_key", "seq", "source", "target", "payload", *shared],
                rows,
            )
            .returning(history.c.seq)
            .cte("written")
        )
        counts = [select(func.count()).select_from(written).scalar_subquery()]
        if steps:
            declared = _declared(steps)
            now = bindparam("scheduled_at", type_=outbox.c.created_at.type)
            undone = (
                select(
                    history.c.entity_type,
                    history.c.entity_key,
                    history.c.seq,
                    declared.c.action,
                    history.c.event,
                    declared.c.attempts,
                    literal("pending", outbox.c.status.type),
                    literal(0, outbox.c.attempts.type),
                    now,
                    now,
                    now,
                )
                .select_from(history)
                .join(marked, history.c.entity_key == text_key)
                .join(
                    declared,
                    and_(
                        history.c.source == declared.c.source,
                        history.c.event == declared.c.event,
                        history.c.target == declared.c.target,
                    ),
                )
                .where(history.c.entity_type == binding.machine.name)
            )
            scheduled = (
                insert_ignoring_duplicates(outbox, caps)
                .from_select(_SCHEDULED, undone)
                .returning(outbox.c.step_seq)
                .cte("scheduled")
            )
            counts.append(select(func.count()).select_from(scheduled).scalar_subquery())
        self.statement = select(marked.c.key, marked.c.version, marked.c.state, *counts)
        """Each marked instance's key, new version and state, with the counts."""
        marked_count = select(func.count()).select_from(marked).scalar_subquery()
        self.counting = select(marked_count, *counts)
        """One row: how many instances were marked, history rows written and
        compensations scheduled (nothing per instance crosses the wire)."""

    def parameters(
        self,
        plans: Mapping[str, Plan],
        templates: Mapping[str, TransitionRecord],
        now: datetime,
        limit: int,
    ) -> dict[str, Any] | None:
        """The statement's parameters for `plans` (state -> its `@stuck` plan), or None
        when the plans differ in more than the reason and its note (the statement
        then does not fit them)."""
        first = history_row(templates[self.states[0]])
        parameters: dict[str, Any] = {f"h_{name}": first[name] for name in _SHARED}
        parameters.update(now=now, scheduled_at=now, limit=limit, at=plans[self.states[0]].at)
        parameters["definition"] = first["definition_version"]
        for i, state in enumerate(self.states):
            plan, row = plans[state], history_row(templates[state])
            fits = (
                plan.source == plan.target == state
                and plan.deadline_at is None
                and plan.stuck_reason is not None
                and plan.entered_at is not None
                and plan.at == parameters["at"]
                and all(row[name] == first[name] for name in _SHARED)
            )
            if not fits:
                return None
            parameters[f"reason{i}"] = plan.stuck_reason
            parameters[f"payload{i}"] = row["payload"]
        return parameters
