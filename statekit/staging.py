"""Applying a decided `Plan` to an entity in memory, and undoing it.

`Stager` runs a plan's actions, writes the entity's state attributes and checks its
post-conditions (`stage`, which returns the undo) or writes a plan's outcome alone
(`write_snapshot`); `run_effects` runs the after-commit effects. `Machine`
(statekit.engine) holds a `Stager` and delegates to these.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from operator import attrgetter

from statekit.branches import Branch, verdict_reason
from statekit.entity import (
    StateFields,
    StateWriter,
    attribute_writer,
    restore_attributes,
    save_attributes,
)
from statekit.errors import PostconditionFailedError
from statekit.records import Plan

__all__ = ["Stager", "run_effects", "write_plan"]

logger = logging.getLogger("statekit")


class Stager:
    """Writes plans onto the entities of one machine (`entity_type`).

    Args:
        entity_type: The machine's name, for errors.
        fields: The entity's state attribute names.
        allowed: state -> events declared from it, for errors.
    """

    def __init__(
        self, entity_type: str, fields: StateFields, allowed: dict[str, tuple[str, ...]]
    ) -> None:
        self.entity_type = entity_type
        self.fields = fields
        self.allowed = allowed
        names = fields.state_attributes()
        self.read_state = attrgetter(*names)
        """Reads the seven state attributes, in `StateFields.state_attributes()` order."""
        self.write_state: StateWriter = attribute_writer(names)
        """Writes them, in the same order."""

    def stage(
        self, entity: object, plan: Plan, *, write: StateWriter | None = None
    ) -> Callable[[], None]:
        """See `Machine.stage`."""
        branch: Branch = plan.branch
        if not branch.actions and not branch.postconditions:
            # Only the state attributes change: save and restore just those.
            try:
                before = self.read_state(entity)
            except AttributeError:
                saved = save_attributes(entity, self.fields)
            else:
                put = write or self.write_state
                write_plan(put, entity, plan)
                return lambda: put(entity, *before)
        else:
            saved = save_attributes(entity, self.fields)

        def restore() -> None:
            restore_attributes(entity, saved)

        ctx = plan.context
        try:
            for action in branch.actions:
                action(entity, ctx)
            write_plan(self.write_state, entity, plan)
            for name, check in branch.postconditions:
                reason = verdict_reason("post-condition", name, check(entity, ctx))
                if reason is not None:
                    raise PostconditionFailedError(
                        entity_type=self.entity_type,
                        key=plan.key,
                        state=plan.source,
                        event=plan.event,
                        allowed_events=self.allowed[plan.source],
                        condition=name,
                        reason=reason,
                    )
        except BaseException:
            restore()
            raise
        return restore

    def write_snapshot(self, entity: object, plan: Plan) -> None:
        """Set the entity's state attributes to what `plan` leaves behind."""
        write_plan(self.write_state, entity, plan)


def write_plan(write: StateWriter, entity: object, plan: Plan) -> None:
    """Write what `plan` leaves behind onto `entity` with `write`."""
    at = plan.now
    stuck = plan.stuck_reason
    write(
        entity,
        plan.target,
        plan.expected_version + 1,
        plan.entered,
        plan.deadline_at,
        None if stuck is None else at,
        stuck,
        plan.definition_version,
    )


def run_effects(
    entity: object,
    plan: Plan,
    on_failure: Callable[[str, Exception], None] | None = None,
) -> None:
    """See `Machine.run_effects`."""
    branch: Branch = plan.branch
    for name, effect in branch.effects:
        try:
            effect(entity, plan.context)
        except Exception as exc:
            logger.exception(
                "effect %r of %s %s (%s) failed after commit",
                name,
                plan.entity_type,
                plan.key,
                plan.event,
                extra={
                    "entity_type": plan.entity_type,
                    "entity_key": plan.key,
                    "event": plan.event,
                    "effect": name,
                },
            )
            if on_failure is not None:
                on_failure(name, exc)
