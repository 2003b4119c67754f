"""`SQLAlchemyStore`: the store protocol over the application's own tables.

Apply is one compare-and-set UPDATE of the entity row
(`WHERE key = :key AND state_version = :expected`) plus one INSERT into
`statekit_transitions`, in one transaction: the caller's, when the entity belongs
to a Session (the transition commits or rolls back with the caller's work), or
statekit's own otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    Select,
    Table,
    select,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Mapper, sessionmaker

from statekit.engine import Machine, check_version
from statekit.entity import STATE_KEYS
from statekit.errors import (
    DefinitionMismatchError,
    InstanceNotFoundError,
    InvalidArgumentTypeError,
    StoreError,
    UnknownMachineError,
)
from statekit.limits import held_alike
from statekit.records import Plan, Snapshot, TransitionRecord
from statekit.store.protocol import AfterCommit, SweepStore, Unit
from statekit.store.sqlalchemy.binding import EntityBinding, key_range_of, key_type_of
from statekit.store.sqlalchemy.connections import failures, reading
from statekit.store.sqlalchemy.creating import CreateOperations
from statekit.store.sqlalchemy.driver import DriverPath
from statekit.store.sqlalchemy.history import record_columns
from statekit.store.sqlalchemy.history import record_of as _record
from statekit.store.sqlalchemy.lives import LifeOperations
from statekit.store.sqlalchemy.reads import ReadOperations
from statekit.store.sqlalchemy.rows import row_loader
from statekit.store.sqlalchemy.sessions import (
    is_mapped,
)
from statekit.store.sqlalchemy.sqlite import configure_sqlite, for_writing
from statekit.store.sqlalchemy.sweep import SweepOperations
from statekit.store.sqlalchemy.tables import DEFAULT_PREFIX, StatekitTables, statekit_tables
from statekit.store.sqlalchemy.units import (
    DriverUnit,
    OwnUnit,
    RowUnit,
    SessionUnit,
    Writes,
    WriteUnit,
    unit_holding,
)
from statekit.store.sqlalchemy.writeback import protect_state

__all__ = ["EntityBinding", "SQLAlchemyStore"]


class SQLAlchemyStore(
    CreateOperations, ReadOperations, LifeOperations, SweepOperations, SweepStore
):
    """Persists transitions of registered entity classes through SQLAlchemy.

    Args:
        engine: The application's engine. A SQLite engine is configured with WAL, a
            busy timeout and real transactions (see `configure_sqlite`): statekit's
            own units begin IMMEDIATE, on `writer`; the application's stay deferred.
        entities: `{machine: mapped class}`, or mapped classes that name their
            machine with `__statekit_machine__` (each class uses `StateMixin` or has
            the columns `StateFields` names).
        metadata: The application's MetaData to attach statekit's tables to, so
            its migrations own them; a private MetaData otherwise.
        table_prefix: Starts the name of every statekit table, constraint and index
            (`<prefix>transitions`, ...); stores with different prefixes on one
            database keep separate histories (see `statekit_tables`).
        schema: The schema (on MySQL and MariaDB: the database) of statekit's
            tables; the engine's default schema when None.
        driver_path: Let `Runner.fire_by_key`, and `fire` on a detached entity, send
            their statements on the DBAPI connection with the stdlib `sqlite3` driver
            and psycopg 3 (see `driver.py`); False keeps SQLAlchemy's `Connection`.
    """

    def __init__(
        self,
        engine: Engine,
        entities: Mapping[Machine, type] | Iterable[type] | None = None,
        *,
        metadata: MetaData | None = None,
        driver_path: bool = True,
        table_prefix: str = DEFAULT_PREFIX,
        schema: str | None = None,
    ) -> None:
        configure_sqlite(engine)
        self.engine = engine
        self.writer = for_writing(engine)  # statekit's own write units
        self.tables: StatekitTables = statekit_tables(metadata, prefix=table_prefix, schema=schema)
        self._driver = DriverPath(engine, self.tables.transitions, enabled=driver_path)
        self.sessionmaker = sessionmaker(bind=self.writer, expire_on_commit=False)
        self._bindings: dict[str, EntityBinding] = {}
        self._writes = Writes(engine, self.writer, self.tables.transitions, self._driver)
        self._history_columns = record_columns(self.tables.transitions)
        for machine, entity_class in _pairs(entities):
            self.register(machine, entity_class)

    # -- set-up ----------------------------------------------------------------------

    def register(self, machine: Machine, entity_class: type) -> SQLAlchemyStore:
        """Store instances of `machine` in `entity_class`'s table; returns the store."""
        mapper: Mapper[Any] | None = sa_inspect(entity_class, raiseerr=False)
        if not isinstance(mapper, Mapper):
            allowed = "a class mapped by SQLAlchemy (declarative, with StateMixin)"
            raise InvalidArgumentTypeError(
                "entity_class",
                entity_class,
                allowed,
                message=f"{getattr(entity_class, '__name__', entity_class)!s} cannot store "
                f"machine {machine.name!r}: it is not {allowed}",
            )
        fields = machine.fields
        columns: dict[str, Column[Any]] = {}
        missing = []
        for attribute in (*STATE_KEYS, "key"):
            name = getattr(fields, attribute)
            prop = mapper.attrs.get(name)
            if prop is None or not hasattr(prop, "columns"):
                missing.append(name)
                continue
            columns[attribute] = prop.columns[0]
        if missing:
            raise StoreError(
                f"{entity_class.__name__} cannot store machine {machine.name!r}: no mapped "
                f"column for {', '.join(missing)} (use StateMixin or adjust StateFields)"
            )
        key = columns.pop("key")
        table = mapper.local_table
        if not isinstance(table, Table):
            raise StoreError(f"{entity_class.__name__} is not mapped to a single table")
        self._driver.forget(machine.name)
        binding = EntityBinding(
            machine=machine,
            entity_class=entity_class,
            table=table,
            key=key,
            columns=columns,
            key_type=key_type_of(key),
            key_range=key_range_of(key, self.engine.dialect.name),
            rows=row_loader(mapper, table, key),
        )
        self._bindings[machine.name] = binding
        protect_state(entity_class, machine)
        return self

    def binding(self, entity_type: str) -> EntityBinding:
        """The table mapping of `entity_type` (a machine name).

        Raises:
            StoreError: no class is registered for it.
        """
        return self._binding(entity_type)

    def _all_bindings(self) -> Sequence[EntityBinding]:
        return list(self._bindings.values())

    def entities(self) -> dict[Machine, type]:
        """Every registered machine and the class that stores its instances."""
        return {b.machine: b.entity_class for b in self._bindings.values()}

    def create_tables(self) -> None:
        """Create statekit's own tables (not the application's) if missing."""
        self.tables.metadata.create_all(self.engine, tables=list(self.tables.all))

    def _binding(self, entity_type: str) -> EntityBinding:
        try:
            return self._bindings[entity_type]
        except KeyError:
            raise UnknownMachineError([entity_type], known=self._bindings) from None

    def _reading(self, what: str = "reading from the store") -> AbstractContextManager[Connection]:
        return reading(self.engine, what)

    # -- the Store protocol ----------------------------------------------------------

    def load(self, entity_type: str, key: str) -> Snapshot:
        """Return the stored snapshot (see `Store.load`).

        Raises:
            InstanceNotFoundError: no row has this key.
            DefinitionMismatchError: the row's state or definition version is unknown.
        """
        binding = self._binding(entity_type)
        query = binding.snapshot_select().where(binding.key == binding.coerce_key(key))
        with self._reading() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise InstanceNotFoundError(entity_type=entity_type, key=key)
        snapshot = Snapshot(entity_type, key, *row[1:])  # the key as the caller gave it
        self._check_known(binding, snapshot)
        return snapshot

    def _check_known(self, binding: EntityBinding, snapshot: Snapshot) -> None:
        machine = binding.machine
        check_version(machine.name, snapshot.key, snapshot.version)
        if snapshot.state not in machine.states:
            raise DefinitionMismatchError(
                entity_type=machine.name,
                key=snapshot.key,
                field="state",
                value=snapshot.state,
                known=machine.states,
            )
        accepted = machine.spec.accepted_versions
        if snapshot.definition_version is not None and snapshot.definition_version not in accepted:
            raise DefinitionMismatchError(
                entity_type=machine.name,
                key=snapshot.key,
                field="definition version",
                value=snapshot.definition_version,
                known=sorted(accepted),
            )

    def _version_of(self, binding: EntityBinding, key: str) -> int | None:
        """The committed version of `key`, read outside any failed transaction."""
        return self._writes.version_of(binding, key)

    def foreign_error(
        self, error: BaseException, entity_type: str, entity: object, event: str
    ) -> StoreError | None:
        """`error` as a `StoreError` when the database raised it (see `Store`); the key
        is the entity's identity, read without touching the database."""
        if not isinstance(error, failures(self.engine)):
            return None
        identity = sa_inspect(entity).identity if is_mapped(entity) else None
        key = "(new)" if not identity else ", ".join(map(str, identity))
        return StoreError(
            f"firing {event!r} on {entity_type} {key} failed: {type(error).__name__}: {error}"
        )

    def unit_of(self, entity_type: str, key: str, entity: object) -> WriteUnit | None:
        """The unit of work `entity` is in (see `Store.unit_of`): the light or driver
        unit that loaded it (in the thread that opened it), or its Session's."""
        binding = self._bindings.get(entity_type)
        return None if binding is None else unit_holding(self._writes, entity, binding)

    def apply(
        self,
        plan: Plan,
        *,
        entity: object | None = None,
        unit: Unit | None = None,
        after_commit: AfterCommit | None = None,
    ) -> TransitionRecord:
        """Compare-and-set the entity row and insert the history row (see `Store.apply`).

        In the entity's unit when it has one (`unit_of`): for the caller's Session
        nothing is committed here and `after_commit` runs when that Session commits
        (never on rollback); statekit's own units commit at the end of their block.
        Otherwise statekit commits its own transaction (on the DBAPI connection
        where `driver.py` may) before `after_commit`.
        """
        binding = self._binding(plan.entity_type)
        if unit is None and entity is not None:
            unit = unit_holding(self._writes, entity, binding)
        if unit is None:
            unit = OwnUnit(self._writes, entity, self._driver.firing(binding))
        elif not isinstance(unit, WriteUnit):
            raise StoreError(
                f"{plan.entity_type} {plan.key}: {type(unit).__name__} is not a unit of "
                "this SQLAlchemyStore"
            )
        record = plan.record()
        unit.write(entity, binding, plan, record, after_commit)
        return record

    def history(
        self, entity_type: str, key: str, *, idempotency_key: str | None = None
    ) -> Sequence[TransitionRecord]:
        """Return the instance's transitions, oldest first (see `Store.history`)."""
        if not held_alike(key, idempotency_key):
            return []
        query = self._history_query(entity_type, key, idempotency_key)
        with self._reading() as conn:
            rows = conn.execute(query).all()
        return [_record(entity_type, key, row) for row in rows]

    def _history_query(
        self, entity_type: str, key: str, idempotency_key: str | None = None
    ) -> Select[Any]:
        """The live history rows of one instance (only the one recorded under
        `idempotency_key`, when given), oldest first."""
        t = self.tables.transitions
        query = (
            select(*self._history_columns)
            .where(t.c.entity_type == entity_type, t.c.entity_key == key)
            .order_by(t.c.seq)
        )
        if idempotency_key is not None:
            query = query.where(t.c.idempotency_key == idempotency_key)
        return query

    def recorded(
        self,
        entity_type: str,
        key: str,
        idempotency_key: str,
        *,
        entity: object | None = None,
        unit: Unit | None = None,
    ) -> TransitionRecord | None:
        """The transition recorded under `idempotency_key` (see `Store.recorded`): read
        in the Session or light unit `entity` is in, so a transition fired earlier in
        the same transaction is found and a database that gives each thread one
        connection (in-memory SQLite) is never asked for a second transaction."""
        if not held_alike(key, idempotency_key):
            return None
        if unit is None and entity is not None:
            unit = unit_holding(self._writes, entity, self._binding(entity_type))
        if not isinstance(unit, WriteUnit) or not unit.reads_inside:
            return super().recorded(entity_type, key, idempotency_key)
        row = unit.read(self._history_query(entity_type, key, idempotency_key))
        return None if row is None else _record(entity_type, key, row)

    def find_overdue(self, entity_type: str, now: datetime, limit: int) -> Sequence[Snapshot]:
        """Return due, non-stuck instances, earliest deadline first (see `Store.find_overdue`)."""
        binding = self._binding(entity_type)
        cols = binding.columns
        query = (
            binding.snapshot_select()
            .where(cols["deadline_at"] <= now, cols["stuck_at"].is_(None))
            .order_by(cols["deadline_at"], binding.key)
            .limit(limit)
        )
        with self._reading() as conn:
            rows = conn.execute(query).all()
        return [binding.snapshot(row) for row in rows]

    def transaction(self, entity_type: str, key: str) -> AbstractContextManager[Any]:
        """Load the entity for one unit of work; commit on a clean exit, roll back on an
        exception. Transitions fired on it inside join that transaction.

        For a class whose attributes are all plain columns of its table, the entity
        is a detached instance loaded on one connection (`RowUnit`), and the columns
        changed on it are written back in the same transaction; other classes get a
        Session (`SessionUnit`), so relationships work as usual.

        Raises:
            InstanceNotFoundError: no row has this key.
            StoreError: the commit failed (ConcurrentTransitionError when it lost a race).
        """
        binding = self._binding(entity_type)
        if binding.rows is None:
            return SessionUnit.open(self._writes, self.sessionmaker, binding, key)
        return RowUnit.open(self._writes, binding, key)

    def firing(self, entity_type: str, key: str) -> AbstractContextManager[Any]:
        """Like `transaction`, for a block that fires exactly one event on the entity
        and does nothing else with it (`Runner.fire_by_key`). On SQLite and
        PostgreSQL through their default drivers the unit runs on the DBAPI
        connection (`DriverUnit`), and on PostgreSQL the one write commits by itself
        (see `driver.py`), so a second `apply` in the block raises `StoreError`;
        otherwise it is `transaction`.

        Raises:
            InstanceNotFoundError: no row has this key.
            StoreError: the database failed (ConcurrentTransitionError for a lost race).
        """
        firing = self._driver.firing(self._binding(entity_type))
        if firing is None:
            return self.transaction(entity_type, key)
        return DriverUnit.open(self._writes, firing, key)

    def session_unit(self, entity_type: str, key: str) -> AbstractContextManager[Any]:
        """Like `transaction`, always with an ORM Session (on the sweeper's
        connections); the sweeper and a person's levers work through it."""
        binding = self._binding(entity_type)
        return SessionUnit.open(self._writes, self._sweep_sessions, binding, key)


def _pairs(entities: Mapping[Machine, type] | Iterable[type] | None) -> list[tuple[Machine, type]]:
    """`entities` as (machine, class) pairs: a mapping's items, or each class with the
    machine it names in `__statekit_machine__`."""
    if entities is None:
        return []
    if isinstance(entities, Mapping):
        return list(entities.items())
    if isinstance(entities, type | str) or not isinstance(entities, Iterable):
        raise InvalidArgumentTypeError(
            "entities",
            entities,
            "{machine: mapped class}, or a list of mapped classes with __statekit_machine__",
        )
    pairs = []
    for entity_class in entities:
        machine = getattr(entity_class, "__statekit_machine__", None)
        if not isinstance(machine, Machine):
            raise InvalidArgumentTypeError(
                "entities",
                entity_class,
                "mapped classes that name their machine (__statekit_machine__ = "
                "SomeWorkflow.machine), or {machine: mapped class}",
            )
        pairs.append((machine, entity_class))
    return pairs
