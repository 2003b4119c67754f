"""`statekit check`: the machines are valid, and (with a database) every stored
instance fits them."""

from __future__ import annotations

import click

from statekit.cli.app import current_context, hosted
from statekit.cli.context import Context
from statekit.cli.loading import load_modules
from statekit.cli.options import db_option, module_option
from statekit.engine import Machine
from statekit.errors import DefinitionError, StatekitError

__all__ = ["check", "stored_problems"]


@click.command()
@module_option()
@db_option(required=False)
def check(modules: tuple[str, ...], db_url: str | None) -> None:
    """Validate the machines declared in the modules; with --db, also check that every
    stored state and definition version is known to them, and that every row's
    state_version agrees with its history (as many transitions, the last one's seq).

    Exit 1 lists every offender.
    """
    problems: list[str] = []
    host = hosted()
    machines: dict[str, Machine] | None = None
    if host is not None:
        machines = dict(host.machines)
    else:
        try:
            machines = load_modules(list(modules)).machines
        except DefinitionError as exc:
            problems.extend(f"{exc.machine}: {p}" for p in exc.problems)
    if machines is not None:
        if not machines:
            where = "the host's context" if host is not None else ", ".join(modules)
            raise StatekitError(f"no machines found in {where}")
        if host is not None or db_url is not None:
            problems.extend(stored_problems(current_context(db_url, modules)))
    if problems:
        for problem in problems:
            click.echo(problem, err=True)
        raise click.ClickException(f"{len(problems)} problem(s) found")
    assert machines is not None
    names = ", ".join(f"{m.name} v{m.version}" for m in machines.values())
    click.echo(f"ok: {names}")


def stored_problems(context: Context) -> list[str]:
    """What the stored instances hold that their machines do not know, and rows whose
    version disagrees with their history."""
    problems = []
    for machine in context.machines.values():
        where = context.stored_in(machine.name)
        for stored in context.reads.stored_states(machine.name):
            if stored.state not in machine.states:
                problems.append(
                    f"{machine.name}: {stored.count} row(s) of {where} in unknown "
                    f"state {stored.state!r}"
                )
            version = stored.definition_version
            if version is not None and version not in machine.spec.accepted_versions:
                problems.append(
                    f"{machine.name}: {stored.count} row(s) of {where} under "
                    f"unknown definition version {version}"
                )
    for machine in context.machines.values():
        for row in context.reads.disagreements(machine.name):
            last = "" if row.last_seq is None else f", the last seq {row.last_seq}"
            problems.append(
                f"{machine.name} {row.key}: state_version {row.version} but its history has "
                f"{row.transitions} transition(s){last} ({context.stored_in(machine.name)}; "
                "see docs/upgrading.md)"
            )
    return problems
