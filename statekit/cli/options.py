"""Every option the commands share, declared once, and the parsing of times.

`--db` and `--module` are how the standalone CLI builds its `Context`; they are
`HostOption`s, required only when no host handed the commands a `Context` of its own.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click

from statekit.cli.context import Context

__all__ = [
    "DURATION",
    "Duration",
    "HostOption",
    "actor_option",
    "db_option",
    "json_option",
    "module_option",
    "namespace",
    "namespace_options",
    "parse_duration",
    "parse_moment",
    "parse_now",
    "parse_since",
    "since_option",
]

F = TypeVar("F", bound=Callable[..., Any])

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


class HostOption(click.Option):
    """An option the standalone CLI builds its `Context` from: not required when a host
    put a `Context` on click's context object (the help still says what the standalone
    CLI requires)."""

    @property
    def required(self) -> bool:
        ctx = click.get_current_context(silent=True)
        return self._required and (ctx is None or ctx.find_object(Context) is None)

    @required.setter
    def required(self, value: bool) -> None:
        self._required = value


NAMESPACE = "statekit.namespace"
"""Key of `--table-prefix` and `--schema` in click's `ctx.meta` (see `namespace`)."""


def namespace() -> dict[str, Any]:
    """The `table_prefix` and `schema` the command was given (`SQLAlchemyStore`'s
    keyword arguments; empty for the defaults)."""
    ctx = click.get_current_context(silent=True)
    found: dict[str, Any] = {} if ctx is None else ctx.meta.get(NAMESPACE, {})
    return found


def _remember(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None and param.name is not None:
        ctx.meta.setdefault(NAMESPACE, {})[param.name] = value


def _namespace_option(flag: str, metavar: str, help_text: str) -> Callable[[F], F]:
    name = flag.removeprefix("--").replace("-", "_")
    return click.option(
        flag,
        name,
        envvar=f"STATEKIT_{name.upper()}",
        show_envvar=True,
        expose_value=False,
        callback=_remember,
        metavar=metavar,
        help=help_text,
    )


def namespace_options(command: F) -> F:
    """`--table-prefix` (STATEKIT_TABLE_PREFIX) and `--schema` (STATEKIT_SCHEMA):
    where statekit's tables are; kept in `ctx.meta` for the standalone host."""
    prefix = _namespace_option(
        "--table-prefix",
        "PREFIX",
        "Prefix of statekit's table names (the store's table_prefix; default statekit_).",
    )
    schema = _namespace_option(
        "--schema",
        "SCHEMA",
        "Schema of statekit's tables (MySQL/MariaDB: the database); default: the URL's.",
    )
    return prefix(schema(command))


def db_option(required: bool = True, *, hosted: bool = True) -> Callable[[F], F]:
    """`--db URL` (STATEKIT_DB), with `namespace_options`; a `HostOption` unless
    `hosted` is False (for a command that works on the database itself, with or
    without a host's `Context`)."""
    db = click.option(
        "--db",
        "db_url",
        cls=HostOption if hosted else click.Option,
        envvar="STATEKIT_DB",
        show_envvar=True,
        required=required,
        metavar="URL",
        help="SQLAlchemy database URL, e.g. sqlite:///app.db or postgresql+psycopg://u@h/db.",
    )
    return lambda command: db(namespace_options(command))


MODULE_HELP = (
    "Module declaring the machines and mapped classes (repeatable; found from the current "
    "directory)"
)


def module_option(required: bool = True, help_text: str | None = None) -> Callable[[F], F]:
    """`--module/-m MODULE` (repeatable; STATEKIT_MODULES, space separated): the one
    way every command is told where the machines and mapped classes are."""
    return click.option(
        "--module",
        "-m",
        "modules",
        cls=HostOption,
        multiple=True,
        required=required,
        envvar="STATEKIT_MODULES",
        show_envvar=True,
        metavar="MODULE",
        help=help_text or MODULE_HELP + ("." if required else "; optional."),
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


def since_option(default: str | None, what: str) -> Callable[[F], F]:
    """`--since` (STATEKIT_SINCE)."""
    return click.option(
        "--since",
        default=default,
        show_default=default is not None,
        envvar="STATEKIT_SINCE",
        show_envvar=True,
        metavar="WHEN",
        help=f"{what}: a duration back from now (30m, 24h, 7d, 1h30m) or an ISO 8601 time.",
    )


def actor_option() -> Callable[[F], F]:
    """`--actor` (STATEKIT_ACTOR), by default the current user."""
    return click.option(
        "--actor",
        envvar="STATEKIT_ACTOR",
        show_envvar=True,
        default=lambda: os.environ.get("USER") or getpass.getuser(),
        show_default="the current user",
        help="Who is acting; recorded in the instance's history.",
    )


def parse_duration(text: str) -> timedelta | None:
    """A duration such as ``30m``, ``24h``, ``7d`` or ``1h30m`` (units s, m, h, d, w),
    or None when `text` is not one."""
    compact = text.strip().lower().replace(" ", "")
    if not compact or _DURATION.sub("", compact) != "":
        return None
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(compact))
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        return None


class Duration(click.ParamType[timedelta]):
    """A positive duration option (``7d``, ``12h``, ``1h30m``) read as a `timedelta`."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        found = parse_duration(str(value))
        if found is None or found <= timedelta(0):
            self.fail(
                f"{value!r} is not a positive duration (30m, 24h, 7d, 1h30m; units s, m, h, d, w)",
                param,
                ctx,
            )
        return found


DURATION = Duration()
"""The click type of duration options (`--keep-done`, `--older-than`)."""


def parse_since(text: str, now: datetime) -> datetime:
    """Turn `--since` into a moment: a duration back from `now` (``30m``, ``24h``,
    ``7d``, ``1h30m``; units s, m, h, d, w) or an ISO 8601 time (UTC if no zone).

    Raises:
        click.BadParameter: neither form.
    """
    compact = text.strip().lower().replace(" ", "")
    if compact and _DURATION.sub("", compact) == "":
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(compact))
        try:
            return now - timedelta(seconds=seconds)
        except OverflowError:
            raise click.BadParameter(
                f"{text!r} reaches too far back (before the year 1)", param_hint="--since"
            ) from None
    moment = parse_moment(text)
    if moment is None:
        raise click.BadParameter(
            f"{text!r} is neither a duration (30m, 24h, 7d, 1h30m) nor an ISO 8601 time",
            param_hint="--since",
        )
    return moment


def parse_moment(text: str) -> datetime | None:
    """An ISO 8601 time in UTC (UTC if it names no zone), or None."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_now(text: str | None) -> datetime:
    """`--now`: the given ISO 8601 time, or the current time.

    Raises:
        click.BadParameter: not an ISO 8601 time.
    """
    if text is None:
        return datetime.now(UTC)
    moment = parse_moment(text)
    if moment is None:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint="--now")
    return moment
