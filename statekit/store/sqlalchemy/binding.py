"""`EntityBinding`: how one machine's instances map onto a mapped class's table."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Column, Select, SmallInteger, Table, bindparam, select, update

from statekit.engine import Machine
from statekit.entity import STATE_KEYS, StateWriter
from statekit.errors import InstanceNotFoundError
from statekit.limits import unstorable_text
from statekit.records import Plan, Snapshot
from statekit.store.sqlalchemy.orm import set_listened
from statekit.store.sqlalchemy.rows import RowLoader, loaded_values_writer

__all__ = ["COMPARE_AND_SET_PARAMS", "EntityBinding"]

_SET_PARAMS = {
    "state": "state_",
    "version": "next_",
    "entered_at": "at_",
    "deadline_at": "deadline_",
    "stuck_at": "stuck_at_",
    "stuck_reason": "reason_",
    "definition_version": "definition_",
}
COMPARE_AND_SET_PARAMS = ("k_", "v_", "source_", *_SET_PARAMS.values())
"""The bound parameters of `EntityBinding.compare_and_set`."""


def key_type_of(key: Column[Any]) -> Callable[[str], Any]:
    """The Python type a key's text becomes for the `key` column (`str` when the
    column's type names none)."""
    try:
        python_type: Callable[[str], Any] = key.type.python_type
    except NotImplementedError:
        return str
    return python_type


def key_range_of(key: Column[Any], dialect: str) -> tuple[int, int] | None:
    """The numbers an integer `key` column holds on `dialect` (16, 32 or 64 bits by
    its type; SQLite's INTEGER holds 64 whatever the declared type), or None for a
    column of another type. A number outside it is no row's key: the driver or the
    database would refuse it rather than find nothing."""
    if key_type_of(key) is not int:
        return None
    if dialect == "sqlite" or isinstance(key.type, BigInteger):
        bits = 64
    else:
        bits = 16 if isinstance(key.type, SmallInteger) else 32
    if getattr(key.type, "unsigned", False):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


@dataclass(frozen=True)
class EntityBinding:
    """How one machine's instances map onto a mapped class's table."""

    machine: Machine
    entity_class: type
    table: Table
    key: Column[Any]
    columns: dict[str, Column[Any]]  # StateFields attribute -> column
    key_type: Callable[[str], Any]
    key_range: tuple[int, int] | None = None  # an integer key's bounds (`key_range_of`)
    rows: RowLoader | None = None  # the light unit's loader, for simple classes
    compare_and_set: Any = None  # the apply UPDATE, built once
    state_names: tuple[str, ...] = ()  # the entity's state attribute names
    write_state: StateWriter | None = None  # how the Runner sets them in a light unit
    locked_snapshot: Any = None  # `snapshot_select` of key `k_`, FOR UPDATE, built once

    def __post_init__(self) -> None:
        names = self.machine.fields.state_attributes()
        object.__setattr__(self, "state_names", names)
        if not set_listened(self.entity_class, names):
            object.__setattr__(self, "write_state", loaded_values_writer(names))
        object.__setattr__(self, "compare_and_set", self.compare_and_set_with())
        locked = self.snapshot_select().where(self.key == bindparam("k_")).with_for_update()
        object.__setattr__(self, "locked_snapshot", locked)

    def compare_and_set_with(self, extra: Mapping[Column[Any], Any] | None = None) -> Any:
        """The compare-and-set UPDATE (parameters: `compare_and_set_values`), setting
        also the columns in `extra` to the given values or bound parameters."""
        cols = self.columns
        values: dict[Column[Any], Any] = {
            cols[attribute]: bindparam(param) for attribute, param in _SET_PARAMS.items()
        }
        values.update(extra or {})
        return (
            update(self.table)
            .where(
                self.key == bindparam("k_"),
                cols["version"] == bindparam("v_"),
                cols["state"] == bindparam("source_"),
            )
            .values(values)
        )

    def snapshot_select(self) -> Select[Any]:
        """SELECT of the key and the state columns, in `Snapshot` order."""
        return select(self.key, *(self.columns[name] for name in STATE_KEYS))

    def snapshot(self, row: Sequence[Any]) -> Snapshot:
        """The snapshot of a row selected with `snapshot_select`."""
        return Snapshot(self.machine.name, str(row[0]), *row[1:])

    def compare_and_set_values(self, plan: Plan) -> dict[str, Any]:
        """The parameters of `compare_and_set` for `plan`."""
        now, version, stuck = plan.now, plan.expected_version, plan.stuck_reason
        entered = plan.entered_at
        return {
            "k_": self.coerce_key(plan.key or ""),
            "v_": version,
            "source_": plan.source,
            "state_": plan.target,
            "next_": version + 1,
            "at_": now if entered is None else entered,  # `Plan.entered`
            "deadline_": plan.deadline_at,
            "stuck_at_": None if stuck is None else now,
            "reason_": stuck,
            "definition_": plan.definition_version,
        }

    def version_and_state(self) -> Select[Any]:
        """SELECT of the row's version and state (a lost race's facts), by key `key_`."""
        cols = self.columns
        return select(cols["version"], cols["state"]).where(self.key == bindparam("key_"))

    def coerce_key(self, key: str) -> Any:
        """The key column's value for `key`; `InstanceNotFoundError` when no row can
        have it: not of the column's type, an integer outside `key_range`, or text no
        database holds alike (a NUL, a lone surrogate: `start` never stores one)."""
        try:
            value = self.key_type(key)
        except (TypeError, ValueError) as exc:
            raise InstanceNotFoundError(entity_type=self.machine.name, key=key) from exc
        bounds = self.key_range
        if type(value) is int:
            if bounds is not None and not bounds[0] <= value <= bounds[1]:
                raise InstanceNotFoundError(entity_type=self.machine.name, key=key)
        elif type(value) is str and unstorable_text(value) is not None:
            raise InstanceNotFoundError(entity_type=self.machine.name, key=key)
        return value
