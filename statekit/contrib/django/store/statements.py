"""The two statements of every transition, sent on Django's connection without the
ORM's per-call query building: the compare-and-set UPDATE and the history INSERT.

They are the statements `filter(pk=..., state_version=v).update(...)` and
`Transition.objects.create(...)` send, built from the models' field definitions
(column names quoted by the backend, every value prepared by its field's
`get_db_prep_save`, as the ORM prepares it), on the alias's cursor: the same
connection and transaction as the rest of the unit, the database's errors turned
into Django's (`IntegrityError`, ...) as the ORM's are. Building a query through the
QuerySet API costs more than the statement itself on SQLite, so a transition skips it.
On PostgreSQL the two are sent as one statement (`transition`): a round trip less.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from django.db import connections, models

from statekit.contrib.django.models import Transition

__all__ = ["direct", "insert_transition", "load_locked", "transition"]

_LOADERS = "_statekit_loaders"
"""Where a connection keeps its loaders (SQL and converters per model)."""


@cache
def direct(model: type[models.Model]) -> bool:
    """Whether the model's rows can be read and written with these statements: one
    table (no multi-table inheritance), a single-column key, and a default manager
    that hides no rows (otherwise the store goes through the QuerySet API)."""
    meta = model._meta
    if meta.parents or getattr(meta.pk, "column", None) is None:
        return False
    if any(getattr(field, "column", None) is None for field in meta.concrete_fields):
        return False
    return not model._default_manager.all().query.where


@cache
def _fields(model: type[models.Model]) -> dict[str, models.Field[Any, Any]]:
    """The model's concrete fields with a column, by attribute name."""
    return {
        field.attname: field
        for field in model._meta.concrete_fields
        if getattr(field, "column", None) is not None
    }


def _compare_and_set(
    connection: Any,
    model: type[models.Model],
    pk: Any,
    expected: Mapping[str, Any],
    values: Mapping[str, Any],
) -> tuple[str, list[Any]]:
    """`UPDATE <table> SET <values> WHERE <pk> = pk AND <field> = <value> ...` for
    each of the `expected` fields (the version and the state), and its parameters.
    `expected` and `values` are by attribute name."""
    quote = connection.ops.quote_name
    fields = _fields(model)
    meta = model._meta
    assignments, params = [], []
    for name, value in values.items():
        field = fields[name]
        assignments.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_save(value, connection))
    conditions = [f"{quote(meta.pk.column)} = %s"]
    params.append(meta.pk.get_db_prep_value(pk, connection))
    for name, value in expected.items():
        field = fields[name]
        conditions.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_value(value, connection))
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} "
        f"WHERE {' AND '.join(conditions)}"
    )
    return sql, params


@cache
def _insert_sql(vendor: str, quoted: tuple[str, ...]) -> str:
    return (
        f"INSERT INTO {quoted[0]} ({', '.join(quoted[1:])}) "
        f"VALUES ({', '.join(['%s'] * (len(quoted) - 1))})"
    )


@cache
def _insert_moved_sql(vendor: str, quoted: tuple[str, ...]) -> str:
    """The history INSERT of `transition`'s one statement: one row per row the
    `statekit_moved` CTE returned."""
    return (
        f"INSERT INTO {quoted[0]} ({', '.join(quoted[1:])}) "
        f"SELECT {', '.join(['%s'] * (len(quoted) - 1))} FROM statekit_moved"
    )


def _history(connection: Any, values: Mapping[str, Any]) -> tuple[tuple[str, ...], list[Any]]:
    """The quoted table and columns of the history row, and its parameters: columns
    missing from `values` take their field's default (NULL for the optional ones)."""
    quote = connection.ops.quote_name
    fields = _fields(Transition)
    quoted = (quote(Transition._meta.db_table), *(quote(f.column) for f in fields.values()))
    params = [
        field.get_db_prep_save(values[name] if name in values else field.get_default(), connection)
        for name, field in fields.items()
    ]
    return quoted, params


def insert_transition(db: str, values: Mapping[str, Any]) -> None:
    """Insert one history row on database `db`; columns missing from `values` take
    their field's default (NULL for the optional ones)."""
    connection = connections[db]
    quoted, params = _history(connection, values)
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(connection.vendor, quoted), params)


def transition(
    db: str,
    model: type[models.Model],
    pk: Any,
    expected: Mapping[str, Any],
    values: Mapping[str, Any],
    history: Mapping[str, Any],
) -> int:
    """The compare-and-set UPDATE of the row with key `pk` (still at the `expected`
    version and state? then set `values`) on database `db` and, if it matched, the
    INSERT of the history row `history`; the number of rows that moved (0 or 1).

    On PostgreSQL both are one statement, the UPDATE a data-modifying CTE that returns
    a row only if it matched: `WITH statekit_moved AS (UPDATE ... RETURNING 1) INSERT
    INTO statekit_transitions (...) SELECT ... FROM statekit_moved`, whose row count
    is the UPDATE's; elsewhere they are two statements."""
    connection = connections[db]
    update, params = _compare_and_set(connection, model, pk, expected, values)
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(update, params)
            updated = int(cursor.rowcount)
        if updated:
            insert_transition(db, history)
        return updated
    quoted, inserted = _history(connection, history)
    sql = (
        f"WITH statekit_moved AS ({update} RETURNING 1) "
        f"{_insert_moved_sql(connection.vendor, quoted)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *inserted])
        return int(cursor.rowcount)


def load_locked(db: str, model: type[models.Model], pk: Any) -> models.Model | None:
    """The row with key `pk` as a model instance (through `model.from_db`, as the ORM
    builds it), locked `FOR UPDATE` where the database has row locks; None if there is
    none. Only for `direct` models."""
    connection = connections[db]
    loaders: dict[type[models.Model], tuple[str, list[str], list[Any]]]
    loaders = connection.__dict__.setdefault(_LOADERS, {})
    if model not in loaders:
        loaders[model] = _loader(connection, model)
    sql, names, converters = loaders[model]
    key = model._meta.pk.get_db_prep_value(pk, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, [key])
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    for index, field, functions in converters:
        value = values[index]
        for function in functions:
            value = function(value, field, connection)
        values[index] = value
    return model.from_db(db, names, values)


def _loader(connection: Any, model: type[models.Model]) -> tuple[str, list[str], list[Any]]:
    """The SELECT of one row by key, the attribute names of its columns, and the
    converters of each column (the backend's, then the field's), as the ORM's
    compiler applies them."""
    meta = model._meta
    quote = connection.ops.quote_name
    fields = list(meta.concrete_fields)
    table = quote(meta.db_table)
    sql = (
        f"SELECT {', '.join(f'{table}.{quote(f.column)}' for f in fields)} FROM {table} "
        f"WHERE {table}.{quote(meta.pk.column)} = %s"
    )
    if connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    converters = []
    for index, field in enumerate(fields):
        column = field.get_col(meta.db_table)
        functions = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if functions:
            converters.append((index, column, functions))
    return sql, [f.attname for f in fields], converters
