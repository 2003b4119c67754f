"""``manage.py statekit ...``: the standalone `statekit` commands (the same click
objects, `statekit.cli.app.HostedGroup`) over the installed apps' machines and the
project's database; no ``--db`` or ``--module``.

From the shell the whole command line after ``statekit`` goes to click, so the
output, the options (``-v`` for tracebacks, ``--help``) and the exit codes are the
standalone command's. `call_command("statekit", "history", "order", "1")` runs the
same commands; a failure raises `CommandError` with click's message and exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import ExitStack, redirect_stderr, redirect_stdout
from typing import Any

import click
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from statekit.cli.app import HostedGroup
from statekit.cli.context import Context
from statekit.contrib.django.hosting import SweepSettings, host

__all__ = ["HELP", "Command", "statekit_group"]

HELP = """statekit's commands on this project's database and machines.

The machines are those of the installed apps' models with __statekit_machine__; no
--db or --module is needed. Sweep settings come from STATEKIT_SWEEP_* in settings.py.
Django's migrations own the tables (no `db` command here)."""


def _context(ctx: click.Context) -> Context:
    return host().context()


def _defaults() -> dict[str, dict[str, Any]]:
    return SweepSettings.read().command_defaults()


def statekit_group() -> click.Group:
    """The group ``manage.py statekit`` runs (`demo` and `db` left out: the demo has a
    database of its own, and Django's migrations own the schema)."""
    return HostedGroup("statekit", _context, defaults=_defaults, exclude=("demo", "db"), help=HELP)


class Command(BaseCommand):
    """``manage.py statekit COMMAND ...``."""

    help = HELP
    requires_system_checks: list[str] = []  # noqa: RUF012 - `statekit check` reads them

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "args", nargs=argparse.REMAINDER, metavar="COMMAND ...", help="see `statekit --help`"
        )

    def run_from_argv(self, argv: list[str]) -> None:
        """From the shell: click parses the rest of the line and exits as the
        standalone CLI does."""
        prog = f"{os.path.basename(argv[0])} {argv[1]}"
        try:
            statekit_group().main(args=argv[2:], prog_name=prog)
        finally:
            connections.close_all()

    def handle(self, *args: str, **options: Any) -> None:
        """From `call_command`: output to its ``stdout``/``stderr`` (else the
        process's); a failure raises `CommandError`."""
        with ExitStack() as stack:
            stack.enter_context(redirect_stdout(options.get("stdout") or sys.stdout))
            stack.enter_context(redirect_stderr(options.get("stderr") or sys.stderr))
            try:
                code = statekit_group().main(
                    args=list(args), prog_name="manage.py statekit", standalone_mode=False
                )
            except click.ClickException as exc:
                raise CommandError(exc.format_message(), returncode=exc.exit_code) from exc
            except click.Abort as exc:
                raise CommandError("aborted", returncode=1) from exc
            if isinstance(code, int) and code != 0:
                raise CommandError(f"statekit exited with {code}", returncode=code)
