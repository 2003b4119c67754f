"""`statekit diagram` and `statekit stats`: what a machine looks like and how it behaves.

`diagram` draws a machine's design, one instance's path (from its history) or the
heat of all instances (transition counts, instances per state, stuck ones); `stats`
reports, per machine and state, instances now, stuck ones, how long instances stay,
and how often each event fired in a time window.

Both read the database through `SQLAlchemyStore`: counts are SQL aggregations, and
time in state comes from one pass over the history rows of the window.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from statekit.cli.commands import db_option, json_option, open_store
from statekit.cli.loading import resolve_machine
from statekit.engine import Machine
from statekit.errors import StatekitError

__all__ = ["diagram", "parse_since", "percentile", "stats"]

F = TypeVar("F", bound=Callable[..., Any])

FORMATS = ("svg", "png", "pdf", "dot", "mermaid")
_BINARY = frozenset({"png", "pdf"})
_SUFFIXES = {
    ".svg": "svg",
    ".png": "png",
    ".pdf": "pdf",
    ".dot": "dot",
    ".gv": "dot",
    ".mmd": "mermaid",
    ".mermaid": "mermaid",
}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


# -- parsing ---------------------------------------------------------------------------


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
    moment = _parse_moment(text)
    if moment is None:
        raise click.BadParameter(
            f"{text!r} is neither a duration (30m, 24h, 7d, 1h30m) nor an ISO 8601 time",
            param_hint="--since",
        )
    return moment


def _parse_moment(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _now_option_value(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    moment = _parse_moment(text)
    if moment is None:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint="--now")
    return moment


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th quantile (0..1) of sorted `values`, interpolating linearly between
    the closest ranks (as numpy's default does); `values` must not be empty."""
    position = q * (len(values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def _duration_text(seconds: float | None) -> str:
    """``45s``, ``12m``, ``3h 5m``, ``2d 4h``; ``-`` for no value."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.0f}s" if seconds >= 1 or seconds == 0 else f"{seconds:.2f}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, whole = divmod(whole, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return " ".join(parts[:2])


# -- shared options --------------------------------------------------------------------


def modules_option(help_text: str) -> Callable[[F], F]:
    """`--module/-m` (STATEKIT_MODULES, space separated)."""
    return click.option(
        "--module",
        "-m",
        "modules",
        multiple=True,
        envvar="STATEKIT_MODULES",
        show_envvar=True,
        metavar="MODULE",
        help="Another module to search for mapped classes with __statekit_machine__ (repeatable).",
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


# -- diagram ---------------------------------------------------------------------------


def _resolve(spec: str) -> Machine:
    """`module:attr` naming a Workflow, a Machine or a class with __statekit_machine__."""
    module_name, _, attribute = spec.partition(":")
    if attribute:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            return resolve_machine(spec)  # says which module is missing, in one line
        value = getattr(module, attribute, None)
        machine = vars(value).get("__statekit_machine__") if isinstance(value, type) else None
        if isinstance(machine, Machine):
            return machine
    return resolve_machine(spec)


def _format_for(format_name: str | None, output: Path | None) -> str:
    if format_name is not None:
        return format_name
    if output is not None:
        return _SUFFIXES.get(output.suffix.lower(), "svg")
    return "svg"


@click.command()
@click.argument("target", metavar="MODULE:ATTR")
@click.option(
    "--format",
    "-f",
    "format_name",
    type=click.Choice(FORMATS),
    envvar="STATEKIT_DIAGRAM_FORMAT",
    show_envvar=True,
    help="Output format. svg, png and pdf need Graphviz's dot; dot and mermaid are text. "
    "Default: from -o's extension (.svg .png .pdf .dot .gv .mmd), else svg.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="STATEKIT_DIAGRAM_OUTPUT",
    show_envvar=True,
    metavar="FILE",
    help="Write to FILE instead of stdout (required for png and pdf).",
)
@click.option(
    "--instance",
    "instance_key",
    envvar="STATEKIT_INSTANCE",
    show_envvar=True,
    metavar="KEY",
    help="Draw this instance's path from its history, its current state highlighted (needs --db).",
)
@click.option(
    "--heat",
    is_flag=True,
    envvar="STATEKIT_HEAT",
    show_envvar=True,
    help="Draw the traffic of all instances: times each transition was taken, instances "
    "per state and stuck now; never-taken transitions faded (needs --db).",
)
@db_option(required=False)
@modules_option(
    "Another module to search for the mapped class with __statekit_machine__ (repeatable)."
)
@since_option(None, "With --heat, count only transitions since WHEN")
def diagram(
    target: str,
    format_name: str | None,
    output: Path | None,
    instance_key: str | None,
    heat: bool,
    db_url: str | None,
    modules: tuple[str, ...],
    since: str | None,
) -> None:
    """Draw the machine MODULE:ATTR (a Workflow class, a Machine, or a mapped class
    with __statekit_machine__), or with --instance/--heat what its instances did.

    \b
    Examples:
      statekit diagram models.order:OrderWorkflow -o order.svg
      statekit diagram models.order:OrderWorkflow --format mermaid
      statekit diagram models.orm:OrderRow --instance 42 --db sqlite:///app.db -o 42.png
      statekit diagram models.order:OrderWorkflow --heat --since 7d \\
          --db postgresql+psycopg://u@h/db -m models.orm -o heat.svg

    For --instance and --heat the mapped class that stores the machine is looked
    up in MODULE and in every --module.
    """
    from statekit.diagrams import (
        heat_graph,
        instance_graph,
        machine_graph,
        render,
        to_dot,
        to_mermaid,
    )

    fmt = _format_for(format_name, output)
    if fmt in _BINARY and output is None:
        raise click.ClickException(f"{fmt} is a binary format: write it to a file with -o FILE")
    if instance_key is not None and heat:
        raise click.ClickException("choose one of --instance and --heat")
    if since is not None and not heat:
        raise click.ClickException("--since limits the counts of --heat; add --heat")
    if (instance_key is not None or heat) and db_url is None:
        option = "--heat" if heat else "--instance"
        raise click.ClickException(f"{option} reads the database: give --db URL (or STATEKIT_DB)")
    machine = _resolve(target)
    if instance_key is None and not heat:
        graph = machine_graph(machine)
    else:
        assert db_url is not None
        store = open_store(db_url, (target.partition(":")[0], *modules))
        _require_entity_class(store, machine, target, modules)
        if instance_key is not None:
            graph = instance_graph(
                machine,
                store.load(machine.name, instance_key),
                store.history(machine.name, instance_key),
            )
        else:
            moment = None if since is None else parse_since(since, datetime.now(UTC))
            graph = heat_graph(
                machine,
                store.transition_counts(machine.name, since=moment),
                store.count_by_state(machine.name),
                store.count_by_state(machine.name, stuck_only=True),
            )
    data: bytes
    if fmt == "dot":
        data = to_dot(graph).encode()
    elif fmt == "mermaid":
        data = to_mermaid(graph).encode()
    else:
        data = render(graph, fmt)  # type: ignore[arg-type]
    if output is None:
        click.echo(data.decode(), nl=False)
        return
    output.write_bytes(data)
    click.echo(f"wrote {output} ({fmt}, {len(data)} bytes)", err=True)


def _require_entity_class(
    store: Any, machine: Machine, target: str, modules: Sequence[str]
) -> type:
    for candidate, entity_class in store.entities().items():
        if candidate.name == machine.name:
            return entity_class  # type: ignore[no-any-return]
    searched = ", ".join([target.partition(":")[0], *modules])
    raise StatekitError(
        f"no mapped class stores machine {machine.name!r} in {searched}; name the module "
        "that maps it with --module (a class with __statekit_machine__)"
    )


# -- stats -----------------------------------------------------------------------------


@dataclass
class StateStats:
    """Figures for one state of one machine."""

    state: str
    now: int = 0
    stuck: int = 0
    stays: list[float] = field(default_factory=list)
    waiting: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        stays, waiting = sorted(self.stays), sorted(self.waiting)
        return {
            "state": self.state,
            "now": self.now,
            "stuck": self.stuck,
            "left": len(stays),
            "median_seconds": _rounded(statistics.median(stays)) if stays else None,
            "p95_seconds": _rounded(percentile(stays, 0.95)) if stays else None,
            "waiting_median_seconds": _rounded(statistics.median(waiting)) if waiting else None,
            "waiting_p95_seconds": _rounded(percentile(waiting, 0.95)) if waiting else None,
        }


def _rounded(seconds: float) -> float:
    return round(seconds, 3)


def _machine_stats(store: Any, machine: Machine, since: datetime, now: datetime) -> dict[str, Any]:
    per_state = {name: StateStats(name) for name in machine.states}

    def figures(state: str) -> StateStats:
        return per_state.setdefault(state, StateStats(state))

    for state, count in store.count_by_state(machine.name).items():
        figures(state).now = count
    for state, count in store.count_by_state(machine.name, stuck_only=True).items():
        figures(state).stuck = count
    for stay in store.stays(machine.name, since, now):
        figures(stay.state).stays.append(stay.seconds)
    for waiting in store.waiting(machine.name, now):
        figures(waiting.state).waiting.append(max((now - waiting.entered_at).total_seconds(), 0.0))

    events: dict[str, int] = {}
    counts = store.transition_counts(machine.name, since=since, until=now)
    for (_, event, _), count in sorted(counts.items()):
        events[event] = events.get(event, 0) + count
    return {
        "machine": machine.name,
        "version": machine.version,
        "states": [per_state[name].as_dict() for name in per_state],
        "transitions": sum(events.values()),
        "events": dict(sorted(events.items(), key=lambda item: (-item[1], item[0]))),
    }


@click.command()
@db_option()
@modules_option("Module declaring the mapped classes with __statekit_machine__ (repeatable).")
@click.option(
    "--machine",
    "machine_names",
    multiple=True,
    envvar="STATEKIT_MACHINE",
    show_envvar=True,
    metavar="NAME",
    help="Report only this machine (repeatable); default: every machine found.",
)
@since_option("24h", "Window for time in state and transitions per event")
@click.option(
    "--now",
    "now_text",
    envvar="STATEKIT_NOW",
    show_envvar=True,
    metavar="TIME",
    help="End the window and measure waiting times at this ISO 8601 time instead of "
    "the current time (for reproducible reports).",
)
@json_option()
def stats(
    db_url: str,
    modules: tuple[str, ...],
    machine_names: tuple[str, ...],
    since: str,
    now_text: str | None,
    as_json: bool,
) -> None:
    """Per machine and state: instances now, stuck, time in the state, and
    transitions per event in a window (default: the last 24 hours).

    \b
    Columns:
      now     instances in the state now; stuck: how many of them are stuck
      left    stays that ended in the window (an instance left the state)
      median  median / 95th percentile of those stays, entered to left
      p95
      wait    median / 95th percentile of how long the instances in a
      wait95  non-final state now have been there, up to now

    Stays count from the transition that entered the state, so a first stay
    in the initial state (starting an instance writes no history row) shows
    only in the wait columns. Percentiles interpolate between ranks.

    \b
    Example:
      statekit stats --db sqlite:///app.db -m myapp.models --since 7d --json
    """
    if not modules:
        raise click.ClickException(
            "stats needs the mapped classes: name their module with --module (or STATEKIT_MODULES)"
        )
    now = _now_option_value(now_text)
    start = parse_since(since, now)
    store = open_store(db_url, modules)
    machines = sorted(store.entities(), key=lambda m: m.name)
    if machine_names:
        known = {m.name for m in machines}
        unknown = [n for n in machine_names if n not in known]
        if unknown:
            raise StatekitError(
                f"unknown machine {', '.join(unknown)}; found: {', '.join(sorted(known))}"
            )
        machines = [m for m in machines if m.name in machine_names]
    report = {
        "since": start.isoformat(),
        "now": now.isoformat(),
        "machines": [_machine_stats(store, m, start, now) for m in machines],
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    _print_stats(report)


def _print_stats(report: dict[str, Any]) -> None:
    window = f"{report['since'][:19].replace('T', ' ')} to {report['now'][:19].replace('T', ' ')}"
    for position, machine in enumerate(report["machines"]):
        if position:
            click.echo("")
        click.echo(
            f"{machine['machine']} (v{machine['version']}): {machine['transitions']} "
            f"transition(s) from {window} UTC"
        )
        headers = ("state", "now", "stuck", "left", "median", "p95", "wait", "wait95")
        rows = [
            (
                s["state"],
                str(s["now"]),
                str(s["stuck"]),
                str(s["left"]),
                _duration_text(s["median_seconds"]),
                _duration_text(s["p95_seconds"]),
                _duration_text(s["waiting_median_seconds"]),
                _duration_text(s["waiting_p95_seconds"]),
            )
            for s in machine["states"]
        ]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        for row in (headers, *rows):
            cells = [row[0].ljust(widths[0])]
            cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
            click.echo("  " + "  ".join(cells).rstrip())
        events = machine["events"]
        listed = ", ".join(f"{event} {count}" for event, count in events.items())
        click.echo(f"  events: {listed or 'none in the window'}")


COMMANDS = (diagram, stats)
"""The commands this module adds to `statekit` (registered in `statekit.cli`)."""
