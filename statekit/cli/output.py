"""Text the CLI prints from the database, made safe for a terminal.

Actors, payload values, stuck reasons and errors come from whoever wrote them. A
control character in them (an escape sequence that sets the window title or the
clipboard, a carriage return that hides what came before, a bidirectional override)
is printed as a visible escape instead of reaching the terminal.
"""

from __future__ import annotations

import unicodedata

__all__ = ["printable"]


def printable(text: object) -> str:
    """`str(text)` with every control and format character written as an escape
    (``\\x1b``, ``\\n``, ``\\u202e``); other characters, including non-ASCII
    letters, are kept."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(
        _escape(char) if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") else char
        for char in value
    )


def _escape(char: str) -> str:
    code = ord(char)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if named is not None:
        return named
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
