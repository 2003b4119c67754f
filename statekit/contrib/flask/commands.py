"""``flask statekit ...``: the standalone `statekit` commands, run in the app context
over the app's store and machines (`statekit.cli.app.HostedGroup`)."""

from __future__ import annotations

from typing import Any

import click
from flask import current_app
from flask.cli import ScriptInfo

import statekit.cli  # registers every command on statekit.cli.app.cli
from statekit.cli.app import HostedGroup
from statekit.cli.context import Context
from statekit.contrib.flask.state import state_of

__all__ = ["statekit_group"]

assert statekit.cli.cli is not None  # click is a dependency of Flask


def _app_context(ctx: click.Context) -> Context:
    """The app's `Context`, with the app context pushed for the command's run."""
    if not current_app:
        app = ctx.ensure_object(ScriptInfo).load_app()
        ctx.with_resource(app.app_context())
    return state_of(current_app._get_current_object()).context()  # type: ignore[attr-defined]


def _defaults() -> dict[str, dict[str, Any]]:
    """`flask statekit sweep`'s option defaults from the app's `STATEKIT_SWEEP_*`."""
    settings = state_of(current_app._get_current_object()).settings  # type: ignore[attr-defined]
    sweep: dict[str, Any] = {
        "interval": settings.sweep_interval,
        "batch_size": settings.sweep_batch_size,
        "lease": settings.sweep_lease,
    }
    if settings.handler_timeout is not None:
        sweep["handler_timeout"] = settings.handler_timeout
    return {"sweep": sweep}


def statekit_group() -> click.Group:
    """The ``statekit`` group an app's `flask` command gets (`demo` left out: it
    runs on a database of its own)."""
    return HostedGroup("statekit", _app_context, defaults=_defaults, exclude=("demo",), help=HELP)


HELP = """statekit's commands on this app's database and machines.

The machines are those of the app's db.Model classes with __statekit_machine__
(and StateKit's entities=); no --db or --module is needed. Sweep settings come
from the app's STATEKIT_SWEEP_* config."""
