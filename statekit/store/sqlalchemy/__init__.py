"""The SQLAlchemy store: `SQLAlchemyStore`, `StateMixin` and statekit's tables."""

from __future__ import annotations

from statekit.store.sqlalchemy.alembic import alembic_render_item
from statekit.store.sqlalchemy.mixin import StateMixin
from statekit.store.sqlalchemy.sqlite import configure_sqlite, sqlite_engine
from statekit.store.sqlalchemy.store import SQLAlchemyStore
from statekit.store.sqlalchemy.tables import StatekitTables, UTCDateTime, statekit_tables

__all__ = [
    "SQLAlchemyStore",
    "StateMixin",
    "StatekitTables",
    "UTCDateTime",
    "alembic_render_item",
    "configure_sqlite",
    "sqlite_engine",
    "statekit_tables",
]
