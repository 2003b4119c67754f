"""Stores persist what the engine decides; `Store` is the protocol they implement."""

from __future__ import annotations

from statekit.store.base import Store
from statekit.store.memory import MemoryStore

__all__ = ["MemoryStore", "Store"]
