"""The `statekit` click group, its one-line error handling, and how a command gets
its `Context`: the one a host put on click's context object, else the standalone
one built from the command's `--db` and `--module` (`statekit.cli.sqlalchemy`)."""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import click

from statekit.cli.context import Context
from statekit.errors import StatekitError

__all__ = [
    "EXTRAS",
    "HostedGroup",
    "cli",
    "current_context",
    "hosted",
    "install_hint",
    "pass_context",
]

P = ParamSpec("P")
R = TypeVar("R")


class _Group(click.Group):
    """Turns any error into one line on stderr and exit 1 (`-v`: with traceback)."""

    def prepare(self, ctx: click.Context) -> None:
        """Set `ctx` up before a command runs (a host puts its `Context` there)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            self.prepare(ctx)
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise  # click reports these itself (a closed pipe: quietly, exit 1)
        except Exception as exc:
            if ctx.params.get("verbose"):
                traceback.print_exc(file=sys.stderr)
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


class HostedGroup(_Group):
    """`cli`'s own commands (the same objects, no copies) under a host such as
    ``flask statekit``: before a command runs, `host` builds the host's `Context`
    and puts it on click's context object, and `defaults` gives the commands'
    option defaults (click's `default_map`, by command name; the command line and
    the environment still win).

    Args:
        name: The group's name in the host's command line.
        host: Builds the `Context` from the click context of the group.
        defaults: Option defaults by command name, from the host's settings.
        exclude: Commands of `cli` the host leaves out.
        help: The group's help text (`cli`'s by default).
    """

    def __init__(
        self,
        name: str,
        host: Callable[[click.Context], Context],
        *,
        defaults: Callable[[], dict[str, dict[str, Any]]] | None = None,
        exclude: Sequence[str] = (),
        help: str | None = None,
    ) -> None:
        commands = {n: c for n, c in cli.commands.items() if n not in exclude}
        super().__init__(
            name,
            commands=commands,
            params=list(cli.params),
            callback=cli.callback,
            help=help or cli.help,
            context_settings=cli.context_settings,
        )
        self.host = host
        self.defaults = defaults

    def prepare(self, ctx: click.Context) -> None:
        """Put the host's `Context` and option defaults on `ctx`."""
        ctx.obj = self.host(ctx)
        if self.defaults is not None:
            ctx.default_map = {**self.defaults(), **(ctx.default_map or {})}


def hosted() -> Context | None:
    """The `Context` a host put on click's context object, if any."""
    return click.get_current_context().find_object(Context)


def current_context(db_url: str | None, modules: Sequence[str]) -> Context:
    """The command's `Context`: the host's, else the standalone CLI's over `db_url`
    and the mapped classes in `modules` (its engine is disposed of when the command
    ends).

    Raises:
        StatekitError: the standalone context cannot be built (see
            `statekit.cli.sqlalchemy.standalone_context`).
    """
    found = hosted()
    if found is not None:
        return found
    if db_url is None:
        raise click.UsageError("this command reads the database: give --db URL (or STATEKIT_DB)")
    from statekit.cli.sqlalchemy import standalone_context

    return standalone_context(db_url, modules)


def pass_context(
    command: Callable[Concatenate[Context, P], R],
) -> Callable[..., R]:
    """Hand `command` its `Context` (see `current_context`) in place of the
    `db_url` and `modules` values of its `--db` and `--module` options."""

    @functools.wraps(command)
    def run(*args: Any, db_url: str | None, modules: tuple[str, ...], **kwargs: Any) -> R:
        return command(current_context(db_url, modules), *args, **kwargs)

    return run
