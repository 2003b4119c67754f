"""How the light unit of work (`units.RowUnit`) loads and writes back simple classes.

For a mapped class whose attributes are all plain columns of its own table (no
relationships, no SQL expressions), a unit loads the row with one SELECT on one
connection into a detached instance of the class (its methods and properties work;
its attributes hold the committed values), and writes back, in the same
transaction, any column an action or the block changed, under the version check of
`writeback.py`. This costs about a third of an ORM
Session unit; classes with relationships keep the Session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Connection, Select, Table, bindparam, select, update
from sqlalchemy.orm import Mapper

from statekit.entity import StateWriter
from statekit.store.sqlalchemy.orm import loaded_values, net_changes, new_detached
from statekit.store.sqlalchemy.writeback import (
    check_unchanged_state,
    stored_version,
    write_back_conflict,
)

if TYPE_CHECKING:
    from statekit.store.sqlalchemy.binding import EntityBinding

__all__ = ["RowLoader", "loaded_values_writer", "row_loader"]

_KEY: Any = bindparam("key_")


def loaded_values_writer(names: Sequence[str]) -> StateWriter:
    """A `StateWriter` for an entity of a light unit: it puts the values straight
    into the instance's dict, the values the ORM holds as loaded from the row.

    That is what they are once `apply` has run: it writes the same values to the
    row in the unit's transaction, and a failed transition puts the old ones back
    the same way. The ORM's change events are skipped, because nothing has to be
    written for these attributes at the end of the unit. A fresh light-unit
    instance has every attribute loaded, so none is expired.
    """

    def write(entity: Any, *values: Any) -> None:
        loaded_values(entity).update(zip(names, values, strict=True))

    return write


@dataclass(frozen=True)
class RowLoader:
    """Loads and writes back one mapped class's rows without a Session."""

    mapper: Mapper[Any]
    table: Table
    key: Column[Any]
    attributes: tuple[tuple[str, Column[Any]], ...]
    load: Select[Any]
    names: tuple[str, ...] = ()  # the attribute names, in `load`'s column order
    identity_names: tuple[str, ...] = ()  # the attributes of the primary key
    plain_updates: bool = True  # the ORM's UPDATE only sets columns (see `row_loader`)

    def instance(self, row: Any) -> Any:
        """A detached instance of the class holding the row's values, as if loaded.

        The row's values go straight into the instance's dict (`load` selects the
        columns in `attributes` order). Giving the instance its identity key is all
        `make_transient_to_detached` would change on it, since every attribute is
        loaded, at a fraction of the cost.
        """
        return new_detached(self.mapper, zip(self.names, row, strict=True), self.identity_names)

    def write_changes(
        self, conn: Connection, entity: Any, binding: EntityBinding, key: str
    ) -> None:
        """UPDATE the columns whose value changed on `entity` since it was loaded (if
        any), only while the row is still at the version the entity holds.

        Raises:
            ConcurrentTransitionError: another writer moved the row on first.
            StoreError: the block set a state attribute outside a transition.
        """
        changed = net_changes(entity)
        if not changed:
            return
        check_unchanged_state(binding.machine, entity, key, changed)
        values = loaded_values(entity)
        changes = {column: values[name] for name, column in self.attributes if name in changed}
        if not changes:
            return
        held: int = values[binding.machine.fields.version]
        coerced = binding.coerce_key(key)
        version = binding.columns["version"]
        statement = update(self.table).where(self.key == coerced, version == held)
        if conn.execute(statement.values(changes)).rowcount != 1:
            actual = stored_version(conn, binding, coerced)
            raise write_back_conflict(binding, key, held, actual)


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
    name_of: dict[Any, str] = {column: name for name, column in attributes}
    if not all(column in name_of for column in mapper.primary_key):
        return None
    return RowLoader(
        mapper=mapper,
        table=table,
        key=key,
        attributes=tuple(attributes),
        load=select(*(column for _, column in attributes)).where(key == _KEY),
        names=tuple(name for name, _ in attributes),
        identity_names=tuple(name_of[column] for column in mapper.primary_key),
        # No version counter and no server-side `onupdate`: a flush's UPDATE of a row
        # does nothing but set the changed columns (see `writeback.folded_changes`).
        plain_updates=mapper.version_id_col is None
        and all(column.server_onupdate is None for _, column in attributes),
    )
