"""Creating instances in `SQLAlchemyStore`: the new rows, in the caller's Session or
a transaction of statekit's, each starting a fresh life of its key (`lives.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, object_session

from statekit.errors import (
    CREATE_EVENT,
    ConcurrentTransitionError,
    StoreError,
    UnstorableTextError,
)
from statekit.records import Snapshot
from statekit.store.sqlalchemy.binding import EntityBinding
from statekit.store.sqlalchemy.connections import reading
from statekit.store.sqlalchemy.errors import wrap
from statekit.store.sqlalchemy.lives import retire
from statekit.store.sqlalchemy.tables import StatekitTables

__all__ = ["CreateOperations"]


class CreateOperations:
    """Mixed into `SQLAlchemyStore`: `create` and `create_many`."""

    engine: Engine
    tables: StatekitTables
    sessionmaker: Any  # SQLAlchemyStore's

    def _binding(self, entity_type: str) -> EntityBinding:  # provided by SQLAlchemyStore
        raise NotImplementedError

    def _version_of(self, binding: EntityBinding, key: str) -> int | None:  # likewise
        raise NotImplementedError

    def create(self, snapshot: Snapshot, *, entity: object | None = None) -> None:
        """Insert the new entity row (see `Store.create`).

        With an entity that belongs to a Session the row joins that Session's
        transaction (it is flushed so its key is known); otherwise statekit
        inserts and commits it. In the same transaction, history and compensations
        an earlier instance left under the key are retired (see `lives.py`), so
        the new instance starts clean.
        """
        self.create_many([snapshot], [entity])

    def create_many(self, snapshots: Sequence[Snapshot], entities: Sequence[object | None]) -> None:
        """Insert the rows of many new entities in one transaction (see `create`): all
        of them or none. They share the Session of the first one, or have none."""
        if not snapshots:
            return
        bindings = [self._binding(s.entity_type) for s in snapshots]
        for snapshot, entity, binding in zip(snapshots, entities, bindings, strict=True):
            if entity is None or not isinstance(entity, binding.entity_class):
                raise StoreError(
                    f"creating a {snapshot.entity_type} needs its "
                    f"{binding.entity_class.__name__} object"
                )
            key = getattr(entity, binding.machine.fields.key, None)
            if key == "":
                raise StoreError(f"cannot store a {snapshot.entity_type} with an empty key")
            if key == 0 and type(key) is int and self._zero_becomes_next(binding):
                raise UnstorableTextError(
                    "key",
                    key,
                    "a key other than 0, or none (the database assigns it)",
                    message=f"cannot store a {snapshot.entity_type} with the key 0: "
                    f"{self.engine.dialect.name} stores an AUTO_INCREMENT key of 0 as the "
                    "next value, not 0 (unless sql_mode has NO_AUTO_VALUE_ON_ZERO); leave "
                    "the key unset to have one assigned",
                )
        session = object_session(entities[0])
        with wrap(f"creating {snapshots[0].entity_type}", self.engine):
            self._insert(session, snapshots, entities, bindings)
        for snapshot, entity, binding in zip(snapshots, entities, bindings, strict=True):
            if getattr(entity, binding.machine.fields.key, None) is None:
                raise StoreError(f"{snapshot.entity_type} has no key after it was stored")

    def _insert(
        self,
        session: Session | None,
        snapshots: Sequence[Snapshot],
        entities: Sequence[object | None],
        bindings: Sequence[EntityBinding],
    ) -> None:
        """Insert the rows and start their keys' lives (`create_many`); a duplicate key
        is a lost race when the row exists now, else `StoreError`."""
        try:
            if session is not None:
                with session.no_autoflush:
                    session.add_all(entities)
                session.flush()
                self._start_lives(session, snapshots, entities)
            else:
                with self.sessionmaker() as own, own.begin():
                    own.add_all(entities)
                    own.flush()
                    self._start_lives(own, snapshots, entities)
        except sa_exc.IntegrityError as exc:
            for snapshot, entity, binding in zip(snapshots, entities, bindings, strict=True):
                key = getattr(entity, binding.machine.fields.key, None)
                existing = None if key is None else self._version_of(binding, str(key))
                if existing is not None:
                    raise ConcurrentTransitionError(
                        entity_type=snapshot.entity_type,
                        key=str(key),
                        event=CREATE_EVENT,
                        expected_version=snapshot.version,
                        actual_version=existing,
                    ) from exc
            what = (snapshots[0].key or "(new)") if len(snapshots) == 1 else "instances"
            raise StoreError(
                f"cannot create {snapshots[0].entity_type} {what}: {exc.orig}"
            ) from exc

    def _zero_becomes_next(self, binding: EntityBinding) -> bool:
        """Whether MySQL/MariaDB would store a key of 0 in `binding`'s AUTO_INCREMENT
        key column as the next value instead (asked once per store: the sql_mode)."""
        if self.engine.dialect.name != "mysql" or binding.key.table.autoincrement_column is not (
            binding.key
        ):
            return False
        zero: bool | None = self.__dict__.get("_zero_becomes_next_value")
        if zero is None:
            with reading(self.engine, "reading the sql_mode") as conn:
                mode = str(conn.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar() or "")
            zero = self.__dict__["_zero_becomes_next_value"] = (
                "NO_AUTO_VALUE_ON_ZERO" not in mode.upper()
            )
        return zero

    def _start_lives(
        self, session: Session, snapshots: Sequence[Snapshot], entities: Sequence[object | None]
    ) -> None:
        for snapshot, entity in zip(snapshots, entities, strict=True):
            self._start_life(session, snapshot, entity)

    def _start_life(self, session: Session, snapshot: Snapshot, entity: object) -> None:
        """Retire what an earlier instance left under the new row's key."""
        key = getattr(entity, self._binding(snapshot.entity_type).machine.fields.key, None)
        if key is None:
            return  # reported by `create`
        at = snapshot.entered_at or datetime.now(UTC)
        retire(session.connection(), self.tables, snapshot.entity_type, str(key), at)
