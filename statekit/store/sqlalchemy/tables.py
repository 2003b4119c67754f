"""statekit's own tables, attachable to the application's MetaData.

Constraint and index names are explicit: error mapping and migrations key on them.

The live tables hold the current life of each key. When a key is given to a new
entity (`SQLAlchemyStore.create`) or an instance is deleted keeping its history, the
rows of the key's previous life move to the `statekit_retired_*` tables: kept for
audit, never read by the live queries, and out of the live unique constraints.
Column widths come from `statekit.limits`, which definitions are validated against.
Names, keys and idempotency keys compare exactly on every database: on MySQL and
MariaDB those columns use the `utf8mb4_bin` collation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeDecorator

from statekit.limits import HANDLER_NAME_MAX, KEY_MAX, LABEL_MAX, NAME_MAX
from statekit.store.sqlalchemy.dialects import of_dialect

__all__ = [
    "EXACT_COLLATION",
    "HISTORY_IDEMPOTENCY_CONSTRAINT",
    "HISTORY_SEQ_CONSTRAINT",
    "StatekitTables",
    "UTCDateTime",
    "statekit_tables",
]

HISTORY_TABLE = "statekit_transitions"
HISTORY_SEQ_CONSTRAINT = "pk_statekit_transitions"
HISTORY_IDEMPOTENCY_CONSTRAINT = "uq_statekit_transitions_idempotency"
COMPENSATIONS_TABLE = "statekit_compensations"
ATTEMPTS_TABLE = "statekit_compensation_attempts"
COMPENSATION_STEP_CONSTRAINT = "uq_statekit_compensations_step"
RETIRED_PREFIX = "statekit_retired_"
EXACT_COLLATION = "utf8mb4_bin"
"""The collation of statekit's name and key columns on MySQL and MariaDB."""


def exact_string(length: int) -> String:
    """A VARCHAR compared byte for byte: 'ABC' and 'abc' differ on every database
    (SQLite and PostgreSQL compare so by default; MySQL and MariaDB need a binary
    collation)."""
    binary = mysql.VARCHAR(length, charset="utf8mb4", collation=EXACT_COLLATION)
    return String(length).with_variant(binary, "mysql", "mariadb")


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as naive UTC with microseconds; returns aware UTC.

    SQLite and MariaDB have no time zone type, and MariaDB's DATETIME drops
    fractions of a second unless asked for them.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if of_dialect(dialect).fractional_datetime:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"statekit stores aware datetimes only, got naive {value!r}")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class StatekitTables:
    """The statekit tables of one MetaData."""

    metadata: MetaData
    transitions: Table
    compensations: Table
    attempts: Table
    retired_transitions: Table
    retired_compensations: Table
    retired_attempts: Table

    @property
    def all(self) -> tuple[Table, ...]:
        """Every statekit table, in creation order."""
        return (
            self.transitions,
            self.compensations,
            self.attempts,
            self.retired_transitions,
            self.retired_compensations,
            self.retired_attempts,
        )

    def retired(self, live: Table) -> Table:
        """The table that keeps `live`'s rows of earlier lives."""
        return self.metadata.tables[RETIRED_PREFIX + live.name.removeprefix("statekit_")]


def statekit_tables(metadata: MetaData | None = None) -> StatekitTables:
    """Define (or return the already defined) statekit tables on `metadata`.

    Pass the application's MetaData so its migrations (Alembic autogenerate) own
    the tables; without one, a private MetaData is used.
    """
    metadata = metadata if metadata is not None else MetaData()
    if HISTORY_TABLE not in metadata.tables:
        _define(metadata)
    live = [metadata.tables[name] for name in (HISTORY_TABLE, COMPENSATIONS_TABLE, ATTEMPTS_TABLE)]
    retired = [metadata.tables[RETIRED_PREFIX + t.name.removeprefix("statekit_")] for t in live]
    return StatekitTables(metadata, *live, *retired)


def _define(metadata: MetaData) -> None:
    transitions = Table(
        HISTORY_TABLE,
        metadata,
        Column("entity_type", exact_string(NAME_MAX), nullable=False),
        Column("entity_key", exact_string(KEY_MAX), nullable=False),
        Column("seq", Integer, nullable=False),
        Column("event", String(NAME_MAX), nullable=False),
        Column("source", String(NAME_MAX), nullable=False),
        Column("target", String(NAME_MAX), nullable=False),
        Column("at", UTCDateTime(), nullable=False),
        Column("actor", String(LABEL_MAX)),
        Column("correlation_id", String(LABEL_MAX)),
        Column("idempotency_key", exact_string(KEY_MAX)),
        Column("payload", JSON()),
        Column("definition_version", Integer),
        Column("note", Text()),
        PrimaryKeyConstraint("entity_type", "entity_key", "seq", name=HISTORY_SEQ_CONSTRAINT),
        UniqueConstraint(
            "entity_type", "entity_key", "idempotency_key", name=HISTORY_IDEMPOTENCY_CONSTRAINT
        ),
        Index("ix_statekit_transitions_at", "entity_type", "at"),
        comment="One row per applied statekit transition; seq is the entity's new version.",
    )
    identity = BigInteger().with_variant(Integer(), "sqlite")
    compensations = Table(
        COMPENSATIONS_TABLE,
        metadata,
        Column("id", identity, primary_key=True, autoincrement=True),
        Column("entity_type", exact_string(NAME_MAX), nullable=False),
        Column("entity_key", exact_string(KEY_MAX), nullable=False),
        Column("step_seq", Integer, nullable=False),
        Column("action", String(HANDLER_NAME_MAX), nullable=False),
        Column("event", String(NAME_MAX), nullable=False),
        Column("status", String(16), nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("max_attempts", Integer, nullable=False),
        Column("next_attempt_at", UTCDateTime(), nullable=False),
        Column("lease_until", UTCDateTime()),
        Column("claim_token", String(32)),
        Column("last_error", Text()),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
        UniqueConstraint(
            "entity_type", "entity_key", "step_seq", "action", name=COMPENSATION_STEP_CONSTRAINT
        ),
        # The step constraint's index also serves lookups by instance.
        Index("ix_statekit_compensations_due", "status", "next_attempt_at"),
        comment="The compensation outbox: one row per step to undo.",
    )
    attempts = Table(
        ATTEMPTS_TABLE,
        metadata,
        Column("compensation_id", identity, nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("at", UTCDateTime(), nullable=False),
        Column("succeeded", Boolean(), nullable=False),
        Column("error", Text()),
        PrimaryKeyConstraint(
            "compensation_id", "attempt", name="pk_statekit_compensation_attempts"
        ),
        comment="Every attempt at a compensation, with its error.",
    )
    for live in (transitions, compensations, attempts):
        _retired_twin(live, identity)


def _retired_twin(live: Table, identity: Any) -> Table:
    """The audit table of `live`'s earlier lives: the same columns without their
    constraints, plus when they were retired and a surrogate key."""
    name = RETIRED_PREFIX + live.name.removeprefix("statekit_")
    columns = [Column(c.name, c.type, nullable=c.nullable) for c in live.columns]
    lookup = ("entity_type", "entity_key") if "entity_key" in live.c else ("compensation_id",)
    return Table(
        name,
        live.metadata,
        Column("retired_id", identity, primary_key=True, autoincrement=True),
        Column("retired_at", UTCDateTime(), nullable=False),
        *columns,
        Index(f"ix_{name}_key", *lookup),
        comment=f"Rows of {live.name} from earlier lives of their keys, kept for audit.",
    )
