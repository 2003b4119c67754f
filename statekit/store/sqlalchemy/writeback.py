"""What a unit of work writes back when its block ends goes through the version check.

A unit (`SQLAlchemyStore.transaction`, `session_unit`, `fire_by_key` off the driver
path) loads an entity, lets the block fire events on it and change its columns, and
writes the changed columns when the block ends. Between the load and that write
another writer may have moved the row on. Two rules keep the block from writing a
stale copy over the winner:

- Only net changes count: an attribute set and then put back (a Runner restoring
  the entity after a lost race or a failed post-condition) is not a change.
- The write names the version the entity holds: the light unit's UPDATE carries
  `AND state_version = :held`; a Session unit locks the row and compares its version
  before the flush. A mismatch is `ConcurrentTransitionError` and the unit rolls
  back. State attributes never change outside a transition: setting one by hand in
  a unit is refused.

A transition written in a Session on the driver path (`borrowed.SessionWrite`) also
sets the entity's other changed columns in its compare-and-set UPDATE
(`folded_changes`), so the Session's flush has no UPDATE of its own to send for the
row: the same values, under the same version check, in one statement instead of two.

`protect_state` extends that last rule to every Session: a flush that would write a
registered class's state attributes, changed by hand, raises `ProtectedStateError`
(statekit's own writes leave them unchanged for the ORM: they are written by its
compare-and-set and marked as what the row holds).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Connection, select
from sqlalchemy import event as sa_event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from statekit.errors import ConcurrentTransitionError, ProtectedStateError
from statekit.store.sqlalchemy.orm import (
    flush_listened,
    has_pending_changes,
    loaded_values,
    net_changes,
    update_listened,
)

if TYPE_CHECKING:
    from statekit.engine import Machine
    from statekit.store.sqlalchemy.binding import EntityBinding

__all__ = [
    "WRITE_BACK_EVENT",
    "check_unchanged_state",
    "folded_changes",
    "guard_session_unit",
    "net_changes",
    "note_written",
    "protect_state",
    "stored_version",
    "stored_version_and_state",
]

WRITE_BACK_EVENT = "(changes)"
"""The `event` of the `ConcurrentTransitionError` for a refused write-back."""

_WRITTEN = "statekit_written_versions"
"""`Session.info` key: entity id -> the version statekit wrote in this transaction."""


def check_unchanged_state(
    machine: Machine, entity: object, key: str, changed: Sequence[str]
) -> None:
    """Refuse a write (a unit's write-back, a Session's flush) that would set state
    attributes of `machine` outside a transition.

    Raises:
        ProtectedStateError: one of `changed` is a state attribute.
    """
    moved = [name for name in changed if name in machine.fields.state_attributes()]
    if moved:
        state_name = machine.fields.state
        state = loaded_values(entity).get(state_name)
        history = sa_inspect(entity).attrs[state_name].history
        stored = history.deleted[0] if history.deleted else state
        raise ProtectedStateError(
            f"{machine.name} {key}: {', '.join(moved)} changed outside a transition; "
            f"state attributes change only by firing an event "
            f"(events: {', '.join(machine.events)})",
            entity_type=machine.name,
            key=key,
            state=state,
            stored_state=stored,
        )


def protect_state(entity_class: type, machine: Machine) -> None:
    """Make every Session refuse to flush `entity_class` with a state attribute of
    `machine` changed by hand (once per class and machine; subclasses included).
    `StateMixin` calls it for a class that names its machine once it is mapped, and
    `SQLAlchemyStore.register` for any class it stores."""
    protected: set[str] = entity_class.__dict__.get(_PROTECTED, set())
    if machine.name in protected:
        return
    setattr(entity_class, _PROTECTED, protected | {machine.name})
    names = machine.fields.state_attributes()
    refuse = partial(_refuse_state_change, machine, names)
    sa_event.listen(entity_class, "before_update", refuse, propagate=True)


_PROTECTED = "_statekit_state_protected"


def _own_update_listeners(entity_class: type) -> int:
    """How many `before_update` listeners `protect_state` put on `entity_class`
    (registered on it or, propagating, on a base class)."""
    return sum(len(cls.__dict__.get(_PROTECTED, ())) for cls in entity_class.__mro__)


def folded_changes(
    session: Session, entity: object, binding: EntityBinding
) -> tuple[tuple[str, Any], ...]:
    """The (attribute, value) pairs of `entity`'s changed plain columns that a
    transition's compare-and-set UPDATE may set as well, sparing the Session's flush
    an UPDATE of the row: every attribute of the light unit's columns whose value
    changed since the load, but for the key and the state attributes.

    None (an empty tuple) where the ORM's own UPDATE would do more than set columns
    or be seen: a class without a light-unit loader, a version counter, a column with
    a server-side `onupdate`, `before_update`/`after_update` listeners besides
    statekit's own, or flush listeners on the Session besides statekit's."""
    loader = binding.rows
    if loader is None or not loader.plain_updates or not has_pending_changes(entity):
        return ()
    if update_listened(loader.mapper, _own_update_listeners(binding.entity_class)):
        return ()
    if flush_listened(session, 1 if _WRITTEN in session.info else 0):
        return ()
    changed = net_changes(entity)
    if not changed:
        return ()
    kept = {*binding.state_names, *loader.identity_names}
    values = loaded_values(entity)
    return tuple(
        (name, values[name]) for name in loader.names if name in changed and name not in kept
    )


def _refuse_state_change(
    machine: Machine, names: tuple[str, ...], mapper: Any, connection: Connection, entity: object
) -> None:
    state = sa_inspect(entity)
    attrs = state.attrs
    changed = [name for name in names if attrs[name].history.has_changes()]
    if changed:
        identity = state.identity
        key = str(identity[0]) if identity and len(identity) == 1 else str(identity)
        check_unchanged_state(machine, entity, key, changed)


def stored_version(
    conn: Connection, binding: EntityBinding, key: Any, *, shared: bool = False
) -> int | None:
    """The row's version, read with a lock held to the end of the transaction (under
    REPEATABLE READ a plain read would return this transaction's snapshot, not the
    winner's): exclusive before a write, `shared` to report a lost race."""
    version: Column[Any] = binding.columns["version"]
    query = select(version).where(binding.key == key).with_for_update(read=shared)
    found: int | None = conn.execute(query).scalar()
    return found


def stored_version_and_state(
    conn: Connection, binding: EntityBinding, key: Any
) -> tuple[int, str] | None:
    """The row's version and state, read with a shared lock (see `stored_version`):
    the facts of a lost compare-and-set."""
    query = binding.version_and_state().with_for_update(read=True)
    row = conn.execute(query, {"key_": key}).first()
    return None if row is None else (row[0], row[1])


def write_back_conflict(
    binding: EntityBinding, key: str, held: int, actual: int | None
) -> ConcurrentTransitionError:
    """The error for a write-back whose entity is no longer at the version it holds."""
    return ConcurrentTransitionError(
        entity_type=binding.machine.name,
        key=key,
        event=WRITE_BACK_EVENT,
        expected_version=held,
        actual_version=actual,
    )


def note_written(session: Session, entity: object, version: int) -> None:
    """Remember that statekit wrote `entity`'s row at `version` in the Session's
    transaction: the row is locked and current, so its write-back needs no check."""
    written: dict[int, int] | None = session.info.get(_WRITTEN)
    if written is not None:  # a unit's Session (see `guard_session_unit`)
        written[id(entity)] = version


def guard_session_unit(session: Session, binding: EntityBinding, entity: object, key: str) -> None:
    """Check the version before any flush of `session` writes `entity`'s row."""
    session.info[_WRITTEN] = {}
    sa_event.listen(session, "before_flush", partial(_before_flush, binding, entity, key))
    sa_event.listen(session, "after_transaction_end", _forget_written)


def _before_flush(
    binding: EntityBinding, entity: object, key: str, session: Session, *_: Any
) -> None:
    if entity not in session:
        return
    changed = net_changes(entity)
    if not changed:
        return
    check_unchanged_state(binding.machine, entity, key, changed)
    held: int = loaded_values(entity)[binding.machine.fields.version]
    written: dict[int, int] = session.info.get(_WRITTEN, {})
    if written.get(id(entity)) == held:
        return
    actual = stored_version(session.connection(), binding, binding.coerce_key(key))
    if actual != held:
        raise write_back_conflict(binding, key, held, actual)


def _forget_written(session: Session, transaction: Any) -> None:
    if transaction.parent is None and _WRITTEN in session.info:
        session.info[_WRITTEN] = {}
