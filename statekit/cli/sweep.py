"""`statekit sweep`, `stuck`, `retry` and `resolve`: the sweeper and a person's levers.

Exit codes of `statekit sweep`: 0 after `--once`, or after a SIGTERM/SIGINT let the
instance in progress finish; 1 on an error (bad database URL, unknown module, a store
failure with `--once`, or `--max-failures` failed passes in a row when running
continuously); 2 on bad usage; 130 when a second signal stops it at once.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from datetime import timedelta
from types import FrameType
from typing import Any

import click

from statekit.cli.app import current_context, pass_context
from statekit.cli.context import Context
from statekit.cli.options import actor_option, db_option, json_option, module_option
from statekit.cli.output import printable
from statekit.compensation import CompensationTask
from statekit.sweeper import DEFAULT_HANDLER_TIMEOUT, Sweeper, SweepResult

__all__ = ["COMMANDS", "resolve", "retry", "stuck", "sweep"]


def _sweeper(
    db_url: str,
    modules: tuple[str, ...],
    batch_size: int = 100,
    lease: float = 300.0,
    handler_timeout: float | None = None,
    concurrency: int = 1,
) -> Sweeper:
    timeout: timedelta | None = DEFAULT_HANDLER_TIMEOUT
    if handler_timeout is not None:
        if handler_timeout >= lease:
            raise click.UsageError(
                f"--handler-timeout ({handler_timeout:g}s) must be shorter than --lease "
                f"({lease:g}s), or 0 for no limit"
            )
        timeout = timedelta(seconds=handler_timeout) if handler_timeout else None
    return current_context(db_url, modules).sweeper(
        batch_size=batch_size,
        lease=timedelta(seconds=lease),
        handler_timeout=timeout,
        concurrency=concurrency,
    )


def _summary(result: SweepResult) -> str:
    return ", ".join(
        f"{name.replace('_', ' ')} {count}" for name, count in result.as_dict().items()
    )


@click.command()
@db_option()
@module_option()
@click.option(
    "--once",
    is_flag=True,
    envvar="STATEKIT_SWEEP_ONCE",
    show_envvar=True,
    help="Run one pass and exit (for cron or a Kubernetes CronJob).",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    envvar="STATEKIT_SWEEP_INTERVAL",
    show_envvar=True,
    help="Seconds between passes when running continuously.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    envvar="STATEKIT_BATCH_SIZE",
    show_envvar=True,
    help="Overdue instances claimed per transaction.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    envvar="STATEKIT_SWEEP_CONCURRENCY",
    show_envvar=True,
    help="Compensation handlers run at once in a thread pool (never two of one "
    "instance); size the database pool for it.",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    envvar="STATEKIT_LEASE",
    show_envvar=True,
    help="Seconds a claimed compensation is reserved before another sweeper may take "
    "it over (its sweeper died); longer than --handler-timeout.",
)
@click.option(
    "--handler-timeout",
    type=click.FloatRange(min=0),
    default=None,
    show_default="60, or half of --lease when shorter",
    envvar="STATEKIT_HANDLER_TIMEOUT",
    show_envvar=True,
    help="Seconds to wait for a compensation handler before counting the attempt as "
    "failed (0: no limit).",
)
@click.option(
    "--max-failures",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    envvar="STATEKIT_SWEEP_MAX_FAILURES",
    show_envvar=True,
    help="Exit 1 after this many failed passes in a row (0: never) when running "
    "continuously; the wait after a failed pass doubles from --interval up to 5 minutes.",
)
@json_option()
def sweep(
    db_url: str,
    modules: tuple[str, ...],
    once: bool,
    interval: float,
    batch_size: int,
    max_failures: int,
    lease: float,
    handler_timeout: float | None,
    concurrency: int,
    as_json: bool,
) -> None:
    """Time out overdue instances and run due compensations.

    Runs one pass with --once, otherwise a pass every --interval seconds until
    SIGTERM or SIGINT, which let the instance or the handlers in progress finish
    (or time out) and exit 0, claiming nothing new; a
    second signal exits at once with 130. A failed pass (the database went away)
    is logged and retried after a growing wait, up to --max-failures in a row.
    With --json every pass prints one JSON object on stdout; logs always go to
    stderr. Many sweepers may run against one database: they claim disjoint
    instances.
    """
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    sweeper = _sweeper(db_url, modules, batch_size, lease, handler_timeout, concurrency)

    def report(result: SweepResult) -> None:
        if as_json:
            click.echo(json.dumps(result.as_dict()))
        else:
            click.echo(f"swept: {_summary(result)}")
        sys.stdout.flush()

    if once:
        report(sweeper.run_once())
        return
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            os._exit(130)
        stop.set()  # first: the log line below may fail
        try:
            logging.getLogger("statekit.sweeper").info(
                "signal %d: finishing the current batch, then exiting", signum
            )
        except Exception:  # the signal landed inside a write to the same stream (reentrant)
            pass

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        sweeper.run_forever(interval, stop, on_pass=report, max_failures=max_failures)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.command()
@db_option()
@module_option()
@json_option()
@pass_context
def stuck(context: Context, as_json: bool) -> None:
    """List stuck instances with their compensations (dead-lettered ones need a person:
    `statekit retry` or `statekit resolve`)."""
    rows: list[dict[str, Any]] = []
    for name in context.machines:
        tasks: dict[str, list[CompensationTask]] = {}
        for task in context.reads.compensations(name):
            tasks.setdefault(task.key, []).append(task)
        for snapshot in context.reads.stuck(name):
            rows.append(
                {
                    "entity_type": snapshot.entity_type,
                    "key": snapshot.key,
                    "state": snapshot.state,
                    "stuck_at": snapshot.stuck_at.isoformat() if snapshot.stuck_at else None,
                    "reason": snapshot.stuck_reason,
                    "compensations": [
                        {
                            "step": t.step_seq,
                            "action": t.action,
                            "status": t.status,
                            "attempts": t.attempts,
                            "max_attempts": t.max_attempts,
                            "last_error": t.last_error,
                        }
                        for t in tasks.get(snapshot.key, [])
                    ],
                }
            )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("nothing is stuck")
        return
    for row in rows:
        click.echo(
            f"{printable(row['entity_type'])} {printable(row['key'])} in {row['state']}, "
            f"stuck since {row['stuck_at']}: {printable(row['reason'] or '')}"
        )
        for task in row["compensations"]:
            error = f" (last error: {printable(task['last_error'])})" if task["last_error"] else ""
            status = "dead-lettered" if task["status"] == "dead" else task["status"]
            click.echo(
                f"    step {task['step']} {task['action']}: {status}, "
                f"{task['attempts']}/{task['max_attempts']} attempts{error}"
            )


@click.command()
@click.argument("entity_type")
@click.argument("key")
@db_option()
@module_option()
@actor_option()
@click.option(
    "--attempts",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    envvar="STATEKIT_RETRY_ATTEMPTS",
    show_envvar=True,
    help="How many more tries each dead-lettered compensation gets.",
)
def retry(
    entity_type: str, key: str, db_url: str, modules: tuple[str, ...], actor: str, attempts: int
) -> None:
    """Give the dead-lettered compensations of ENTITY_TYPE KEY more attempts (the
    next sweep runs them); recorded in its history with --actor."""
    record = _sweeper(db_url, modules).retry(entity_type, key, actor=actor, extra_attempts=attempts)
    click.echo(
        f"{entity_type} {key}: {record.payload and record.payload.get('note')} (#{record.seq})"
    )


@click.command()
@click.argument("entity_type")
@click.argument("key")
@click.argument("state")
@click.option(
    "--note",
    required=True,
    envvar="STATEKIT_NOTE",
    show_envvar=True,
    help="Why the instance is moved by hand; recorded in its history.",
)
@db_option()
@module_option()
@actor_option()
def resolve(
    entity_type: str,
    key: str,
    state: str,
    note: str,
    db_url: str,
    modules: tuple[str, ...],
    actor: str,
) -> None:
    """Move ENTITY_TYPE KEY into STATE by hand: it is no longer stuck and its open
    compensations are cancelled; recorded in its history with --actor and --note."""
    record = _sweeper(db_url, modules).resolve(entity_type, key, state, note=note, actor=actor)
    click.echo(
        f"{entity_type} {key}: {record.source} -> {record.target} by {actor} (#{record.seq})"
    )


COMMANDS = (sweep, stuck, retry, resolve)
"""The commands this module adds to `statekit` (registered in `statekit.cli`)."""
