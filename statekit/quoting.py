"""How statekit's messages quote what they were given: short and printable as it
is, anything else quoted and cut, so a huge or hostile input never makes a huge or
garbled message."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["bounded_repr", "entity_label", "names_listed", "shown"]


def entity_label(entity_type: str, key: str | None) -> str:
    """`order 42`: a key as it is when short and printable, else quoted and cut
    (`order 'a\\x00b'`), so a hostile key never makes a huge or garbled message."""
    if key is None:
        return entity_type
    text = str(key)
    if len(text) <= 60 and text.isprintable():
        return f"{entity_type} {text}"
    return f"{entity_type} {bounded_repr(text, 60)}"


def bounded_repr(value: object, limit: int = 40) -> str:
    """`repr(value)` cut to about `limit` characters: how errors quote text they were
    given, so a huge or hostile input never becomes a huge message (control
    characters come out escaped, as `repr` writes them)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def shown(value: object, limit: int = 60) -> str:
    """`repr(value)`, cut to about `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def names_listed(names: Iterable[str]) -> str:
    listed = ", ".join(names)
    return listed or "none"
