"""By-key fires, and writes for detached entities, on the DBAPI connection.

`Runner.fire_by_key` loads one row, decides, and writes one transition. Sent through
SQLAlchemy's `Connection`, each statement costs more Python than SQLite takes to run
it. For the stdlib `sqlite3` driver and psycopg 3, statekit compiles its statements
once with SQLAlchemy (so quoting, schemas and the columns' types are SQLAlchemy's)
and sends them on the pooled DBAPI connection, running the columns' own bind and
result processors:

- SQLite: BEGIN IMMEDIATE; SELECT; compare-and-set UPDATE; history INSERT; COMMIT.
- PostgreSQL: the SELECT in autocommit, then one statement that commits by itself:
  the compare-and-set UPDATE in a WITH clause feeding the history INSERT. Two round
  trips instead of five; both rows are written or neither, and zero rows inserted
  means the version predicate failed.

Columns that actions changed go into the same UPDATE. `apply_detached` writes a
transition of an entity in no transaction the same way, without the SELECT.
SQLAlchemy's events and echo
do not see these statements, so `driver_path_allowed` keeps the `Connection` path
for an engine that is watched; the statements are logged on `statekit.sql` at DEBUG.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Engine, Table, bindparam, insert, literal_column, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.pool import SingletonThreadPool, StaticPool
from sqlalchemy.sql.expression import ClauseElement

from statekit.errors import InstanceNotFoundError, StoreError
from statekit.records import Plan, TransitionRecord
from statekit.store.sqlalchemy.binding import COMPARE_AND_SET_PARAMS, EntityBinding
from statekit.store.sqlalchemy.dialects import capabilities, of_dialect
from statekit.store.sqlalchemy.errors import wrap
from statekit.store.sqlalchemy.history import INSERT_COLUMNS, history_row
from statekit.store.sqlalchemy.orm import compiled_parameters, engine_listener, pending_changes
from statekit.store.sqlalchemy.sqlite import OWN_BEGIN_LISTENER

__all__ = [
    "DriverConnection",
    "DriverFiring",
    "DriverPath",
    "Unsupported",
    "apply_detached",
    "driver_connection",
    "driver_path_allowed",
    "supports_driver_path",
]

logger = logging.getLogger("statekit.sql")  # the statements sent, at DEBUG
notes = logging.getLogger("statekit")

# Engine events that would miss statements sent on the DBAPI connection. "begin"
# counts too, except statekit's own SQLite listener (see sqlite.py).
_WATCHED_EVENTS = (
    "before_execute",
    "after_execute",
    "before_cursor_execute",
    "after_cursor_execute",
    "engine_connect",
    "begin",
    "commit",
    "rollback",
)


def supports_driver_path(engine: Engine) -> bool:
    """Whether statekit can send by-key fires on `engine`'s DBAPI connections: the
    driver allows it, and the pool gives each checkout a connection of its own (an
    in-memory SQLite database shares one per thread, which the reads a fire makes
    must then share with its unit, as SQLAlchemy's `Connection` path does)."""
    if isinstance(engine.pool, SingletonThreadPool | StaticPool):
        return False
    return capabilities(engine).driver_path


def driver_path_allowed(engine: Engine) -> bool:
    """Whether nobody watches `engine`'s statements: no execution, transaction or
    error listeners besides statekit's, echo off, and no execution options (a
    schema translate map, for one, is applied only by SQLAlchemy's `Connection`)."""
    return watcher(engine) is None


def watcher(engine: Engine) -> str | None:
    """What watches `engine`'s statements (so the driver path is off), or None."""
    if engine.logger.isEnabledFor(logging.INFO):
        return "statement logging is on (echo, or the sqlalchemy.engine logger at INFO)"
    if engine.get_execution_options():
        return f"the engine has execution options ({', '.join(engine.get_execution_options())})"
    own = getattr(engine, OWN_BEGIN_LISTENER, None)
    return engine_listener(engine, _WATCHED_EVENTS, besides=own)


class Unsupported(Exception):  # noqa: N818 - internal signal, the store falls back
    """The statements of an entity class cannot go on the DBAPI connection."""


class DriverPath:
    """Which entity classes of one store go on the DBAPI connection, with their
    statements, built on first use."""

    def __init__(self, engine: Engine, history: Table, *, enabled: bool) -> None:
        self.engine = engine
        self.history = history
        self.enabled = enabled and supports_driver_path(engine)
        self._firings: dict[str, DriverFiring | None] = {}
        self._told = False  # whether the log says why the engine's watchers turned it off

    def forget(self, entity_type: str) -> None:
        """Drop what was built for `entity_type` (its class was registered again)."""
        self._firings.pop(entity_type, None)

    def firing(self, binding: EntityBinding) -> DriverFiring | None:
        """The statements of `binding`'s class when the driver path may be used now:
        None where the class needs the ORM (relationships, attribute listeners) or
        SQLAlchemy's execution, or the engine is watched."""
        if not self.enabled:
            return None
        name = binding.machine.name
        if name in self._firings:
            firing = self._firings[name]
        else:
            firing = self._firings[name] = self._build(binding)
        if firing is None:
            return None
        watched = watcher(self.engine)
        if watched is None:
            return firing
        if not self._told:
            self._told = True
            notes.info(
                "fire_by_key and detached fires write through SQLAlchemy's Connection, not "
                "the DBAPI connection: %s (see docs/persistence.md)",
                watched,
            )
        return None

    def _build(self, binding: EntityBinding) -> DriverFiring | None:
        if binding.rows is None or binding.write_state is None:
            return None
        try:
            return DriverFiring(
                binding,
                self.history,
                self.engine.dialect,
                hide_parameters=self.engine.hide_parameters,
            )
        except Unsupported as why:
            notes.info("%s writes through SQLAlchemy: %s", binding.machine.name, why)
            return None


@dataclass(frozen=True)
class DriverStatement:
    """A statement compiled once for one dialect, ready for the DBAPI cursor."""

    sql: str
    names: tuple[str, ...]  # parameter names, in order for a positional paramstyle
    processors: tuple[Callable[[Any], Any] | None, ...]
    positional: bool

    @classmethod
    def compile(
        cls, statement: ClauseElement, dialect: Dialect, names: Sequence[str]
    ) -> DriverStatement:
        """Compile `statement`, whose bound parameters must be exactly `names`.

        Raises:
            Unsupported: SQLAlchemy adds parameters of its own, as it does for a
                column with a Python-side `onupdate` (computed per execution).
        """
        compiled: Any = statement.compile(dialect=dialect)
        order, binds, rendered = compiled_parameters(compiled, names)
        unknown = rendered - set(names)
        if unknown:
            raise Unsupported(f"SQLAlchemy adds parameters {sorted(unknown)}")
        processors = tuple(
            binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in order
        )
        return cls(compiled.string, order, processors, bool(compiled.positional))

    def parameters(self, values: Mapping[str, Any]) -> Any:
        """The DBAPI parameters for `values` (a tuple or a dict, as the driver takes)."""
        processed = [
            value if process is None else process(value)
            for value, process in zip(
                (values[name] for name in self.names), self.processors, strict=True
            )
        ]
        if self.positional:
            return tuple(processed)
        return dict(zip(self.names, processed, strict=True))


class DriverFiring:
    """One entity class's by-key statements for one engine, compiled once.

    Raises:
        Unsupported: the class's UPDATE needs SQLAlchemy's execution (see
            `DriverStatement.compile`).
    """

    def __init__(
        self,
        binding: EntityBinding,
        history: Table,
        dialect: Dialect,
        *,
        hide_parameters: bool = False,
    ) -> None:
        loader = binding.rows
        if loader is None:  # pragma: no cover - callers check binding.rows first
            raise ValueError(f"{binding.entity_class.__name__} has no light-unit loader")
        self.binding = binding
        self.loader = loader
        self.history = history
        self.dialect = dialect
        self.hide_parameters = hide_parameters  # the engine's: keep values out of errors
        self.one_statement = of_dialect(dialect).one_statement_write  # UPDATE in WITH
        self.load = DriverStatement.compile(loader.load, dialect, ["key_"])
        self.version_and_state = DriverStatement.compile(
            binding.version_and_state(),
            dialect,
            ["key_"],
        )
        self.insert_history = DriverStatement.compile(
            insert(history).values({name: bindparam(f"h_{name}") for name in INSERT_COLUMNS}),
            dialect,
            [f"h_{name}" for name in INSERT_COLUMNS],
        )
        self._writes: dict[tuple[str, ...], DriverStatement] = {}
        self._results: tuple[Callable[[Any], Any] | None, ...] | None = None
        self.write(())  # raises Unsupported now rather than at the first fire
        # In a transaction someone else owns (a Session's, see `borrowed.py`): the
        # compare-and-set and the history INSERT as two statements on every database,
        # the same two a `Connection` sends, the INSERT taking `history_row` as it is.
        self.update = DriverStatement.compile(
            binding.compare_and_set, dialect, COMPARE_AND_SET_PARAMS
        )
        self.insert_row = DriverStatement.compile(
            insert(history).values({name: bindparam(name) for name in INSERT_COLUMNS}),
            dialect,
            INSERT_COLUMNS,
        )

    def row_values(self, row: Sequence[Any], description: Any) -> tuple[Any, ...]:
        """The loaded row's values as SQLAlchemy would hand them to the ORM."""
        processors = self._results
        if processors is None:
            dialect = self.dialect
            processors = self._results = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, entry[1])
                for (_, column), entry in zip(self.loader.attributes, description, strict=True)
            )
        return tuple(
            value if process is None else process(value)
            for value, process in zip(row, processors, strict=True)
        )

    def write(self, changed: tuple[str, ...]) -> DriverStatement:
        """The compare-and-set UPDATE (on PostgreSQL with the history INSERT) that
        also sets the attributes in `changed`, which actions assigned."""
        statement = self._writes.get(changed)
        if statement is None:
            statement = self._writes[changed] = self._compile_write(changed)
        return statement

    def _compile_write(self, changed: tuple[str, ...]) -> DriverStatement:
        column_of = dict(self.loader.attributes)
        extra: dict[Column[Any], Any] = {
            column_of[name]: bindparam(f"c{i}_") for i, name in enumerate(changed)
        }
        cas = self.binding.compare_and_set_with(extra)
        names = [*COMPARE_AND_SET_PARAMS, *(f"c{i}_" for i in range(len(changed)))]
        if not self.one_statement:
            return DriverStatement.compile(cas, self.dialect, names)
        moved = cas.returning(literal_column("1")).cte("statekit_moved")
        history = self.history
        row = select(
            *(bindparam(f"h_{name}", type_=history.c[name].type) for name in INSERT_COLUMNS)
        ).select_from(moved)
        statement = insert(history).from_select(INSERT_COLUMNS, row).add_cte(moved)
        names.extend(f"h_{name}" for name in INSERT_COLUMNS)
        return DriverStatement.compile(statement, self.dialect, names)


@dataclass
class DriverConnection:
    """One pooled DBAPI connection in use by a `DriverUnit` (see `units.py`), and
    whether the one transition it may write was written."""

    firing: DriverFiring
    pooled: Any  # the pool's proxy of the DBAPI connection
    cursor: Any
    entity: Any = None  # the entity `load` loaded, if any
    failed: bool = False  # a write failed: the transaction may only roll back
    applied: bool = False  # the unit's one transition was written (or tried)

    def execute(self, statement: DriverStatement, values: Mapping[str, Any]) -> Any:
        """Run `statement` and return the cursor. Driver errors come out as
        SQLAlchemy's, as from a `Connection`; a lost connection leaves the pool."""
        parameters = statement.parameters(values)
        return self.send(statement.sql, parameters)

    def send(self, sql: str, parameters: Any = ()) -> Any:
        """Run `sql` as it is; errors as for `execute`."""
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s", sql)
        dialect = self.firing.dialect
        dbapi_error: Any = dialect.loaded_dbapi.Error
        try:
            self.cursor.execute(sql, parameters)
        except dbapi_error as exc:
            lost = dialect.is_disconnect(exc, self.pooled.dbapi_connection, self.cursor)
            if lost:
                self.pooled.invalidate(exc)
            raise sa_exc.DBAPIError.instance(
                sql,
                parameters,
                exc,
                dbapi_error,
                hide_parameters=self.firing.hide_parameters,
                connection_invalidated=lost,
                dialect=dialect,
            ) from exc
        return self.cursor

    def apply(
        self, plan: Plan, record: TransitionRecord, version_of: Callable[[], int | None]
    ) -> None:
        """Write `plan`'s transition and the columns actions changed (on PostgreSQL
        this commits). Raises statekit's errors, as `SQLAlchemyStore.apply` does;
        `version_of` reads the committed version for a conflict's message."""
        if self.applied:
            raise StoreError(
                f"{plan.entity_type} {plan.key}: a firing unit writes one transition; "
                f"fire {plan.event!r} in its own unit or use store.transaction"
            )
        self.applied = True
        firing = self.firing
        binding = firing.binding
        changed: tuple[str, ...] = ()
        if self.entity is not None:  # loaded by this unit: what actions changed
            changed = tuple(
                name for name in pending_changes(self.entity) if name not in binding.state_names
            )
        values = binding.compare_and_set_values(plan)
        if changed:
            loaded = self.entity.__dict__
            values.update({f"c{i}_": loaded[name] for i, name in enumerate(changed)})
        history = {f"h_{name}": value for name, value in history_row(record).items()}
        try:
            with wrap("storing", plan=plan, version_of=version_of):
                if firing.one_statement:
                    values.update(history)
                written = self.execute(firing.write(changed), values).rowcount
                if written == 1 and not firing.one_statement:
                    self.execute(firing.insert_history, history)
                elif written != 1:
                    row = self.execute(firing.version_and_state, {"key_": values["k_"]}).fetchone()
                    raise plan.lost_race(None if row is None else (row[0], row[1]))
        except StoreError:  # the transaction may only roll back now
            self.failed = True
            raise


@contextmanager
def driver_connection(engine: Engine, firing: DriverFiring, key: str) -> Iterator[DriverConnection]:
    """Load the row of `key` on a pooled DBAPI connection and yield the connection
    holding its entity (see `_checked_out` for the transaction).

    Raises:
        InstanceNotFoundError: no row has this key.
        sqlalchemy.exc.DBAPIError: the database failed (the caller translates it).
    """
    binding = firing.binding
    coerced = binding.coerce_key(key)
    with _checked_out(engine, firing) as unit:
        cursor = unit.execute(firing.load, {"key_": coerced})
        row = cursor.fetchone()
        if row is None:
            raise InstanceNotFoundError(entity_type=binding.machine.name, key=key)
        unit.entity = firing.loader.instance(firing.row_values(row, cursor.description))
        yield unit


def apply_detached(
    engine: Engine,
    firing: DriverFiring,
    plan: Plan,
    record: TransitionRecord,
    version_of: Callable[[], int | None],
) -> None:
    """`SQLAlchemyStore.apply` for an entity in no transaction: the compare-and-set
    and the history row in a transaction of their own (one statement on PostgreSQL).
    Columns changed on the entity besides the state are left to its owner, as on the
    `Connection` path.

    Raises:
        ConcurrentTransitionError, InstanceNotFoundError, StoreError: as `apply`.
        sqlalchemy.exc.DBAPIError: BEGIN or COMMIT failed (the caller translates it).
    """
    with _checked_out(engine, firing) as unit:
        unit.apply(plan, record, version_of)


@contextmanager
def _checked_out(engine: Engine, firing: DriverFiring) -> Iterator[DriverConnection]:
    """A unit on a pooled DBAPI connection. On SQLite the block runs in a write
    transaction, committed on a clean exit unless a write failed, rolled back
    otherwise; on PostgreSQL each statement commits by itself."""
    dialect = firing.dialect
    try:
        pooled: Any = engine.raw_connection()
    except dialect.loaded_dbapi.Error as exc:  # connecting failed: as a `Connection` says it
        raise sa_exc.DBAPIError.instance(
            None,
            None,
            exc,
            dialect.loaded_dbapi.Error,
            connection_invalidated=dialect.is_disconnect(exc, None, None),
            dialect=dialect,
        ) from exc
    try:
        dbapi = pooled.driver_connection
        in_transaction = False
        try:
            # psycopg: as the engine left it (an AUTOCOMMIT engine's stay so), and on
            # for this unit, where each statement commits by itself.
            autocommit = bool(dbapi.autocommit) if firing.one_statement else None
            if autocommit is False:
                dbapi.autocommit = True
            unit = DriverConnection(firing, pooled, dbapi.cursor())
        except dialect.loaded_dbapi.Error as exc:
            pooled.invalidate(exc)
            raise sa_exc.DBAPIError.instance(
                None, None, exc, dialect.loaded_dbapi.Error, dialect=dialect
            ) from exc
        try:
            if not firing.one_statement:
                unit.send("BEGIN IMMEDIATE")
                in_transaction = True
            yield unit
            if in_transaction:
                unit.send("ROLLBACK" if unit.failed else "COMMIT")
                in_transaction = False
        finally:
            _settle(unit, dbapi, roll_back=in_transaction, autocommit=autocommit)
    finally:
        pooled.close()


def _settle(
    unit: DriverConnection, dbapi: Any, *, roll_back: bool, autocommit: bool | None
) -> None:
    """Leave the connection as the pool expects it: out of any transaction and, for
    psycopg, in the autocommit mode it came in. Nothing is raised from here (the
    block's own error, if any, is the one to report): a connection that cannot be
    settled is dropped."""
    pooled = unit.pooled
    try:
        if roll_back and pooled.is_valid:
            unit.send("ROLLBACK")
        if autocommit is False and pooled.is_valid:
            dbapi.autocommit = False
        unit.cursor.close()
    except Exception as exc:  # a driver or SQLAlchemy error, on a broken connection
        logger.warning("dropping a connection that could not be settled: %s", exc)
        if pooled.is_valid:
            pooled.invalidate(exc)
