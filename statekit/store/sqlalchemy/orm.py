"""The one module of statekit that touches SQLAlchemy's internals.

Each function names one thing statekit relies on that SQLAlchemy's public API does
not offer (or offers only at a cost the write paths cannot pay).
`tests/sql/test_orm_internals.py` pins the behaviour of each, so a SQLAlchemy upgrade that
changes one fails there, loudly, rather than somewhere in a write path.

Internals used: the listener counts of a mapper's and a Session's `dispatch`,
`InstanceState.committed_state`, `InstanceState._commit`,
`InstanceState._commit_all` and its `modified` flag, the
instance dict, `ClassManager.new_instance`, assignment to `InstanceState.key`, an
attribute's `impl.is_equal` and `dispatch.set`, `NO_VALUE`, the engine's and the
dialect's event `dispatch`, and the compiler's `positiontup`, `binds` and
`bind_names`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.orm.attributes import (
    instance_dict,
    instance_state,
    manager_of_class,
    set_committed_value,
)
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.state import InstanceState

__all__ = [
    "FAST_COMMIT",
    "commit_attributes",
    "compiled_parameters",
    "engine_listened",
    "flush_listened",
    "has_pending_changes",
    "instance_info",
    "loaded_values",
    "mapped_state",
    "net_changes",
    "new_detached",
    "pending_changes",
    "set_listened",
    "update_listened",
]

_commit: Callable[[InstanceState[Any], dict[str, Any], Sequence[str]], None] | None
_commit = getattr(InstanceState, "_commit", None)
"""`InstanceState._commit(dict, keys)`: how SQLAlchemy marks attributes as holding
what the row holds (`set_committed_value` calls it for one attribute). Looked up once;
`commit_attributes` falls back to the public function without it."""
FAST_COMMIT = _commit is not None
"""Whether `commit_attributes` has SQLAlchemy's one-call path (else one call per name)."""


def loaded_values(entity: object) -> dict[str, Any]:
    """The instance's attribute values as the ORM holds them (its instance dict):
    writing here sets an attribute without events and without marking it changed."""
    values: dict[str, Any] = instance_dict(entity)
    return values


def pending_changes(entity: object) -> Collection[str]:
    """Names of the attributes assigned since the instance was loaded or last
    committed (the keys of `InstanceState.committed_state`), equal or not."""
    changed: Collection[str] = instance_state(entity).committed_state
    return changed


def has_pending_changes(entity: object) -> bool:
    """Whether any attribute was assigned since the last load or commit."""
    return bool(instance_state(entity).committed_state)


def net_changes(entity: object) -> list[str]:
    """Names of the attributes whose value differs from the committed one (an
    assignment of an equal value is no change)."""
    state = instance_state(entity)
    manager = state.manager
    values = state.dict
    changed = []
    for name, original in state.committed_state.items():
        attribute = manager.get(name)
        if attribute is None:  # pragma: no cover - committed_state names attributes
            continue
        current = values.get(name, NO_VALUE)
        if original is NO_VALUE or attribute.impl.is_equal(current, original) is not True:
            changed.append(name)
    return changed


def update_listened(mapper: Mapper[Any], own: int) -> bool:
    """Whether a flush's UPDATE of `mapper`'s rows calls listeners besides statekit's
    `own` `before_update` ones: a `before_update` beyond them, or an `after_update`."""
    dispatch = mapper.dispatch
    return len(dispatch.before_update) > own or len(dispatch.after_update) > 0


def flush_listened(session: Session, own: int) -> bool:
    """Whether `session`'s flushes call listeners besides statekit's `own`
    `before_flush` ones (its class's listeners included)."""
    dispatch = session.dispatch
    return (
        len(dispatch.before_flush) > own
        or len(dispatch.after_flush) > 0
        or len(dispatch.after_flush_postexec) > 0
    )


def commit_attributes(entity: object, names: Sequence[str]) -> None:
    """Tell the ORM attributes `names` now hold what the row holds (no pending
    change, nothing to flush): what `set_committed_value` does for one attribute
    whose value is already in place, done for all at once. When no other attribute
    is pending, the instance is clean for its Session (`InstanceState._commit_all`)."""
    state = instance_state(entity)
    if _commit is not None:
        _commit(state, state.dict, names)
    else:  # pragma: no cover - SQLAlchemy without _commit
        for name in names:
            set_committed_value(entity, name, getattr(entity, name))
    if state.modified and not state.committed_state:
        # Nothing else is pending: clear the "modified" flag too, as a flush would, so
        # the Session's commit does not run an empty flush (a tenth of a request).
        session = state.session
        state._commit_all(state.dict, None if session is None else session.identity_map)


def new_detached(
    mapper: Mapper[Any], values: Iterable[tuple[str, Any]], identity: Sequence[str]
) -> Any:
    """A detached, persistent-looking instance of `mapper`'s class holding `values`
    (attribute name, value), with the identity key of the `identity` attributes:
    what `make_transient_to_detached` gives a fully loaded instance, without
    `__init__`, events or a Session."""
    entity = mapper.class_manager.new_instance()
    state = instance_state(entity)
    loaded = state.dict
    loaded.update(values)
    key = tuple(loaded[name] for name in identity)
    state.key = mapper.identity_key_from_primary_key(key)
    return entity


def set_listened(entity_class: type, names: Iterable[str]) -> bool:
    """Whether the application listens to assignments of any of the attributes
    `names` (a "set" event listener, or `@validates`, which is one), or one of them
    is not an instrumented attribute at all."""
    manager: Any = manager_of_class(entity_class)
    return any(name not in manager or bool(manager[name].dispatch.set) for name in names)


def engine_listened(engine: Engine, events: Iterable[str], *, besides: object = None) -> bool:
    """Whether a listener other than `besides` is registered for one of `events` on
    `engine` (or on the engine it was derived from), or for the dialect's
    "handle_error"."""
    return engine_listener(engine, events, besides=besides) is not None


def engine_listener(engine: Engine, events: Iterable[str], *, besides: object = None) -> str | None:
    """The first listener `engine_listened` finds, described for a person, or None."""
    if engine.dialect.dispatch.handle_error:
        return "a 'handle_error' listener on the dialect"
    dispatch: Any = engine.dispatch
    for name in events:
        for listener in getattr(dispatch, name):
            if listener is not besides:
                return f"a {name!r} listener ({getattr(listener, '__qualname__', listener)})"
    return None


def compiled_parameters(
    compiled: Any, names: Sequence[str]
) -> tuple[tuple[str, ...], Mapping[str, Any], set[str]]:
    """What a compiled statement's parameters are: their names in the order the
    DBAPI takes them (the compiler's own order for a positional paramstyle, else
    `names`), the bound parameter objects by name, and the names of every bound
    parameter SQLAlchemy rendered (to find ones it added itself)."""
    order = tuple(compiled.positiontup) if compiled.positional else tuple(names)
    return order, compiled.binds, set(compiled.bind_names.values())


def mapped_state(entity: object) -> InstanceState[Any] | None:
    """The instance's `InstanceState` (its `info` and `session` are public), or None
    when `entity` is not an instance of a mapped class; one lookup where a fire needs
    both."""
    try:
        return instance_state(entity)
    except AttributeError:
        return None


def instance_info(entity: object) -> dict[str, Any] | None:
    """The instance's `InstanceState.info` (SQLAlchemy's per-instance dict for user
    data, made on first use), or None when `entity` is not an instance of a mapped
    class. Read through the state attribute rather than `inspect()`: a fire asks once."""
    try:
        state = instance_state(entity)
    except AttributeError:
        return None
    info: dict[str, Any] = state.info
    return info
