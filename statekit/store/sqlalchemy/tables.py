"""statekit's own tables, attachable to the application's MetaData.

Constraint and index names are explicit: error mapping and migrations key on them.

Every name (tables, constraints, indexes) starts with the store's prefix,
`statekit_` by default, and the tables may live in a schema: two applications
sharing a database keep apart by giving their stores different prefixes or schemas.

The live tables hold the current life of each key. When a key is given to a new
entity (`SQLAlchemyStore.create`) or an instance is deleted keeping its history, the
rows of the key's previous life move to the `statekit_retired_*` tables: kept for
audit, never read by the live queries, and out of the live unique constraints.
Column widths come from `statekit.limits`, which definitions are validated against.
Names, keys and idempotency keys compare exactly on every database: on MySQL and
MariaDB those columns use the `utf8mb4_bin` collation.
"""

from __future__ import annotations

import re
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
    literal_column,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeDecorator

from statekit.errors import InvalidArgumentError, StoreError
from statekit.limits import HANDLER_NAME_MAX, KEY_MAX, LABEL_MAX, NAME_MAX
from statekit.store.sqlalchemy.dialects import of_dialect, partial_index_kwargs

__all__ = [
    "DEFAULT_PREFIX",
    "EXACT_COLLATION",
    "HISTORY_IDEMPOTENCY_CONSTRAINT",
    "HISTORY_SEQ_CONSTRAINT",
    "PREFIX_MAX",
    "StatekitTables",
    "UTCDateTime",
    "statekit_tables",
]

HISTORY_TABLE = "statekit_transitions"
HISTORY_SEQ_CONSTRAINT = "pk_statekit_transitions"
HISTORY_IDEMPOTENCY_CONSTRAINT = "uq_statekit_transitions_idempotency"
DEFAULT_PREFIX = "statekit_"
PREFIX_MAX = 27
"""The longest table prefix: the longest name statekit derives from it
(`ix_<prefix>retired_compensation_attempts_key`) then fits PostgreSQL's 63 bytes."""
_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HISTORY_NAMES: set[str] = {HISTORY_TABLE}
_CONFLICT_NAMES: set[str] = {HISTORY_SEQ_CONSTRAINT, HISTORY_IDEMPOTENCY_CONSTRAINT}
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
            raise InvalidArgumentError(
                "datetime",
                value,
                "a timezone-aware datetime",
                message=(
                    f"statekit stores timezone-aware datetimes only, got naive "
                    f"{value.isoformat()} (give it a tzinfo, e.g. datetime.now(UTC))"
                ),
            )
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
        twins = {
            self.transitions: self.retired_transitions,
            self.compensations: self.retired_compensations,
            self.attempts: self.retired_attempts,
        }
        return twins[live]


def statekit_tables(
    metadata: MetaData | None = None, *, prefix: str = DEFAULT_PREFIX, schema: str | None = None
) -> StatekitTables:
    """Define (or return the already defined) statekit tables on `metadata`.

    Pass the application's MetaData so its migrations (Alembic autogenerate) own
    the tables; without one, a private MetaData is used. `prefix` starts every
    table, constraint and index name (`<prefix>transitions`, ...); `schema` puts
    the tables in that schema (on MySQL and MariaDB: that database).

    Raises:
        StoreError: `prefix` is not a letter or underscore followed by letters,
            digits and underscores, or is longer than `PREFIX_MAX`.
    """
    if not _PREFIX.fullmatch(prefix) or len(prefix) > PREFIX_MAX:
        raise StoreError(
            f"table prefix {prefix!r} is not allowed: use letters, digits and underscores "
            f"(not a digit first), at most {PREFIX_MAX} characters, e.g. 'app_statekit_'"
        )
    metadata = metadata if metadata is not None else MetaData()
    names = [prefix + base for base in ("transitions", "compensations", "compensation_attempts")]
    names += [f"{prefix}retired_{base.removeprefix(prefix)}" for base in names]
    keys = [name if schema is None else f"{schema}.{name}" for name in names]
    if keys[0] not in metadata.tables:
        _define(metadata, prefix, schema)
    return StatekitTables(metadata, *(metadata.tables[key] for key in keys))


def conflict_constraints() -> frozenset[str]:
    """The names of the history constraints a lost race violates, for every prefix
    defined in this process (error mapping keys on them)."""
    return frozenset(_CONFLICT_NAMES)


def history_tables() -> frozenset[str]:
    """The names of the history tables defined in this process, for every prefix."""
    return frozenset(_HISTORY_NAMES)


def _define(metadata: MetaData, prefix: str, schema: str | None) -> None:
    history = f"{prefix}transitions"
    seq, idempotency = f"pk_{history}", f"uq_{history}_idempotency"
    _HISTORY_NAMES.add(history)
    _CONFLICT_NAMES.update((seq, idempotency))
    transitions = Table(
        history,
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
        # No payload is SQL NULL (as DjangoStore writes it), not the JSON text 'null':
        # nothing to serialize for most transitions.
        Column("payload", JSON(none_as_null=True)),
        Column("definition_version", Integer),
        Column("note", Text()),
        PrimaryKeyConstraint("entity_type", "entity_key", "seq", name=seq),
        UniqueConstraint("entity_type", "entity_key", "idempotency_key", name=idempotency),
        Index(f"ix_{history}_at", "entity_type", "at"),
        schema=schema,
        comment="One row per applied statekit transition; seq is the entity's new version.",
    )
    identity = BigInteger().with_variant(Integer(), "sqlite")
    compensations = Table(
        f"{prefix}compensations",
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
            "entity_type", "entity_key", "step_seq", "action", name=f"uq_{prefix}compensations_step"
        ),
        # The step constraint's index also serves lookups by instance.
        schema=schema,
        comment="The compensation outbox: one row per step to undo.",
    )
    _due_indexes(compensations, prefix)
    attempts = Table(
        f"{prefix}compensation_attempts",
        metadata,
        Column("compensation_id", identity, nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("at", UTCDateTime(), nullable=False),
        Column("succeeded", Boolean(), nullable=False),
        Column("error", Text()),
        PrimaryKeyConstraint(
            "compensation_id", "attempt", name=f"pk_{prefix}compensation_attempts"
        ),
        schema=schema,
        comment="Every attempt at a compensation, with its error.",
    )
    for live in (transitions, compensations, attempts):
        _retired_twin(live, identity, prefix)


def _due_indexes(compensations: Table, prefix: str) -> None:
    """The sweeper's indexes on the outbox, one per way of being due (see
    `outbox.compensation_due`): pending rows by next attempt, running rows by lease.
    Partial where the database has partial indexes, so they hold open rows only and
    their size follows due work, not the done rows of history; elsewhere the leading
    status column keeps each lookup to the rows of its status."""
    c = compensations.c
    for name, status, moment in (
        ("due", "pending", c.next_attempt_at),
        ("lease", "running", c.lease_until),
    ):
        Index(
            f"ix_{prefix}compensations_{name}",
            c.status,
            moment,
            **partial_index_kwargs(c.status == literal_column(f"'{status}'")),
        )


def _retired_twin(live: Table, identity: Any, prefix: str) -> Table:
    """The audit table of `live`'s earlier lives: the same columns without their
    constraints, plus when they were retired and a surrogate key."""
    name = f"{prefix}retired_{live.name.removeprefix(prefix)}"
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
        schema=live.schema,
    )
