"""`statekit diagram`: what a machine looks like, one instance's path (from its
history), or the heat of all instances (transition counts, instances per state,
stuck ones)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import click

from statekit.cli.app import current_context, hosted
from statekit.cli.context import Context
from statekit.cli.loading import resolve_machine
from statekit.cli.options import db_option, module_option, parse_since, since_option
from statekit.engine import Machine
from statekit.errors import StatekitError, UnknownMachineError

__all__ = ["FORMATS", "diagram"]

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


def _resolve(spec: str) -> Machine:
    """`module:attr` naming a Workflow, a Machine or a class with __statekit_machine__,
    imported from the current directory first (see `loading.import_module`); under a
    host, also the name of one of the host's machines."""
    host = hosted()
    if host is None or ":" in spec:
        return resolve_machine(spec)
    if spec in host.machines:
        return host.machines[spec]
    try:
        return resolve_machine(spec)
    except StatekitError as exc:
        if not isinstance(exc.__cause__, ModuleNotFoundError):
            raise
        # Neither one of the host's machines nor a module: say what there is.
        raise UnknownMachineError([spec], known=host.machines) from None


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
@module_option(
    required=False,
    help_text="Another module to search for the mapped class with __statekit_machine__ "
    "(repeatable).",
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
    Under a host (``flask statekit diagram order``) a machine's name will do.

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
    if (instance_key is not None or heat) and db_url is None and hosted() is None:
        option = "--heat" if heat else "--instance"
        raise click.ClickException(f"{option} reads the database: give --db URL (or STATEKIT_DB)")
    machine = _resolve(target)
    if instance_key is None and not heat:
        graph = machine_graph(machine)
    else:
        context = current_context(db_url, (target.partition(":")[0], *modules))
        _require_stored(context, machine, target, modules)
        reads = context.reads
        if instance_key is not None:
            graph = instance_graph(
                machine,
                reads.load(machine.name, instance_key),
                reads.history(machine.name, instance_key),
            )
        else:
            moment = None if since is None else parse_since(since, datetime.now(UTC))
            graph = heat_graph(
                machine,
                reads.transition_counts(machine.name, since=moment),
                reads.count_by_state(machine.name),
                reads.count_by_state(machine.name, stuck_only=True),
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


def _require_stored(
    context: Context, machine: Machine, target: str, modules: Sequence[str]
) -> None:
    if machine.name in context.machines:
        return
    searched = ", ".join([target.partition(":")[0], *modules])
    raise StatekitError(
        f"no mapped class stores machine {machine.name!r} in {searched}; name the module "
        "that maps it with --module (a class with __statekit_machine__)"
    )
