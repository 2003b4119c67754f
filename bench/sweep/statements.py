"""Statements per instance of statekit's sweep and drain, and the plan of its claim."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine

from bench._databases import listening, verb
from bench.sweep.loading import reset
from bench.sweep.schema import BATCH, NAME, NOW, Database
from statekit.sweeper import SweepResult

_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", re.IGNORECASE)


@contextmanager
def counting(engine: Engine) -> Iterator[Counter[str]]:
    """Count statements by verb and table, plus transactions (commit/rollback)."""
    counts: Counter[str] = Counter()

    def on_statement(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        kind = verb(statement)
        if kind.startswith("BEGIN"):
            return
        found = _TABLE.search(statement)
        counts[f"{kind} {found.group(1) if found else ''}".strip()] += 1

    def on_commit(conn: Any) -> None:
        counts["(commit)"] += 1

    def on_rollback(conn: Any) -> None:
        counts["(rollback)"] += 1

    hooks = (
        ("before_cursor_execute", on_statement),
        ("commit", on_commit),
        ("rollback", on_rollback),
    )
    with listening(engine, hooks):
        yield counts


def per_instance(counts: Counter[str], instances: int) -> str:
    """What `counts` (statements by verb and table, plus "(commit)"/"(rollback)") came
    to over `instances` instances: the totals, then per instance. The deadline phase
    sends a few set-based statements per batch, so its per-instance numbers are
    fractions; they keep three significant digits instead of rounding to 0.00."""
    statements, transactions = _sums(counts)
    parts = ", ".join(f"{k} {v / instances:.3g}" for k, v in sorted(counts.items()))
    return (
        f"{totals(counts)} for {instances:,} instance{_s(instances)}: "
        f"{statements / instances:.3g} statements + {transactions / instances:.3g} "
        f"transactions per instance ({parts})"
    )


def totals(counts: Counter[str]) -> str:
    """ "n statements + m transactions" counted in `counts`."""
    statements, transactions = _sums(counts)
    return (
        f"{statements:,} statement{_s(statements)} + {transactions:,} transaction{_s(transactions)}"
    )


def _sums(counts: Counter[str]) -> tuple[int, int]:
    statements = sum(v for k, v in counts.items() if not k.startswith("("))
    return statements, counts["(commit)"] + counts["(rollback)"]


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def count_statements(db: Database) -> tuple[str, str]:
    """Statements per instance of statekit's deadline phase and of its drain, over one
    batch (untimed; also the warm-up). Leaves the data reset."""
    sweeper, runner = db.sweeper()
    instances = BATCH
    with counting(db.engine) as sweep_counts:
        result = SweepResult()  # counts a batch once it commits: stop after the first
        sweeper.deadlines.sweep(runner, result, lambda: result.claimed >= instances)
    assert result.marked_stuck == instances, result
    drained = SweepResult()
    with counting(db.engine) as drain_counts:
        sweeper.drain.run(drained, lambda: False)
    assert drained.compensations_run == instances, drained
    reset(db)
    return per_instance(sweep_counts, instances), per_instance(drain_counts, instances)


def explain(db: Database) -> list[str]:
    """The plans of statekit's overdue claim (as it sends it) and of the raw query."""
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if "sweep_jobs" in statement and "state_deadline_at <=" in statement:
            captured.append((statement, parameters))

    with (
        listening(db.engine, [("before_cursor_execute", capture)]),
        db.store.overdue_batch(NAME, NOW, BATCH),
    ):
        pass
    statement, parameters = captured[0]
    prefix = "EXPLAIN " if db.postgres else "EXPLAIN QUERY PLAN "
    lines = []
    with db.engine.connect() as conn:
        plan = conn.exec_driver_sql(prefix + statement, parameters).all()
        if db.postgres:
            steps = [str(row[0]).strip().lstrip("-> ").split("  (")[0] for row in plan]
        else:
            steps = [str(row[-1]) for row in plan]
        lines.append(f"  statekit overdue claim: {' -> '.join(steps)}")
        conn.rollback()
    return lines
