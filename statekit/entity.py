"""What statekit knows about entities, as opposed to machines.

An entity is any object with the state attributes `StateFields` names. This module
holds those names, the compiled writer that sets them (`attribute_writer`), the
save/restore pair that undoes what a transition's actions did to an entity
(`save_attributes`, `restore_attributes`), the framework bookkeeping both leave
alone (`FRAMEWORK_ATTRIBUTES`), and `StatefulObject`, an optional base class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from keyword import iskeyword
from typing import Any
from unicodedata import normalize

from statekit.errors import DefinitionMismatchError

__all__ = [
    "FRAMEWORK_ATTRIBUTES",
    "STATE_KEYS",
    "StateFields",
    "StateWriter",
    "StatefulObject",
    "attribute_writer",
    "check_version",
    "restore_attributes",
    "save_attributes",
]

StateWriter = Callable[..., None]
"""`write(entity, *values)`: sets an entity's seven state attributes, given in
`StateFields.state_attributes()` order."""

FRAMEWORK_ATTRIBUTES: tuple[str, ...] = ("_sa_",)
"""Prefixes of instance attributes that belong to an ORM's bookkeeping (SQLAlchemy's
`_sa_instance_state`): saving and restoring an entity leaves them alone."""

_MISSING = object()


@dataclass(frozen=True, slots=True)
class StateFields:
    """Names of the attributes on the entity that hold its machine state."""

    state: str = "state"
    version: str = "state_version"
    entered_at: str = "state_entered_at"
    deadline_at: str = "state_deadline_at"
    stuck_at: str = "stuck_at"
    stuck_reason: str = "stuck_reason"
    definition_version: str = "state_definition_version"
    key: str = "id"

    def state_attributes(self) -> tuple[str, ...]:
        """The entity's state attribute names, in `Snapshot` order (without the key)."""
        return tuple(getattr(self, name) for name in STATE_KEYS)


STATE_KEYS = (
    "state",
    "version",
    "entered_at",
    "deadline_at",
    "stuck_at",
    "stuck_reason",
    "definition_version",
)
"""The `StateFields` fields that name state columns, in `Snapshot` order."""


class StatefulObject:
    """Declares the default state attributes (see `StateFields`) as class defaults,
    so a plain object type-checks and reads as "not started" until `start()`."""

    state: str | None = None
    state_version: int = 0
    state_entered_at: datetime | None = None
    state_deadline_at: datetime | None = None
    stuck_at: datetime | None = None
    stuck_reason: str | None = None
    state_definition_version: int | None = None


def attribute_writer(names: Sequence[str]) -> StateWriter:
    """Build `write(entity, *values)`, which assigns `values` to the attributes
    `names` in order.

    The function is compiled from source with one plain attribute assignment per
    name, as `dataclasses` builds `__init__`: CPython runs those several times
    faster than the equivalent `setattr` calls, and every transition writes
    seven of them. Names that are not identifiers fall back to `setattr`.
    """
    if not all(_plain_name(name) for name in names):

        def write_each(entity: object, *values: Any) -> None:
            for name, value in zip(names, values, strict=True):
                setattr(entity, name, value)

        return write_each
    params = [f"value_{i}" for i in range(len(names))]
    body = "".join(f"    entity.{name} = {p}\n" for name, p in zip(names, params, strict=True))
    namespace: dict[str, Any] = {}
    exec(f"def write(entity, {', '.join(params)}):\n{body}", namespace)
    write: StateWriter = namespace["write"]
    return write


def _plain_name(name: str) -> bool:
    """Whether `entity.<name> = value` in source sets the attribute `name`: an
    identifier, not a keyword, and unchanged by the NFKC folding Python applies to
    identifiers in source."""
    return name.isidentifier() and not iskeyword(name) and normalize("NFKC", name) == name


def save_attributes(entity: object, fields: StateFields) -> dict[str, object]:
    """Save what `restore_attributes` needs to put `entity` back exactly: its instance
    attributes (lists, dicts and sets copied one level down), or for a slotted object
    its state attributes and every slot. ORM bookkeeping (`FRAMEWORK_ATTRIBUTES`) is
    left out."""
    try:
        state = vars(entity)
    except TypeError:  # slotted object: save the state attributes and every slot
        names: Sequence[str] = [*fields.state_attributes(), *_slot_names(type(entity))]
        return {"\0slots": True, **{n: getattr(entity, n, _MISSING) for n in names}}
    saved = {k: v for k, v in state.items() if not k.startswith(FRAMEWORK_ATTRIBUTES)}
    # Lists, dicts and sets are copied one level down, so an action that appends to a
    # list or sets a key is undone too (in place: the object keeps its identity).
    contents = {k: v.copy() for k, v in saved.items() if type(v) in _CONTAINERS}
    if contents:
        saved[_CONTENTS] = contents
    return saved


_CONTAINERS = (list, dict, set)
_CONTENTS = "\0contents"


def _slot_names(cls: type) -> list[str]:
    """Every slot declared along `cls`'s MRO (private names mangled as Python does)."""
    names: list[str] = []
    for klass in cls.__mro__:
        slots = vars(klass).get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot in ("__dict__", "__weakref__"):
                continue
            if slot.startswith("__") and not slot.endswith("__"):
                slot = f"_{klass.__name__.lstrip('_')}{slot}"
            names.append(slot)
    return names


def restore_attributes(entity: object, saved: dict[str, object]) -> None:
    """Put `entity` back as `save_attributes` saw it: attributes added since are
    removed, changed ones reset, containers refilled in place."""
    if "\0slots" in saved:
        for name, value in saved.items():
            if name == "\0slots":
                continue
            if value is _MISSING:
                if hasattr(entity, name):
                    delattr(entity, name)
            else:
                setattr(entity, name, value)
        return
    contents: dict[str, Any] = saved.pop(_CONTENTS, {})  # type: ignore[assignment]
    try:
        current = vars(entity)
        for name in [
            k for k in current if not k.startswith(FRAMEWORK_ATTRIBUTES) and k not in saved
        ]:
            delattr(entity, name)
        for name, value in saved.items():
            if current.get(name, _MISSING) is not value:
                setattr(entity, name, value)
        for name, copy in contents.items():
            original: Any = saved[name]
            if original != copy:
                if isinstance(original, list):
                    original[:] = copy
                else:
                    original.clear()
                    original.update(copy)
    finally:
        if contents:
            saved[_CONTENTS] = contents


def check_version(entity_type: str, key: str | None, version: object) -> None:
    """Refuse a stored state version no transition can follow: anything but a whole
    number from 0 up (None counts as 0, an entity not yet stored).

    Raises:
        DefinitionMismatchError: naming the entity and the version.
    """
    if version is None or (type(version) is int and version >= 0):
        return
    raise DefinitionMismatchError(
        entity_type=entity_type,
        key=key,
        field="state version",
        value=version,
        expected=(
            "a state version counts the instance's transitions, a whole number from 0 up; "
            "repair the row (its history has one row per version) before firing again"
        ),
    )
