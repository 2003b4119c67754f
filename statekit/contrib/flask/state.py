"""`StateKitState`: what the extension keeps for one app in
``app.extensions["statekit"]``: its settings, and the store, machines and runners
built from the app's database and mapped classes the first time they are needed."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, MetaData, create_engine
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import registry

from statekit.cli.context import Context
from statekit.cli.sqlalchemy import StoreSchema
from statekit.contrib.flask.settings import ConfigError, Settings
from statekit.engine import Machine
from statekit.errors import StatekitError, StoreError
from statekit.runtime import Runner
from statekit.store.sqlalchemy import SQLAlchemyStore, statekit_tables
from statekit.store.sqlalchemy.binding import EntityBinding
from statekit.sweeper import DEFAULT_HANDLER_TIMEOUT, Sweeper

if TYPE_CHECKING:
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy

__all__ = ["EXTENSION_KEY", "NotInitializedError", "StateKitState", "mapped_machines", "state_of"]


def mapped_machines(db: SQLAlchemy | None) -> dict[Machine, type]:
    """The machines carried by `db.Model`'s mapped classes (a class attribute
    `__statekit_machine__`, as the CLI finds them), with their classes.

    Raises:
        StatekitError: two classes carry machines of one name.
    """
    found: dict[Machine, type] = {}
    if db is None:
        return found
    by_name: dict[str, type] = {}
    found_in: registry = db.Model.registry  # type: ignore[attr-defined]
    for mapper in sorted(found_in.mappers, key=lambda m: m.class_.__qualname__):
        entity_class = mapper.class_
        machine = vars(entity_class).get("__statekit_machine__")
        if not isinstance(machine, Machine):
            continue
        other = by_name.setdefault(machine.name, entity_class)
        if other is not entity_class:
            raise StatekitError(
                f"mapped classes {other.__name__} and {entity_class.__name__} both carry a "
                f"machine named {machine.name!r}; give one machine to one class"
            )
        found[machine] = entity_class
    return found


class StateKitState:
    """One app's statekit: settings, store, machines and runners.

    The store is built on first use (inside the app context), so mapped classes
    imported after `init_app` are found too.

    Args:
        settings: The app's `STATEKIT_*` config.
        db: The app's Flask-SQLAlchemy extension, if any.
        entities: Machines and the classes that store them, besides those found on
            `db.Model`.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        db: SQLAlchemy | None = None,
        entities: Mapping[Machine, type] | None = None,
    ) -> None:
        if db is None and settings.database_url is None:
            raise ConfigError(
                "StateKit needs a database: pass db= (the app's Flask-SQLAlchemy) or set "
                "STATEKIT_DATABASE_URL"
            )
        self.settings = settings
        self.db = db
        self.extra_entities = dict(entities or {})
        self.metadata: MetaData | None = None if db is None else db.metadata
        try:  # defined now on db.metadata, so db.create_all() and migrations see them
            statekit_tables(self.metadata, prefix=settings.table_prefix, schema=settings.schema)
        except StoreError as exc:
            raise ConfigError(f"STATEKIT_TABLE_PREFIX cannot be used: {exc}") from exc
        self._lock = threading.Lock()
        self._store: SQLAlchemyStore | None = None
        self._runners: dict[str, Runner] = {}
        self._by_class: dict[type, Runner] = {}
        self._bindings: dict[str | Machine | type, tuple[str, EntityBinding]] = {}
        self._own_engine: Engine | None = None

    # -- built on first use ----------------------------------------------------------

    @property
    def store(self) -> SQLAlchemyStore:
        """The app's `SQLAlchemyStore` (built on first use, in the app context).

        Raises:
            StatekitError: no database or no machine can be found.
        """
        store = self._store
        if store is None:
            with self._lock:
                if self._store is None:
                    self._store = self._build_store()
                store = self._store
        return store

    def _build_store(self) -> SQLAlchemyStore:
        entities = {**mapped_machines(self.db), **self.extra_entities}
        if not entities:
            raise StatekitError(
                "StateKit found no machines: give a db.Model class a __statekit_machine__, "
                "or pass entities={machine: MappedClass} to StateKit/init_app"
            )
        return SQLAlchemyStore(
            self.engine(),
            entities,
            metadata=self.metadata,
            table_prefix=self.settings.table_prefix,
            schema=self.settings.schema,
        )

    def engine(self) -> Engine:
        """The engine statekit's own work uses: `STATEKIT_DATABASE_URL`'s, else
        Flask-SQLAlchemy's default engine (needs the app context).

        Raises:
            ConfigError: `STATEKIT_DATABASE_URL` is not a usable URL.
        """
        url = self.settings.database_url
        if url is None:
            assert self.db is not None  # checked in __init__
            return self.db.engine
        if self._own_engine is None:
            try:
                self._own_engine = create_engine(url)
            except (ArgumentError, ModuleNotFoundError) as exc:
                raise ConfigError(f"STATEKIT_DATABASE_URL cannot be used: {exc}") from exc
        return self._own_engine

    @property
    def machines(self) -> dict[str, Machine]:
        """The app's machines by name."""
        return dict(self.store.machines())

    @property
    def classes(self) -> dict[str, type]:
        """The mapped class that stores each machine's instances, by machine name."""
        return {m.name: c for m, c in self.store.entities().items()}

    def runner(self, machine: str | Machine) -> Runner:
        """The Runner of `machine` (or the machine called so), one per machine.

        Raises:
            StatekitError: no such machine in this app (the message lists them).
        """
        name = machine if isinstance(machine, str) else machine.name
        found = self._runners.get(name)
        if found is None:
            compiled = self.context().machine(name)
            found = self._runners.setdefault(name, Runner(compiled, self.store))
        return found

    def runner_for(self, entity_or_class: object) -> Runner:
        """The Runner of the machine that stores `entity_or_class`'s instances.

        Raises:
            StatekitError: its class carries no machine of this app.
        """
        entity_class = (
            entity_or_class if isinstance(entity_or_class, type) else type(entity_or_class)
        )
        found = self._by_class.get(entity_class)
        if found is not None:
            return found
        for name, stored in self.classes.items():
            if issubclass(entity_class, stored):
                return self._by_class.setdefault(entity_class, self.runner(name))
        known = ", ".join(f"{c.__name__} ({n})" for n, c in sorted(self.classes.items()))
        raise StatekitError(
            f"{entity_class.__name__} stores no machine of this app (known: {known or 'none'})"
        )

    def binding_for(self, of: str | Machine | type) -> tuple[str, EntityBinding]:
        """The machine name and table mapping of `of` (a machine name or a mapped
        class), found once per `of`.

        Raises:
            StatekitError: `of` names or stores no machine of this app.
        """
        found = self._bindings.get(of)
        if found is None:
            runner = self.runner(of) if isinstance(of, (str, Machine)) else self.runner_for(of)
            name = runner.machine.name
            found = self._bindings.setdefault(of, (name, self.store.binding(name)))
        return found

    def context(self) -> Context:
        """The `statekit` commands' `Context` over this app's store and machines."""
        classes = self.classes
        schema = StoreSchema(self.store, list(classes.values()))
        return Context.of(self.store, classes=classes, runner=self.runner, schema=schema)

    def sweeper(self) -> Sweeper:
        """A `Sweeper` over the app's machines with the `STATEKIT_SWEEP_*` settings."""
        s = self.settings
        timeout: timedelta | None = DEFAULT_HANDLER_TIMEOUT
        if s.handler_timeout is not None:
            timeout = timedelta(seconds=s.handler_timeout) if s.handler_timeout else None
        return self.context().sweeper(
            batch_size=s.sweep_batch_size,
            lease=timedelta(seconds=s.sweep_lease),
            handler_timeout=timeout,
        )

    def dispose(self, *_: Any) -> None:
        """Dispose of the engine statekit created from `STATEKIT_DATABASE_URL`."""
        if self._own_engine is not None:
            self._own_engine.dispose()


EXTENSION_KEY = "statekit"
"""The key of the extension's `StateKitState` in ``app.extensions``."""


class NotInitializedError(StatekitError):
    """The app has no statekit: `StateKit.init_app(app)` was not called on it."""


def state_of(app: Flask) -> StateKitState:
    """The `StateKitState` of `app`.

    Raises:
        NotInitializedError: `init_app` was not called on `app`.
    """
    found = app.extensions.get(EXTENSION_KEY)
    if not isinstance(found, StateKitState):
        raise NotInitializedError(
            f"app {app.name!r} has no statekit: call StateKit(app) or statekit.init_app(app)"
        )
    return found
