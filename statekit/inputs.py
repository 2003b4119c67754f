"""What a `Runner` refuses before anything runs or is written: values that cannot be
an entity, and keys and labels (idempotency key, actor, correlation id) that
statekit's history cannot hold alike on every database."""

from __future__ import annotations

from statekit.errors import InvalidArgumentTypeError, UnstorableTextError
from statekit.limits import KEY_MAX, LABEL_MAX, check_label_text, unstorable_text
from statekit.quoting import bounded_repr

__all__ = ["NOT_ENTITIES", "check_entity", "check_key", "check_labels", "fits"]

NOT_ENTITIES = (str, bytes, bytearray, int, float, complex, list, tuple, dict, set, frozenset)
"""Values that are never an entity: `start` refuses them by type."""


def fits(label: str, limit: int) -> bool:
    """Whether `fire` stores `label` as it is: short enough, and text every database
    holds alike (`unstorable_text`); cheap for the usual short ASCII label."""
    return (
        type(label) is str
        and len(label) <= limit
        and "\x00" not in label
        and (label.isascii() or not unstorable_text(label))
    )


def check_entity(name: str, entity: object) -> None:
    """Refuse what cannot be an entity (text, numbers, collections) with an
    argument error rather than the AttributeError reading its key would raise."""
    if entity is None or isinstance(entity, NOT_ENTITIES):
        raise InvalidArgumentTypeError(
            "entity",
            entity,
            f"an object holding a {name}'s fields (its state attributes)",
        )


def check_key(name: str, key: str | None) -> None:
    """Refuse a key longer than statekit's history can hold, before anything is
    written (a database would refuse it later, SQLite would store it whole)."""
    if key is not None and len(key) > KEY_MAX:
        raise UnstorableTextError(
            "key",
            key,
            f"text of at most {KEY_MAX} characters",
            message=f"cannot store a {name} with a key of {len(key)} "
            f"characters; keys are at most {KEY_MAX} (statekit.limits.KEY_MAX)",
        )
    reason = None if key is None else unstorable_text(key)
    if reason is not None:
        raise UnstorableTextError(
            "key",
            key,
            "text with no NUL and no lone surrogate",
            message=f"cannot store a {name} with the key {bounded_repr(key)}: it {reason}",
        )


def check_labels(
    name: str,
    key: str,
    event: str,
    idempotency_key: str | None,
    actor: str | None,
    correlation_id: str | None,
) -> None:
    for what, value, limit in (
        ("idempotency key", idempotency_key, KEY_MAX),
        ("actor", actor, LABEL_MAX),
        ("correlation id", correlation_id, LABEL_MAX),
    ):
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidArgumentTypeError(what.replace(" ", "_"), value, "text (a str) or None")
        check_label_text(what, value, limit, lambda: f"fire {event!r} on {name} {key}")
