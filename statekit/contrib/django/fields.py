"""Column types shared with the SQLAlchemy store's tables (`statekit_tables()`).

Django's own `DateTimeField` is `timestamp with time zone` on PostgreSQL and its
`JSONField` is `jsonb`; the SQLAlchemy tables use `timestamp` (naive UTC) and `json`.
These fields give the Django models the very same column types, so one database can
be served by both stores, and a team can move between them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

from statekit.errors import StoreError

__all__ = [
    "ExactCharField",
    "IdentityField",
    "NamedIndex",
    "PlainJSONField",
    "PlainTextField",
    "UTCDateTimeField",
]

if TYPE_CHECKING:  # django-stubs makes the fields generic; Django's classes are not
    CharFieldBase = models.CharField[Any, Any]
    DateTimeFieldBase = models.DateTimeField[Any, Any]
    FieldBase = models.Field[Any, Any]
    BigIntegerBase = models.BigIntegerField[Any, Any]
    TextFieldBase = models.TextField[Any, Any]
else:
    CharFieldBase, DateTimeFieldBase, FieldBase, BigIntegerBase, TextFieldBase = (
        models.CharField,
        models.DateTimeField,
        models.Field,
        models.BigIntegerField,
        models.TextField,
    )

EXACT_COLLATION = "utf8mb4_bin"
"""The collation of the name and key columns on MySQL and MariaDB (as the SQL store's)."""


class ExactCharField(CharFieldBase):
    """A VARCHAR compared byte for byte on every database: 'ABC' and 'abc' differ.
    SQLite and PostgreSQL compare so already; MySQL and MariaDB get `utf8mb4_bin`."""

    def db_parameters(self, connection: BaseDatabaseWrapper) -> dict[str, Any]:
        params = super().db_parameters(connection)
        if connection.vendor == "mysql":
            params["collation"] = EXACT_COLLATION
        return params


class IdentityField(BigIntegerBase):
    """A BIGINT that is INTEGER on SQLite (the outbox ids: the SQL store's identity
    type, whose SQLite variant is the table's rowid type)."""

    def db_type(self, connection: BaseDatabaseWrapper) -> str | None:
        if connection.vendor == "sqlite":
            return "integer"
        return super().db_type(connection)


class PlainTextField(TextFieldBase):
    """TEXT on every database (Django's `TextField` is LONGTEXT on MySQL and MariaDB)."""

    def db_type(self, connection: BaseDatabaseWrapper) -> str | None:
        if connection.vendor == "mysql":
            return "text"
        return super().db_type(connection)


class UTCDateTimeField(DateTimeFieldBase):
    """Aware datetimes stored as naive UTC with microseconds: `timestamp` on
    PostgreSQL, `datetime(6)` on MySQL and MariaDB, text on SQLite (in the SQL
    store's format); read back aware in UTC whatever `USE_TZ` says."""

    def db_type(self, connection: BaseDatabaseWrapper) -> str:
        if connection.vendor == "postgresql":
            return "timestamp"
        if connection.vendor == "mysql":
            return "datetime(6)"
        if connection.vendor == "sqlite":
            return "datetime"
        return str(super().db_type(connection))

    def get_prep_value(self, value: Any) -> Any:
        return value  # no naive-datetime warning: get_db_prep_value refuses those

    def get_db_prep_value(
        self, value: Any, connection: BaseDatabaseWrapper, prepared: bool = False
    ) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise StoreError(f"statekit stores aware datetimes only, got {value!r}")
        naive = value.astimezone(UTC).replace(tzinfo=None)
        if connection.vendor == "postgresql":
            return naive
        return naive.isoformat(" ", "microseconds")

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]

    def get_internal_type(self) -> str:
        return "UTCDateTimeField"  # no backend converter: from_db_value reads the value


class PlainJSONField(FieldBase):
    """A `json` column (not PostgreSQL's `jsonb`), holding a JSON object or null."""

    def db_type(self, connection: BaseDatabaseWrapper) -> str:
        return "json"

    def get_db_prep_value(
        self, value: Any, connection: BaseDatabaseWrapper, prepared: bool = False
    ) -> Any:
        return None if value is None else json.dumps(value)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if isinstance(value, (str, bytes)):
            return json.loads(value)
        return value

    def get_internal_type(self) -> str:
        return "PlainJSONField"


class NamedIndex(models.Index):
    """An index whose name may be as long as PostgreSQL allows (63 bytes): statekit's
    index names are those of the SQL store's tables, some over Django's portable 30."""

    max_name_length = 63
