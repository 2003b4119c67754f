"""The `statekit` command line: one click group, every flag also an environment variable.

Errors print as one line and exit 1; `-v` prints the traceback as well. Without click
(`pip install 'statekit[cli]'`), `main` prints that install hint and exits 2.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

__all__ = ["INSTALL_HINT", "cli", "main"]

INSTALL_HINT = "statekit: the command line needs click: pip install 'statekit[cli]'"

try:
    import click
except ImportError:
    click = None  # type: ignore[assignment]

if click is not None:
    from statekit.cli import sweeping, views
    from statekit.cli.commands import cli

    for _command in (*sweeping.COMMANDS, *views.COMMANDS):
        cli.add_command(_command)
else:
    cli = None


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the `statekit` script."""
    if cli is None:
        print(INSTALL_HINT, file=sys.stderr)
        raise SystemExit(2)
    return cli.main(args=argv, prog_name="statekit")


def print_traceback() -> None:
    """Print the exception being handled, for `-v`."""
    traceback.print_exc(file=sys.stderr)
