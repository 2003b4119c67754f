"""`DjangoUnit`: one `DjangoStore.transaction` block, and the errors of the ORM."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DatabaseError, models

from statekit.contrib.django.mixin import changed_fields, mark_synced
from statekit.entity import StateWriter
from statekit.errors import StatekitError, StoreError

__all__ = [
    "DjangoUnit",
    "database_errors",
    "open_unit",
    "unit_of_entity",
    "write_back",
]

_UNITS = "statekit_units"
"""Where an entity's open units live: its `_state` (Django's per-instance ModelState)."""


class DjangoUnit:
    """One open `transaction`/`firing` block: its entity, its database and thread.

    The block's `transaction.atomic()` is the unit's transaction; `apply` nests its
    own atomic block (a savepoint) inside it, and after-commit work waits for the
    outermost commit through `transaction.on_commit`."""

    __slots__ = ("db", "entity", "single", "thread")

    def __init__(self, entity: models.Model, db: str, *, single: bool = False) -> None:
        self.entity = entity
        self.db = db
        self.single = single  # a `firing` block: one apply, whose failure leaves the block
        self.thread = threading.get_ident()

    def state_writer(self) -> StateWriter | None:
        """None: a model's state fields are plain attributes."""
        return None


@contextmanager
def open_unit(entity: models.Model, db: str, *, single: bool = False) -> Iterator[DjangoUnit]:
    """Register a unit on `entity` for the duration of the block (`single`: a
    `firing` block, see `DjangoUnit`)."""
    unit = DjangoUnit(entity, db, single=single)
    units: list[DjangoUnit] = entity._state.__dict__.setdefault(_UNITS, [])
    units.append(unit)
    try:
        yield unit
    finally:
        units.remove(unit)


def unit_of_entity(entity: object) -> DjangoUnit | None:
    """The innermost unit the calling thread has open on `entity`, or None."""
    state = getattr(entity, "_state", None)
    units: list[DjangoUnit] = getattr(state, _UNITS, None) or []
    thread = threading.get_ident()
    for unit in reversed(units):
        if unit.thread == thread:
            return unit
    return None


@contextmanager
def database_errors(what: str) -> Iterator[None]:
    """Turn the database's errors into `StoreError` (the original in `__cause__`)."""
    try:
        yield
    except StatekitError:
        raise
    except DatabaseError as exc:
        raise StoreError(f"{what} failed: {type(exc).__name__}: {exc}") from exc


def write_back(entity: models.Model, db: str) -> None:
    """Save the fields (never the state fields) that changed since statekit last
    read or wrote the entity, in the open transaction: what actions and compensation
    handlers did to it."""
    changed = changed_fields(entity)
    if changed:
        entity.save(using=db, update_fields=list(changed))
        mark_synced(entity)
