"""`Context`: what the `statekit` commands work on, built by whoever hosts them.

The standalone CLI builds it from `--db` and `--module` (`statekit.cli.sqlalchemy`).
Any other host builds one itself and hands it to the commands as click's context
object; the commands then need neither option::

    from statekit.cli import cli
    from statekit.cli.context import Context

    context = Context.of(store)                   # a store with the Reads tier
    cli.main(["stats", "--since", "7d"], obj=context)

A Flask extension would build it from the app (`Context.of(app.extensions[...])`),
a Django management command from settings; `tests/cli/test_cli_context.py` runs the
commands over a `MemoryStore` this way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from statekit.engine import Machine
from statekit.errors import UnknownMachineError
from statekit.runtime import Runner
from statekit.store.base import Store
from statekit.store.protocol import Reads
from statekit.sweeper import DEFAULT_HANDLER_TIMEOUT, Sweeper

__all__ = ["CommandStore", "Context", "HostSchema", "HostStore"]


class CommandStore(Store, Protocol):
    """The writes the commands make: the `Runner`'s store, plus deleting an instance."""

    def delete(self, entity_type: str, key: str, *, keep_history: bool = False) -> None:
        """Delete the instance with its history (retired instead with `keep_history`)."""
        ...


class HostStore(CommandStore, Reads, Protocol):
    """One store that serves every command (`MemoryStore`, `SQLAlchemyStore`)."""


class HostSchema(Protocol):
    """The tables of a host's database, for `statekit db create` and `db sql`."""

    def create(self) -> list[str]:
        """Create statekit's tables and the mapped classes' where missing; their names."""
        ...

    def ddl(self, dialect: str) -> Iterator[str]:
        """The CREATE statements of the same tables in `dialect`."""
        ...


@dataclass(frozen=True)
class Context:
    """What the commands work on.

    Args:
        machines: The machines the commands cover, by name (`stats` reports each).
        store: Where `delete` and the sweeper's Runners write.
        reads: What `history`, `stats`, `stuck`, `diagram --heat` and `check` read.
        classes: The class that stores each machine's instances, by machine name,
            named in `check`'s messages (the machine's name where missing).
        runner: How to build the Runner of a machine for `sweep`, `retry` and
            `resolve` (listeners, a clock); `Runner(machine, store)` by default.
        schema: The host database's tables, for `db create` and `db sql` without
            `--db` and `--module`; None: those commands need them.
    """

    machines: Mapping[str, Machine]
    store: CommandStore
    reads: Reads
    classes: Mapping[str, type] = field(default_factory=dict)
    runner: Callable[[Machine], Runner] | None = None
    schema: HostSchema | None = None

    @classmethod
    def of(
        cls,
        store: HostStore,
        *,
        classes: Mapping[str, type] | None = None,
        runner: Callable[[Machine], Runner] | None = None,
        schema: HostSchema | None = None,
    ) -> Context:
        """The context of one store that writes and reads, over its machines."""
        return cls(store.machines(), store, store, dict(classes or {}), runner, schema)

    def machine(self, name: str) -> Machine:
        """The machine called `name`.

        Raises:
            StatekitError: no such machine here (the message lists the known ones).
        """
        try:
            return self.machines[name]
        except KeyError:
            raise UnknownMachineError([name], known=self.machines) from None

    def stored_in(self, name: str) -> str:
        """What stores the instances of machine `name`: its class's name."""
        found = self.classes.get(name)
        return name if found is None else found.__name__

    def runners(self) -> list[Runner]:
        """One Runner per machine, in the order of `machines`."""
        build = self.runner or (lambda machine: Runner(machine, self.store))
        return [build(machine) for machine in self.machines.values()]

    def sweeper(
        self,
        *,
        batch_size: int = 100,
        lease: timedelta = timedelta(minutes=5),
        handler_timeout: timedelta | None = DEFAULT_HANDLER_TIMEOUT,
        concurrency: int = 1,
        drain_batch_size: int | None = None,
        keep_done: timedelta | None = None,
    ) -> Sweeper:
        """A `Sweeper` over `runners` (the store must offer the sweeper's tier)."""
        return Sweeper(
            self.runners(),
            batch_size=batch_size,
            lease=lease,
            handler_timeout=handler_timeout,
            concurrency=concurrency,
            drain_batch_size=drain_batch_size,
            keep_done=keep_done,
        )
