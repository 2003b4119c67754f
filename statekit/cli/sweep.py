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
from statekit.cli.options import DURATION, actor_option, db_option, json_option, module_option
from statekit.cli.output import printable
from statekit.clock import SystemClock
from statekit.compensation import CompensationTask
from statekit.errors import StatekitError
from statekit.retention import DEFAULT_PRUNE_BATCH, Retention
from statekit.store.protocol import OutboxRetention, SweepStore
from statekit.sweeper import DEFAULT_HANDLER_TIMEOUT, Sweeper, SweepResult

__all__ = ["COMMANDS", "prune", "resolve", "retry", "stuck", "sweep"]


def _sweeper(
    db_url: str,
    modules: tuple[str, ...],
    batch_size: int = 100,
    lease: float = 300.0,
    handler_timeout: float | None = None,
    **options: Any,
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
        batch_size=batch_size, lease=timedelta(seconds=lease), handler_timeout=timeout, **options
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
    "--only",
    type=click.Choice(["deadlines", "drain"]),
    default=None,
    envvar="STATEKIT_SWEEP_ONLY",
    show_envvar=True,
    help="Run one half of each pass: time out overdue instances, or run due "
    "compensations (for sweepers on separate schedules). Default: both.",
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
    "--deadline-batch-size",
    type=click.IntRange(min=1),
    default=None,
    show_default="--batch-size",
    envvar="STATEKIT_DEADLINE_BATCH_SIZE",
    show_envvar=True,
    help="Overdue instances claimed per transaction, when set (its own name for "
    "--batch-size, for sweepers that run the halves apart).",
)
@click.option(
    "--drain-batch-size",
    type=click.IntRange(min=1),
    default=None,
    show_default="until none is due",
    envvar="STATEKIT_DRAIN_BATCH_SIZE",
    show_envvar=True,
    help="The most compensations one pass runs.",
)
@click.option(
    "--keep-done",
    type=DURATION,
    default=None,
    show_default="for ever",
    envvar="STATEKIT_KEEP_DONE",
    show_envvar=True,
    help="How long done and cancelled compensations stay in the outbox (7d, 12h); "
    "older ones are pruned after the drain, at most once an hour.",
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
    only: str | None,
    batch_size: int,
    deadline_batch_size: int | None,
    drain_batch_size: int | None,
    keep_done: timedelta | None,
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
    sweeper = _sweeper(
        db_url,
        modules,
        deadline_batch_size or batch_size,
        lease,
        handler_timeout,
        drain_batch_size=drain_batch_size,
        keep_done=keep_done,
        concurrency=concurrency,
    )
    deadlines, drain = only != "drain", only != "deadlines"

    def report(result: SweepResult) -> None:
        if as_json:
            click.echo(json.dumps(result.as_dict()))
        else:
            click.echo(f"swept: {_summary(result)}")
        sys.stdout.flush()

    if once:
        report(sweeper.run_once(deadlines=deadlines, drain=drain))
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
        sweeper.run_forever(
            interval,
            stop,
            on_pass=report,
            max_failures=max_failures,
            deadlines=deadlines,
            drain=drain,
        )
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


@click.command()
@db_option()
@module_option()
@click.option(
    "--older-than",
    type=DURATION,
    required=True,
    envvar="STATEKIT_PRUNE_OLDER_THAN",
    show_envvar=True,
    help="Delete done and cancelled compensations settled longer ago than this (30d, 12h).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    envvar="STATEKIT_PRUNE_DRY_RUN",
    show_envvar=True,
    help="Count what would be deleted; delete nothing.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_PRUNE_BATCH,
    show_default=True,
    envvar="STATEKIT_PRUNE_BATCH_SIZE",
    show_envvar=True,
    help="Rows deleted per transaction, so no lock is held for long.",
)
@json_option()
@pass_context
def prune(
    context: Context, older_than: timedelta, dry_run: bool, batch_size: int, as_json: bool
) -> None:
    """Delete done and cancelled compensations (with their attempt rows) from the
    outbox once they are older than --older-than, in batches of --batch-size rows,
    each its own short transaction. Pending, running and dead-lettered ones are never
    deleted. The instances' history is kept."""
    store = context.store
    if not isinstance(store, OutboxRetention):
        raise StatekitError(
            f"{type(store).__name__} cannot prune its compensation outbox: it does not "
            "implement statekit.store.protocol.OutboxRetention"
        )
    # The database's clock where there is one, as the sweeper reads it.
    clock = store.database_clock() if isinstance(store, SweepStore) else SystemClock()
    before = clock.now() - older_than
    retention = Retention(store, clock, None, batch_size)
    count = retention.prunable(before) if dry_run else retention.prune(before)
    if as_json:
        click.echo(json.dumps({"before": before.isoformat(), "dry_run": dry_run, "count": count}))
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"{verb} {count} done or cancelled compensation(s) settled before "
        f"{before:%Y-%m-%d %H:%M:%S} UTC"
    )


COMMANDS = (sweep, stuck, retry, resolve, prune)
"""The commands this module adds to `statekit` (registered in `statekit.cli`)."""
