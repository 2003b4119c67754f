"""`statekit stats`: per machine and state, instances now, stuck ones, how long
instances stay, and how often each event fired in a time window.

Counts, stays and waiting instances come from the context's `Reads`.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import click

from statekit.cli.app import current_context, hosted
from statekit.cli.context import Context
from statekit.cli.options import (
    db_option,
    json_option,
    module_option,
    parse_now,
    parse_since,
    since_option,
)
from statekit.engine import Machine
from statekit.errors import UnknownMachineError

__all__ = ["StateStats", "percentile", "stats"]


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


def _machine_stats(
    context: Context, machine: Machine, since: datetime, now: datetime
) -> dict[str, Any]:
    reads = context.reads
    per_state = {name: StateStats(name) for name in machine.states}

    def figures(state: str) -> StateStats:
        return per_state.setdefault(state, StateStats(state))

    for state, count in reads.count_by_state(machine.name).items():
        figures(state).now = count
    for state, count in reads.count_by_state(machine.name, stuck_only=True).items():
        figures(state).stuck = count
    for stay in reads.stays(machine.name, since, now):
        figures(stay.state).stays.append(stay.seconds)
    for waiting in reads.waiting(machine.name, now):
        figures(waiting.state).waiting.append(max((now - waiting.entered_at).total_seconds(), 0.0))

    events: dict[str, int] = {}
    counts = reads.transition_counts(machine.name, since=since, until=now)
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
@module_option(
    required=False,
    help_text="Module declaring the mapped classes with __statekit_machine__ (repeatable).",
)
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
    if not modules and hosted() is None:
        raise click.ClickException(
            "stats needs the mapped classes: name their module with --module (or STATEKIT_MODULES)"
        )
    now = parse_now(now_text)
    start = parse_since(since, now)
    context = current_context(db_url, modules)
    machines = sorted(context.machines.values(), key=lambda m: m.name)
    if machine_names:
        known = {m.name for m in machines}
        unknown = [n for n in machine_names if n not in known]
        if unknown:
            raise UnknownMachineError(unknown, known=known)
        machines = [m for m in machines if m.name in machine_names]
    report = {
        "since": start.isoformat(),
        "now": now.isoformat(),
        "machines": [_machine_stats(context, m, start, now) for m in machines],
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
