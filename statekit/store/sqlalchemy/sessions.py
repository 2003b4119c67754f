"""The ORM side of a transition: which Session an entity is in, telling it what the
row now holds, and running after-commit work when that Session commits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from statekit.store.sqlalchemy.orm import commit_attributes, pending_changes

if TYPE_CHECKING:
    from statekit.store.sqlalchemy.binding import EntityBinding

__all__ = [
    "defer",
    "is_mapped",
    "mark_persisted",
    "running_after_commit",
]

_PENDING = "statekit_after_commit"
_RUNNING = "statekit_running_after_commit"


def is_mapped(entity: object) -> bool:
    """Whether `entity` is an instance of a mapped class."""
    try:
        sa_inspect(entity)
    except sa_exc.NoInspectionAvailable:
        return False
    return True


def running_after_commit(session: Session) -> bool:
    """Whether `session` is running statekit's after-commit work (an effect firing
    the next event): its transaction is over and it cannot emit SQL there, so such a
    write is statekit's own, as for a detached entity."""
    return bool(session.info.get(_RUNNING))


def mark_persisted(
    entity: object,
    binding: EntityBinding,
    *,
    everything: bool = False,
    also: Sequence[str] = (),
) -> None:
    """Tell the ORM the state attributes (and the attributes `also`; with
    `everything`, every attribute changed since the load) now match the row, so it
    does not write them again."""
    names: Sequence[str] = [*binding.state_names, *also] if also else binding.state_names
    if everything:
        changed = pending_changes(entity)
        if changed:
            names = [*names, *(n for n in changed if n not in binding.state_names)]
    # Once for all seven rather than `set_committed_value` each: a ninth of the time.
    commit_attributes(entity, names)


def defer(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once `session` commits (dropped if it rolls back)."""
    pending: list[Callable[[], None]] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        event.listen(session, "after_commit", _run_pending)
        event.listen(session, "after_rollback", _drop_pending)
    pending.append(callback)


def _run_pending(session: Session) -> None:
    pending: list[Callable[[], None]] = session.info.get(_PENDING, [])
    callbacks = list(pending)
    pending.clear()
    session.info[_RUNNING] = True
    try:
        for callback in callbacks:
            callback()
    finally:
        del session.info[_RUNNING]


def _drop_pending(session: Session) -> None:
    session.info.get(_PENDING, []).clear()
