"""Small helpers shared by the core tests (not fixtures: plain functions and classes)."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from models.order import Order
from statekit import Machine, MachineSpec, State, StatefulObject, Workflow

STATE_ATTRIBUTES = (
    "state",
    "state_version",
    "state_entered_at",
    "state_deadline_at",
    "stuck_at",
    "stuck_reason",
    "state_definition_version",
)


class Thing(StatefulObject):
    """A plain entity with a key and a free-form bag of attributes."""

    def __init__(self, key: str = "t1", **attributes: Any) -> None:
        self.id = key
        for name, value in attributes.items():
            setattr(self, name, value)


def attributes(entity: object) -> dict[str, Any]:
    """A deep copy of the entity's instance attributes, for before/after comparisons."""
    return copy.deepcopy(dict(vars(entity)))


def state_attributes(entity: object) -> dict[str, Any]:
    """The entity's machine-state attributes (see `StateFields`)."""
    return {name: getattr(entity, name, None) for name in STATE_ATTRIBUTES}


def new_order(key: str = "o1", total: str = "10", **attributes: Any) -> Order:
    """An unstarted order for `total`."""
    return Order(id=key, total=Decimal(total), **attributes)


def spec(
    states: Iterable[Mapping[str, Any]],
    transitions: Iterable[Mapping[str, Any]] = (),
    **extra: Any,
) -> MachineSpec:
    """Build a `MachineSpec` named "m" from plain data."""
    return MachineSpec.model_validate(
        {"name": "m", "states": list(states), "transitions": list(transitions), **extra}
    )


def always(entity: object, ctx: object) -> bool:
    """A guard that passes."""
    return True


def never(entity: object, ctx: object) -> bool:
    """A guard that fails."""
    return False


def one_step(**options: Any) -> tuple[Machine, Thing]:
    """A machine `a --go--> b` (b final) with `options` on `go`, and a Thing started in it."""
    a, b = State(initial=True), State(final=True)
    workflow = type("OneStep", (Workflow,), {"a": a, "b": b, "go": a.to(b, **options)})
    machine: Machine = workflow.machine
    thing = Thing()
    machine.start(thing)
    return machine, thing
