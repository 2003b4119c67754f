"""`statekit history` and `statekit delete`: one instance's path, and removing it."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from statekit.cli.app import pass_context
from statekit.cli.context import Context
from statekit.cli.options import db_option, json_option, module_option
from statekit.cli.output import printable

__all__ = ["delete", "history", "iso"]


@click.command()
@click.argument("entity_type")
@click.argument("key")
@db_option()
@module_option()
@json_option()
@pass_context
def history(context: Context, entity_type: str, key: str, as_json: bool) -> None:
    """Where ENTITY_TYPE KEY is, since when, why, and what can happen next: state,
    deadline, stuck marker, the path with actors and payloads, the events allowed
    next and the compensations not done yet."""
    reads = context.reads
    snapshot = reads.load(entity_type, key)
    records = reads.history(entity_type, key)
    machine = context.machine(entity_type)
    open_tasks = reads.compensations(entity_type, key, status=("pending", "running", "dead"))
    next_events = list(machine.events_from(snapshot.state))
    report = {
        "entity_type": entity_type,
        "key": key,
        "state": snapshot.state,
        "version": snapshot.version,
        "since": iso(snapshot.entered_at),
        "deadline": iso(snapshot.deadline_at),
        "stuck": snapshot.stuck_at is not None,
        "stuck_at": iso(snapshot.stuck_at),
        "stuck_reason": snapshot.stuck_reason,
        "next_events": next_events,
        "path": [
            {
                "seq": r.seq,
                "at": iso(r.at),
                "event": r.event,
                "source": r.source,
                "target": r.target,
                "actor": r.actor,
                "payload": r.payload,
            }
            for r in records
        ],
        "pending_compensations": [
            {
                "step": t.step_seq,
                "action": t.action,
                "status": t.status,
                "attempts": t.attempts,
                "max_attempts": t.max_attempts,
                "next_attempt_at": iso(t.next_attempt_at),
                "last_error": t.last_error,
            }
            for t in open_tasks
        ],
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(
        f"{printable(entity_type)} {printable(key)}: {snapshot.state} (version {snapshot.version})"
    )
    click.echo(f"  since     {iso(snapshot.entered_at) or '-'}")
    click.echo(f"  deadline  {iso(snapshot.deadline_at) or 'none'}")
    if snapshot.stuck_at is not None:
        reason = printable(snapshot.stuck_reason or "")
        click.echo(f"  STUCK     since {iso(snapshot.stuck_at)}: {reason}")
    click.echo(f"  next      {', '.join(next_events) or '(final state)'}")
    click.echo("  path")
    for r in records:
        actor = f" by {printable(r.actor)}" if r.actor else ""
        payload = f"  {printable(_summary(r.payload))}" if r.payload else ""
        click.echo(
            f"    {r.seq:>3}. {iso(r.at)}  {r.source} --{r.event}--> {r.target}{actor}{payload}"
        )
    if open_tasks:
        click.echo("  compensations not done")
        for t in open_tasks:
            error = f"; last error: {printable(t.last_error)}" if t.last_error else ""
            when = (
                "dead-lettered: needs statekit retry or resolve"
                if t.status == "dead"
                else f"next at {iso(t.next_attempt_at)}"
            )
            click.echo(
                f"    step {t.step_seq} {t.action}: {t.status}, {t.attempts}/{t.max_attempts} "
                f"attempts, {when}{error}"
            )


@click.command()
@click.argument("entity_type")
@click.argument("key")
@db_option()
@module_option()
@click.option(
    "--keep-history",
    is_flag=True,
    envvar="STATEKIT_KEEP_HISTORY",
    show_envvar=True,
    help="Move the history to the retired tables for audit instead of deleting it.",
)
@pass_context
def delete(context: Context, entity_type: str, key: str, keep_history: bool) -> None:
    """Delete ENTITY_TYPE KEY: its row, history, compensations and their attempts, in
    one transaction (with --keep-history the history is retired, not deleted)."""
    context.store.delete(entity_type, key, keep_history=keep_history)
    kept = "history retired" if keep_history else "history deleted"
    click.echo(f"{entity_type} {key}: deleted ({kept})")


def iso(moment: datetime | None) -> str | None:
    """`moment` to the second in ISO 8601, or None."""
    return None if moment is None else moment.isoformat(timespec="seconds")


def _summary(payload: dict[str, Any], limit: int = 60) -> str:
    text = ", ".join(f"{k}={v}" for k, v in payload.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"
