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


def text_key(text: str) -> str:
    """`text` as a text key; ValueError for text no database's row holds alike (a NUL,
    a lone surrogate: `statekit.limits.unstorable_text`), as `start` never stores it."""
    if "\x00" in text or (not text.isascii() and unstorable_text(text) is not None):
        raise ValueError("no stored key holds this text")
    return text


def key_type_of(key: Column[Any], dialect: str) -> Callable[[str], Any]:
    """How a key's text becomes a value of the `key` column on `dialect`: the column's
    Python type; for an integer column, one that also refuses (ValueError) a number
    out of the column's range, which no row holds and the driver or the database
    would refuse (SQLite's INTEGER holds 64 bits whatever the declared type); for a
    text column, `text_key`."""
    try:
        python_type: Callable[[str], Any] = key.type.python_type
    except NotImplementedError:
        python_type = str
    if python_type is str:
        return text_key
    if python_type is not int:
        return python_type
    if dialect == "sqlite" or isinstance(key.type, BigInteger):
        bits = 64
    else:
        bits = 16 if isinstance(key.type, SmallInteger) else 32
    if getattr(key.type, "unsigned", False):
        low, high = 0, 2**bits - 1
    else:
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def integer_key(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"{value} is outside the key column's range")
        return value

    return integer_key


@dataclass(frozen=True)
class EntityBinding:
    """How one machine's instances map onto a mapped class's table."""

    machine: Machine
    entity_class: type
    table: Table
    key: Column[Any]
    columns: dict[str, Column[Any]]  # StateFields attribute -> column
    key_type: Callable[[str], Any]
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
        try:
            return self.key_type(key)
        except (TypeError, ValueError) as exc:
            raise InstanceNotFoundError(entity_type=self.machine.name, key=key) from exc
