"""`StateMixin`: the state columns for an application's SQLAlchemy mapped class.

    class Order(StateMixin, Base):
        __tablename__ = "orders"
        id: Mapped[int] = mapped_column(primary_key=True)

Column names can be changed per class with `__statekit_columns__`, e.g.
`{"state": "status"}`; the attribute names stay those of `StateFields`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Index, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from statekit.engine import Machine
from statekit.limits import NAME_MAX
from statekit.store.sqlalchemy.dialects import partial_index_kwargs
from statekit.store.sqlalchemy.tables import UTCDateTime
from statekit.store.sqlalchemy.writeback import protect_state

__all__ = ["StateMixin"]


class _column(declared_attr[Any]):  # noqa: N801 - used as a decorator, like declared_attr
    """`declared_attr` that stays quiet when read on `StateMixin` itself (`help()`,
    documentation tools): there it is the declaration, not a column."""

    def __get__(self, instance: object | None, owner: Any) -> Any:
        if owner is StateMixin:
            return self
        return super().__get__(instance, owner)


class StateMixin:
    """Adds state, version, entered-at, deadline, stuck and definition-version columns,
    and a deadline index (partial where the database supports it) for the sweeper."""

    __statekit_columns__: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def _statekit_column(cls, attribute: str) -> str:
        return cls.__statekit_columns__.get(attribute, attribute)

    @_column
    def state(cls) -> Mapped[str]:
        return mapped_column(cls._statekit_column("state"), String(NAME_MAX), nullable=False)

    @_column
    def state_version(cls) -> Mapped[int]:
        return mapped_column(
            cls._statekit_column("state_version"), Integer, nullable=False, default=0
        )

    @_column
    def state_entered_at(cls) -> Mapped[datetime | None]:
        return mapped_column(cls._statekit_column("state_entered_at"), UTCDateTime())

    @_column
    def state_deadline_at(cls) -> Mapped[datetime | None]:
        return mapped_column(cls._statekit_column("state_deadline_at"), UTCDateTime())

    @_column
    def stuck_at(cls) -> Mapped[datetime | None]:
        return mapped_column(cls._statekit_column("stuck_at"), UTCDateTime())

    @_column
    def stuck_reason(cls) -> Mapped[str | None]:
        return mapped_column(cls._statekit_column("stuck_reason"), Text())

    @_column
    def state_definition_version(cls) -> Mapped[int | None]:
        return mapped_column(cls._statekit_column("state_definition_version"), Integer)

    @classmethod
    def __declare_last__(cls) -> None:
        """Once mapped, a class that names its machine (`__statekit_machine__`)
        refuses to flush a state column changed by hand (see `protect_state`)."""
        machine = getattr(cls, "__statekit_machine__", None)
        if isinstance(machine, Machine):
            protect_state(cls, machine)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table = cls.__dict__.get("__table__")
        if isinstance(table, Table):
            _add_due_index(table, cls._statekit_column("state_deadline_at"))


def _add_due_index(table: Table, deadline_column: str) -> None:
    name = f"ix_{table.name}_statekit_due"
    if any(index.name == name for index in table.indexes):
        return
    deadline = table.c[deadline_column]
    Index(name, deadline, **partial_index_kwargs(deadline.isnot(None)))
