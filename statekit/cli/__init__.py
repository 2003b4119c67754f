"""The `statekit` command line: one click group, every flag also an environment variable.

Errors print as one line and exit 1; `-v` prints the traceback as well. Without click
(`pip install 'statekit[cli]'`), `main` prints that install hint and exits 2.

The group is `statekit.cli.app.cli`; each module below adds its commands to it here.
Commands work on a `statekit.cli.context.Context`: the standalone CLI builds it from
`--db` and `--module` (`statekit.cli.sqlalchemy`), another host passes its own as
click's context object (`cli.main(args, obj=context)`).
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["INSTALL_HINT", "cli", "main"]

INSTALL_HINT = "statekit: the command line needs click: pip install 'statekit[cli]'"

try:
    import click
except ImportError:
    click = None  # type: ignore[assignment]

if click is not None:
    from statekit.cli import check, db, demo, diagram, history, stats, sweep
    from statekit.cli.app import cli

    for _command in (
        check.check,
        db.db,
        history.history,
        history.delete,
        demo.demo,
        diagram.diagram,
        stats.stats,
        *sweep.COMMANDS,
    ):
        cli.add_command(_command)
else:
    cli = None


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the `statekit` script."""
    if cli is None:
        print(INSTALL_HINT, file=sys.stderr)
        raise SystemExit(2)
    return cli.main(args=argv, prog_name="statekit")
