"""The light unit of work behind `SQLAlchemyStore.transaction` for simple classes.

For a mapped class whose attributes are all plain columns of its own table (no
relationships, no SQL expressions), a unit loads the row with one SELECT on one
connection into a detached instance of the class (its methods and properties work;
its attributes hold the committed values), and writes back, in the same
transaction, any column an action changed. This costs about a third of an ORM
Session unit; classes with relationships keep the Session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Connection, Select, Table, bindparam, select, update
from sqlalchemy.orm import Mapper, make_transient_to_detached
from sqlalchemy.orm.attributes import instance_dict, instance_state

__all__ = ["RowLoader", "RowUnit", "row_loader"]

_KEY: Any = bindparam("key_")


@dataclass
class RowUnit:
    """One light unit in progress: its connection and after-commit callbacks."""

    conn: Connection
    committed: list[Callable[[], None]] = field(default_factory=list)


@dataclass(frozen=True)
class RowLoader:
    """Loads and writes back one mapped class's rows without a Session."""

    mapper: Mapper[Any]
    table: Table
    key: Column[Any]
    attributes: tuple[tuple[str, Column[Any]], ...]
    load: Select[Any]

    def instance(self, row: Any) -> Any:
        """A detached instance of the class holding the row's values, as if loaded."""
        entity = self.mapper.class_manager.new_instance()
        values = instance_dict(entity)
        mapping = row._mapping
        for name, column in self.attributes:
            values[name] = mapping[column]
        make_transient_to_detached(entity)
        return entity

    def write_changes(self, conn: Connection, entity: Any, key: Any) -> None:
        """UPDATE the columns changed on `entity` since it was loaded (if any)."""
        state = instance_state(entity)
        changed = state.committed_state  # attributes set since they were last committed
        if not changed:
            return
        values = instance_dict(entity)
        changes = {column: values[name] for name, column in self.attributes if name in changed}
        if changes:
            conn.execute(update(self.table).where(self.key == key).values(changes))


def row_loader(mapper: Mapper[Any], table: Table, key: Column[Any]) -> RowLoader | None:
    """A loader for `mapper` when its attributes are plain columns of `table` only."""
    if mapper.relationships or mapper.inherits is not None:
        return None
    attributes = []
    for prop in mapper.column_attrs:
        columns = prop.columns
        if len(columns) != 1 or not isinstance(columns[0], Column) or columns[0].table is not table:
            return None
        attributes.append((prop.key, columns[0]))
    return RowLoader(
        mapper=mapper,
        table=table,
        key=key,
        attributes=tuple(attributes),
        load=select(*(column for _, column in attributes)).where(key == _KEY),
    )
