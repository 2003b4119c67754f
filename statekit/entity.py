"""`StatefulObject`: an optional base for plain-Python entities."""

from __future__ import annotations

from datetime import datetime

__all__ = ["StatefulObject"]


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
