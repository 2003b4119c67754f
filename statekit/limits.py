"""What a definition may declare so that everything it names fits statekit's tables.

`statekit.store.sqlalchemy.tables` sizes its columns from these constants, and
`MachineSpec` refuses a definition that exceeds them, so a definition that
validates can always be stored. It also says which texts every database holds alike
(`unstorable_text`), for the checks made before anything is written (standard library
and `statekit.errors` only).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from statekit.errors import InvalidArgumentTypeError, UnstorableTextError

__all__ = [
    "HANDLER_NAME_MAX",
    "INT_MAX",
    "KEY_MAX",
    "LABEL_MAX",
    "NAME_MAX",
    "TIMEOUT_MAX",
    "check_label_text",
    "check_lever_text",
    "held_alike",
    "unstorable_text",
]

NAME_MAX = 64
"""Longest machine, state or event name (the entity type, event, source, target and
state columns)."""

HANDLER_NAME_MAX = 128
"""Longest guard, condition, action, effect, compensation or payload model name (the
compensation outbox's action column)."""

KEY_MAX = 128
"""Longest entity key or idempotency key, as text (the history's key columns)."""

LABEL_MAX = 128
"""Longest actor or correlation id of a transition (the history's columns)."""

INT_MAX = 2**31 - 1
"""Largest definition version or compensation attempt count (32-bit INTEGER columns)."""

TIMEOUT_MAX = timedelta(days=36_525)
"""Longest state timeout: 100 years, so that a deadline always fits a datetime."""


def unstorable_text(text: str) -> str | None:
    """Why no database of statekit's holds `text` alike, or None when they all do: a
    NUL character (PostgreSQL refuses it in text; SQLite and MariaDB keep it) or a lone
    surrogate (not Unicode text, so no driver can encode it)."""
    if "\x00" in text:
        return "contains a NUL character, which PostgreSQL cannot store"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"contains a lone surrogate (U+{ord(text[exc.start]):04X}), not Unicode text"
    return None


def held_alike(*texts: str | None) -> bool:
    """Whether every one of `texts` (None skipped) could be a stored key or label:
    a store's reads answer "none" for one that could not, on every database."""
    return all(t is None or unstorable_text(t) is None for t in texts)


def check_label_text(what: str, value: str, limit: int | None, doing: Callable[[], str]) -> None:
    """Refuse a label (an actor, key, note...) the history would not hold alike on
    every database: longer than `limit` (None: no limit), or with a NUL or a lone
    surrogate. The message reads "cannot {doing()}: its {what} ..." (`doing` is
    called only then: fires check their labels on every call), and the error's
    argument is `what` with underscores ("correlation_id").

    Raises:
        UnstorableTextError: naming the argument; nothing is written yet.
    """
    argument = what.replace(" ", "_")
    if limit is not None and len(value) > limit:
        raise UnstorableTextError(
            argument,
            value,
            f"text of at most {limit} characters",
            message=f"cannot {doing()}: its {what} has {len(value)} characters, "
            f"at most {limit} are stored",
        )
    reason = unstorable_text(value)
    if reason is not None:
        raise UnstorableTextError(
            argument,
            value,
            "text with no NUL and no lone surrogate",
            message=f"cannot {doing()}: its {what} {reason}",
        )


def check_lever_text(doing: str, /, **given: object) -> None:
    """Refuse a lever's actor, note or reason that the history would not hold alike on
    every database: not text, an actor longer than its column, or a NUL or lone
    surrogate (before anything is written). `doing` opens the message ("resolve
    order 42").

    Raises:
        InvalidArgumentTypeError: A value is not text.
        UnstorableTextError: A value the history cannot hold (as a fire's actor is
            refused, `check_label_text`); both name the argument.
    """
    for argument, value in given.items():
        if not isinstance(value, str):
            raise InvalidArgumentTypeError(argument, value, "text (a str)")
        limit = LABEL_MAX if argument == "actor" else None
        check_label_text(argument, value, limit, lambda: doing)
