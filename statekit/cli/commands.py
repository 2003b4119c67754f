"""The commands of `statekit`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from statekit.cli.loading import load_modules
from statekit.cli.output import printable
from statekit.errors import DefinitionError, StatekitError

F = TypeVar("F", bound=Callable[..., Any])

DIALECTS = ("postgresql", "sqlite", "mysql", "mariadb")


class _Group(click.Group):
    """Turns any error into one line on stderr and exit 1 (`-v`: with traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise  # click reports these itself (a closed pipe: quietly, exit 1)
        except Exception as exc:
            if ctx.params.get("verbose"):
                from statekit.cli import print_traceback

                print_traceback()
            message = " ".join(str(exc).split()) or type(exc).__name__
            if not isinstance(exc, StatekitError):
                message = install_hint(exc) or f"{type(exc).__name__}: {message}"
            raise click.ClickException(message) from exc


EXTRAS = {
    "sqlalchemy": ("SQLAlchemy", "sqlalchemy"),
    "graphviz": ("the graphviz package", "diagrams"),
    "transitions": ("transitions", "transitions"),
    "yaml": ("PyYAML", "yaml"),
    "psycopg": ("psycopg", "postgres"),
    "pymysql": ("PyMySQL", "mysql"),
}
"""Optional packages a command may need: import name -> (what to call it, extra)."""


def install_hint(error: BaseException) -> str | None:
    """The one-line install hint for an optional package `error` says is missing."""
    if not isinstance(error, ModuleNotFoundError) or error.name is None:
        return None
    found = EXTRAS.get(error.name.partition(".")[0])
    if found is None:
        return None
    what, extra = found
    return f"this command needs {what}, which is not installed: pip install 'statekit[{extra}]'"


def db_option(required: bool = True) -> Callable[[F], F]:
    """`--db URL` (STATEKIT_DB)."""
    return click.option(
        "--db",
        "db_url",
        envvar="STATEKIT_DB",
        show_envvar=True,
        required=required,
        metavar="URL",
        help="SQLAlchemy database URL, e.g. sqlite:///app.db or postgresql+psycopg://u@h/db.",
    )


def module_option(required: bool = True) -> Callable[[F], F]:
    """`--module/-m MODULE` (repeatable; STATEKIT_MODULES, space separated): the one
    way every command is told where the machines and mapped classes are."""
    return click.option(
        "--module",
        "-m",
        "modules",
        multiple=True,
        required=required,
        envvar="STATEKIT_MODULES",
        show_envvar=True,
        metavar="MODULE",
        help=(
            "Module declaring the machines and mapped classes (repeatable; found from "
            "the current directory)" + ("." if required else "; optional.")
        ),
    )


def json_option() -> Callable[[F], F]:
    """`--json` (STATEKIT_JSON)."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        envvar="STATEKIT_JSON",
        show_envvar=True,
        help="Print data as JSON instead of text.",
    )


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    envvar="STATEKIT_VERBOSE",
    show_envvar=True,
    help="Show tracebacks for errors.",
)
@click.version_option(package_name="statekit")
def cli(verbose: bool) -> None:
    """statekit: business entities as persisted state machines.

    Machines and the mapped classes that store them are found in the Python
    modules you name (classes with `__statekit_machine__`).
    """


_DRIVERS = {
    "MySQLdb": "mysql+pymysql://user@host/db (pip install 'statekit[mysql]')",
    "psycopg2": "postgresql+psycopg://user@host/db (pip install 'statekit[postgres]')",
    "pymysql": "pip install 'statekit[mysql]'",
    "psycopg": "pip install 'statekit[postgres]'",
}


def open_engine(db_url: str, *, create: bool = False) -> Any:
    """An engine on `db_url`, disposed of when the command ends. A SQLite file must
    exist unless `create` (a mistyped path is not silently made a new database).

    Raises:
        StatekitError: the URL is not a database URL, names a missing SQLite file, or
            needs a driver that is not installed (the message names the one to use).
    """
    from sqlalchemy import create_engine, make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(db_url)
        if url.get_backend_name() == "sqlite" and not create:
            database = url.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                if not Path(database).exists():
                    raise StatekitError(f"no SQLite database at {database}")
        engine = create_engine(url)
    except ArgumentError as exc:
        raise StatekitError(
            "invalid database URL (expected e.g. sqlite:///app.db or "
            "postgresql+psycopg://user@host/db)"
        ) from exc
    except ModuleNotFoundError as exc:
        hint = _DRIVERS.get(exc.name or "", "install the driver the URL names")
        raise StatekitError(
            f"the URL's driver needs the {exc.name!r} module, which is not installed; use {hint}"
        ) from exc
    click.get_current_context().call_on_close(engine.dispose)
    return engine


def open_store(db_url: str, modules: Sequence[str]) -> Any:
    """An `SQLAlchemyStore` over `db_url` for the mapped classes in `modules`; its engine
    is disposed of when the command ends.

    Raises:
        StatekitError: the URL is not usable (see `open_engine`), or no module declares
            a mapped class with `__statekit_machine__`.
    """
    from statekit.store.sqlalchemy import SQLAlchemyStore

    loaded = load_modules(list(modules))
    if not loaded.entities:
        raise StatekitError(
            f"no mapped classes with __statekit_machine__ in {', '.join(modules) or '(none)'}; "
            "name the module that declares them"
        )
    return SQLAlchemyStore(open_engine(db_url), loaded.entities)


@cli.command()
@module_option()
@db_option(required=False)
def check(modules: tuple[str, ...], db_url: str | None) -> None:
    """Validate the machines declared in the modules; with --db, also check that every
    stored state and definition version is known to them, and that every row's
    state_version agrees with its history (as many transitions, the last one's seq).

    Exit 1 lists every offender.
    """
    problems: list[str] = []
    try:
        loaded = load_modules(list(modules))
    except DefinitionError as exc:
        problems.extend(f"{exc.machine}: {p}" for p in exc.problems)
        loaded = None
    if loaded is not None:
        if not loaded.machines:
            raise StatekitError(f"no machines found in {', '.join(modules)}")
        if db_url is not None:
            problems.extend(_stored_problems(db_url, modules))
    if problems:
        for problem in problems:
            click.echo(problem, err=True)
        raise click.ClickException(f"{len(problems)} problem(s) found")
    assert loaded is not None
    names = ", ".join(f"{m.name} v{m.version}" for m in loaded.machines.values())
    click.echo(f"ok: {names}")


def _stored_problems(db_url: str, modules: tuple[str, ...]) -> list[str]:
    store = open_store(db_url, modules)
    problems = []
    for machine, entity_class in store.entities().items():
        for stored in store.stored_states(machine.name):
            if stored.state not in machine.states:
                problems.append(
                    f"{machine.name}: {stored.count} row(s) of {entity_class.__name__} in "
                    f"unknown state {stored.state!r}"
                )
            version = stored.definition_version
            if version is not None and version not in machine.spec.accepted_versions:
                problems.append(
                    f"{machine.name}: {stored.count} row(s) of {entity_class.__name__} under "
                    f"unknown definition version {version}"
                )
    for machine, entity_class in store.entities().items():
        for row in store.disagreements(machine.name):
            last = "" if row.last_seq is None else f", the last seq {row.last_seq}"
            problems.append(
                f"{machine.name} {row.key}: state_version {row.version} but its history has "
                f"{row.transitions} transition(s){last} ({entity_class.__name__}; "
                "see docs/upgrading.md)"
            )
    return problems


@cli.group()
def db() -> None:
    """Create statekit's tables or print their DDL."""


@db.command("create")
@db_option()
@module_option(required=False)
def db_create(db_url: str, modules: tuple[str, ...]) -> None:
    """Create statekit's tables (and, given modules, the tables of their mapped
    classes) where they do not exist yet; a SQLite file is created if missing."""
    from statekit.store.sqlalchemy import SQLAlchemyStore

    engine = open_engine(db_url, create=True)
    loaded = load_modules(list(modules))
    store = SQLAlchemyStore(engine, loaded.entities)
    store.create_tables()
    created = ["statekit_transitions"]
    for entity_class in loaded.entities.values():
        table = entity_class.__table__  # type: ignore[attr-defined]
        table.create(engine, checkfirst=True)
        created.append(table.name)
    click.echo(f"ok: {', '.join(created)}")


@db.command("sql")
@click.option(
    "--dialect",
    type=click.Choice(DIALECTS),
    default="postgresql",
    show_default=True,
    envvar="STATEKIT_DIALECT",
    show_envvar=True,
    help="SQL dialect to print the DDL for.",
)
@module_option(required=False)
def db_sql(dialect: str, modules: tuple[str, ...]) -> None:
    """Print the CREATE statements of statekit's tables (and of the modules' mapped
    classes) for a migration you write yourself."""
    from sqlalchemy import create_mock_engine
    from sqlalchemy.schema import CreateIndex, CreateTable

    from statekit.store.sqlalchemy import statekit_tables

    url = {"postgresql": "postgresql+psycopg://", "sqlite": "sqlite://"}.get(
        dialect, f"{dialect}+pymysql://"
    )
    engine = create_mock_engine(url, lambda *a, **k: None)
    tables = list(statekit_tables().all)
    tables += [c.__table__ for c in load_modules(list(modules)).entities.values()]  # type: ignore[attr-defined]
    for table in tables:
        click.echo(f"{str(CreateTable(table).compile(dialect=engine.dialect)).strip()};\n")
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            click.echo(f"{str(CreateIndex(index).compile(dialect=engine.dialect)).strip()};\n")


@cli.command()
@click.argument("entity_type")
@click.argument("key")
@db_option()
@module_option()
@json_option()
def history(
    entity_type: str, key: str, db_url: str, modules: tuple[str, ...], as_json: bool
) -> None:
    """Where ENTITY_TYPE KEY is, since when, why, and what can happen next: state,
    deadline, stuck marker, the path with actors and payloads, the events allowed
    next and the compensations not done yet."""
    store = open_store(db_url, modules)
    snapshot = store.load(entity_type, key)
    records = store.history(entity_type, key)
    machine = store.binding(entity_type).machine
    open_tasks = store.compensations(entity_type, key, status=("pending", "running", "dead"))
    report = {
        "entity_type": entity_type,
        "key": key,
        "state": snapshot.state,
        "version": snapshot.version,
        "since": _iso(snapshot.entered_at),
        "deadline": _iso(snapshot.deadline_at),
        "stuck": snapshot.stuck_at is not None,
        "stuck_at": _iso(snapshot.stuck_at),
        "stuck_reason": snapshot.stuck_reason,
        "next_events": list(machine.events_from(snapshot.state)),
        "path": [
            {
                "seq": r.seq,
                "at": _iso(r.at),
                "event": r.event,
                "source": r.source,
                "target": r.target,
                "actor": r.actor,
                "payload": r.payload,
            }
            for r in records
        ],
        "pending_compensations": [
            {
                "step": t.step_seq,
                "action": t.action,
                "status": t.status,
                "attempts": t.attempts,
                "max_attempts": t.max_attempts,
                "next_attempt_at": _iso(t.next_attempt_at),
                "last_error": t.last_error,
            }
            for t in open_tasks
        ],
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(
        f"{printable(entity_type)} {printable(key)}: {snapshot.state} (version {snapshot.version})"
    )
    click.echo(f"  since     {_iso(snapshot.entered_at) or '-'}")
    click.echo(f"  deadline  {_iso(snapshot.deadline_at) or 'none'}")
    if snapshot.stuck_at is not None:
        reason = printable(snapshot.stuck_reason or "")
        click.echo(f"  STUCK     since {_iso(snapshot.stuck_at)}: {reason}")
    click.echo(f"  next      {', '.join(report['next_events']) or '(final state)'}")
    click.echo("  path")
    for r in records:
        actor = f" by {printable(r.actor)}" if r.actor else ""
        payload = f"  {printable(_summary(r.payload))}" if r.payload else ""
        click.echo(
            f"    {r.seq:>3}. {_iso(r.at)}  {r.source} --{r.event}--> {r.target}{actor}{payload}"
        )
    if open_tasks:
        click.echo("  compensations not done")
        for t in open_tasks:
            error = f"; last error: {printable(t.last_error)}" if t.last_error else ""
            when = (
                "dead-lettered: needs statekit retry or resolve"
                if t.status == "dead"
                else f"next at {_iso(t.next_attempt_at)}"
            )
            click.echo(
                f"    step {t.step_seq} {t.action}: {t.status}, {t.attempts}/{t.max_attempts} "
                f"attempts, {when}{error}"
            )


@cli.command()
@click.argument("entity_type")
@click.argument("key")
@db_option()
@module_option()
@click.option(
    "--keep-history",
    is_flag=True,
    envvar="STATEKIT_KEEP_HISTORY",
    show_envvar=True,
    help="Move the history to the retired tables for audit instead of deleting it.",
)
def delete(
    entity_type: str, key: str, db_url: str, modules: tuple[str, ...], keep_history: bool
) -> None:
    """Delete ENTITY_TYPE KEY: its row, history, compensations and their attempts, in
    one transaction (with --keep-history the history is retired, not deleted)."""
    store = open_store(db_url, modules)
    store.delete(entity_type, key, keep_history=keep_history)
    kept = "history retired" if keep_history else "history deleted"
    click.echo(f"{entity_type} {key}: deleted ({kept})")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def _summary(payload: dict[str, Any], limit: int = 60) -> str:
    text = ", ".join(f"{k}={v}" for k, v in payload.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@cli.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    envvar="STATEKIT_DEMO_DIR",
    show_envvar=True,
    help="Where the demo writes its SQLite file and diagrams.",
)
def demo(directory: Path) -> None:
    """Run a day of orders and tickets on a fresh SQLite file and report on it."""
    from statekit.cli.demo import run_demo

    run_demo(directory, progress=sys.stdout.isatty())
