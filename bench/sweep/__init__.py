"""Sweep benchmark: statekit's sweeper on 1,000,000 instances, 10,000 of them overdue.

On PostgreSQL and SQLite, side by side in one run:

- raw SQL: batched `UPDATE ... WHERE id IN (SELECT ... deadline <= now LIMIT n
  [FOR UPDATE SKIP LOCKED])` that only marks the rows stuck (for reference);
- raw SQL, statekit's writes: a hand-written set-based sweep doing the same work per
  stuck instance (mark, one history row, its compensation rows): the row statekit is
  compared against;
- statekit: the deadline phase of `Sweeper.run_once` (claim, `@stuck` history row,
  one compensation row per instance), then the drain of those compensations as its
  own row; on PostgreSQL also one vs two sweeper processes;
- an empty poll on the full table, with 100,000 done compensations in the outbox and
  statistics gathered: `Sweeper.run_once()` and statekit's overdue claim against the
  raw `SELECT ... WHERE deadline <= now LIMIT n`.

    python -m bench sweep                 # 1,000,000 rows / 10,000 overdue
    python -m bench sweep --quick         # 100,000 rows / 1,000 overdue
    python -m bench.sweep --profile postgresql   # statements and cProfile of statekit's sweep

See README.md ("The sweep benchmark") for what each row is.
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import bindparam, text

from bench import Case, Config, Measurement, Report, Row, Target, environment, measure
from bench._databases import postgres_available, postgres_url
from bench.sweep.contestants import raw_sweep, raw_writes_sweep, statekit_deadlines, timed
from bench.sweep.loading import (
    check,
    create_and_load,
    load_done_outbox,
    reset,
    scratch_database,
    tidy,
)
from bench.sweep.processes import sweep_in_processes
from bench.sweep.schema import (
    BATCH,
    DRAIN_LIMIT,
    EARLY,
    FULL,
    NAME,
    QUICK,
    Database,
    make_engine,
    quiet,
)
from bench.sweep.statements import count_statements, counting, explain, totals
from statekit.store.sqlalchemy import UTCDateTime
from statekit.sweeper import SweepResult

DESCRIPTION = (
    "sweeper, 1M instances / 10k overdue: statekit vs raw-SQL batch UPDATE (PostgreSQL, SQLite)"
)

PACKAGES = ("statekit", "SQLAlchemy", "psycopg", "pydantic")


def progress(message: str) -> None:
    """A line on stderr, so a long run shows where it is."""
    print(f"[sweep {os.getloadavg()[0]:.2f}] {message}", file=sys.stderr, flush=True)


# -- the run -----------------------------------------------------------------------------


@dataclass
class Results:
    """Seconds per round of each contestant on one database."""

    rounds: dict[str, list[float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    lost_races: int = 0
    worker_cpu: dict[int, list[float]] = field(default_factory=dict)

    instances: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, seconds: float, instances: int) -> None:
        self.rounds.setdefault(name, []).append(seconds)
        self.instances[name] = instances


RAW = "raw SQL"
WRITES = "raw SQL, statekit's writes"
STATEKIT = "statekit"
DRAIN = "statekit drain"
ONE = "statekit, 1 process"
TWO = "statekit, 2 processes"


def sweep_rounds(db: Database, rounds: int, loads: list[float]) -> Results:
    overdue = db.size.overdue
    drain_limit = min(overdue, DRAIN_LIMIT)
    results = Results()

    def verify(label: str, *, statekit: bool, drained: int = 0) -> None:
        found = check(db).problems(overdue, statekit=statekit, drained=drained)
        results.problems += [f"{db.label} {label}: {p}" for p in found]

    def run_raw() -> None:
        seconds, marked = timed(lambda: raw_sweep(db))
        results.add(RAW, seconds, marked)
        if marked != overdue:
            results.problems.append(f"{db.label} raw: marked {marked}, want {overdue}")
        verify("raw", statekit=False)
        reset(db)

    def run_raw_writes() -> None:
        seconds, marked = timed(lambda: raw_writes_sweep(db))
        results.add(WRITES, seconds, marked)
        verify("raw writes", statekit=True)
        reset(db)

    def run_statekit() -> None:
        sweeper, runner = db.sweeper()
        seconds, result = timed(lambda: statekit_deadlines(sweeper, runner))
        results.add(STATEKIT, seconds, overdue)
        results.lost_races += result.lost_races
        verify("statekit", statekit=True)
        if DRAIN not in results.rounds:  # once: the drain is slow and steady
            tidy(db)
            drained = SweepResult()
            seconds, _ = timed(lambda: sweeper.drain.run(drained, lambda: False, drain_limit))
            results.add(DRAIN, seconds, drained.compensations_run)
            verify("statekit drain", statekit=True, drained=drained.compensations_run)
        reset(db)

    def run_processes(n: int) -> Callable[[], None]:
        def run() -> None:
            seconds, total = sweep_in_processes(db, n)
            results.add(ONE if n == 1 else TWO, seconds, total["marked_stuck"])
            results.worker_cpu.setdefault(n, []).append(total["cpu_ms"] / 1000)
            results.lost_races += total["lost_races"]
            verify(f"{n} process(es)", statekit=True)
            reset(db)

        return run

    contestants = [run_raw, run_raw_writes, run_statekit]
    if db.postgres:
        contestants += [run_processes(1), run_processes(2)]
    for i in range(rounds):
        shift = i % len(contestants)
        for contestant in contestants[shift:] + contestants[:shift]:
            contestant()
        progress(
            f"{db.label}: round {i + 1}/{rounds}: "
            + ", ".join(f"{k} {v[i]:.2f} s" for k, v in results.rounds.items() if len(v) > i)
        )
        loads.append(os.getloadavg()[0])
    return results


DONE_OUTBOX = 100_000
"""Done compensations in the outbox during the empty polls (history, not work)."""


def poll_cases(db: Database) -> list[Case]:
    """Empty polls at EARLY, when nothing is due yet."""
    raw = text(
        "SELECT id FROM sweep_jobs WHERE state_deadline_at <= :now "
        "ORDER BY state_deadline_at, id LIMIT :n"
    ).bindparams(bindparam("now", type_=UTCDateTime()))
    sweeper, _ = db.sweeper(EARLY)

    def make(n: int) -> list[None]:
        return [None] * n

    def run_raw(items: list[None]) -> None:
        for _ in items:
            with db.engine.connect() as conn:
                conn.execute(raw, {"now": EARLY, "n": BATCH}).all()

    def run_claim(items: list[None]) -> None:
        for _ in items:
            with db.store.overdue_batch(NAME, EARLY, BATCH):
                pass

    def run_once(items: list[None]) -> None:
        for _ in items:
            sweeper.run_once()

    group = f"poll:{db.label}"
    return [
        Case(group, "raw SQL", "SELECT id ... WHERE deadline <= now LIMIT n", make, run_raw),
        Case(group, "statekit", "overdue claim (overdue_batch, nothing due)", make, run_claim),
        Case(group, "statekit", "Sweeper.run_once() (claim + outbox, nothing due)", make, run_once),
    ]


def _measurement(seconds: list[float], per: int) -> Measurement:
    samples = tuple(s * 1e9 / per for s in seconds)
    return Measurement(statistics.median(samples), samples, per)


def _rate(row: Row) -> float:
    return 1e9 / row.median_ns


def run_database(
    db: Database, config: Config, rounds: int, report: Report, loads: list[float]
) -> None:
    """Load, count statements, sweep `rounds` times, poll; add rows, targets and notes."""
    label = db.label
    progress(f"{label}: loading {db.size.total:,} rows")
    loaded = create_and_load(db)
    loads.append(os.getloadavg()[0])
    progress(f"{label}: loaded in {loaded:.1f} s; counting statements")
    sweep_stmts, drain_stmts = count_statements(db)
    results = sweep_rounds(db, rounds, loads)
    progress(f"{label}: {DONE_OUTBOX:,} done compensations and ANALYZE, then empty polls")
    load_done_outbox(db.engine, db.store.tables, DONE_OUTBOX)
    with counting(db.engine) as poll_counts:
        db.sweeper(EARLY)[0].run_once()
    cases = poll_cases(db)
    polls = measure(cases, config)
    loads.append(os.getloadavg()[0])
    overdue = db.size.overdue

    group = f"sweep:{label}"
    report.groups[group] = (
        f"Deadline sweep, {label}: {overdue:,} overdue among {db.size.total:,} "
        f"(batches of {BATCH}); median/op is per instance",
        "median / the hand-written equal-work sweep's median; >1 is slower",
    )
    operations = {
        RAW: ("raw SQL", "UPDATE ... WHERE id IN (SELECT due LIMIT n) per batch: marking only"),
        WRITES: ("raw SQL", "the same writes as statekit, hand-written, nothing per row in Python"),
        STATEKIT: ("statekit", "Sweeper deadline phase: claim, @stuck row, compensation row"),
        DRAIN: ("statekit", "drain (2nd half of run_once): run compensation, @compensated"),
        ONE: ("statekit", "deadline phase in 1 sweeper process"),
        TWO: ("statekit", "deadline phase in 2 sweeper processes (combined)"),
    }
    rows: dict[str, Row] = {}
    for name, seconds in results.rounds.items():
        library, operation = operations[name]
        measured = _measurement(seconds, results.instances[name])
        rows[name] = Row(group, library, operation, measured)
    for row in rows.values():
        row.ratio = row.median_ns / rows[WRITES].median_ns
    report.rows += rows.values()

    poll_group = f"poll:{label}"
    report.groups[poll_group] = (
        f"Empty poll, {label}: nothing due on the {db.size.total:,}-row table, "
        f"{DONE_OUTBOX:,} done compensations in the outbox, statistics gathered",
        "median / raw SQL median",
    )
    poll_rows = [
        Row(poll_group, c.library, c.operation, m) for c, m in zip(cases, polls, strict=True)
    ]
    for row in poll_rows:
        row.ratio = row.median_ns / poll_rows[0].median_ns
    report.rows += poll_rows

    raw_rate, statekit_rate = _rate(rows[RAW]), _rate(rows[STATEKIT])
    writes_rate = _rate(rows[WRITES])
    report.targets.append(
        Target(
            f"{label}: statekit sweep throughput",
            ">= 0.9x the hand-written equal-work sweep's rows/s",
            f"{statekit_rate:,.0f} / {writes_rate:,.0f} rows/s = "
            f"{statekit_rate / writes_rate:.2f}x",
            statekit_rate >= 0.9 * writes_rate,
        )
    )
    report.notes.append(
        f"{label}: the hand-written equal-work sweep reaches {writes_rate / raw_rate:.2f}x "
        f"the marking-only raw SQL; statekit reaches {statekit_rate / raw_rate:.2f}x of it"
    )
    if ONE in rows:
        one, two = _rate(rows[ONE]), _rate(rows[TWO])
        report.targets.append(
            Target(
                f"{label}: two sweepers",
                ">= 1.5x one sweeper's rows/s",
                f"{two:,.0f} / {one:,.0f} rows/s = {two / one:.2f}x",
                two >= 1.5 * one,
            )
        )
    poll_ratio = poll_rows[2].median_ns / poll_rows[0].median_ns
    report.targets.append(
        Target(
            f"{label}: empty poll",
            "Sweeper.run_once() <= 2x the raw query",
            f"{poll_rows[2].median_ns / 1e6:.3f} ms / {poll_rows[0].median_ns / 1e6:.3f} ms "
            f"= {poll_ratio:.2f}x",
            poll_ratio <= 2.0,
        )
    )
    report.targets.append(
        Target(
            f"{label}: every instance marked exactly once",
            "one @stuck row, one compensation row, one run each",
            "ok" if not results.problems else "; ".join(results.problems[:5]),
            not results.problems,
        )
    )
    for n, cpu in sorted(results.worker_cpu.items()):
        report.notes.append(
            f"{label}: CPU seconds of the sweeper process(es), {n} process(es): "
            + ", ".join(f"{x:.1f}" for x in cpu)
            + f" (wall: {', '.join(f'{x:.1f}' for x in results.rounds[ONE if n == 1 else TWO])})"
        )
    throughput = ", ".join(f"{name} {_rate(row):,.0f}/s" for name, row in rows.items())
    report.notes += [
        f"{label}: rows/s (median of {rounds} rounds): {throughput}",
        f"{label}: loaded {db.size.total:,} rows in {loaded:.1f} s; "
        f"lost races {results.lost_races}",
        f"{label}: statekit deadline phase: {sweep_stmts}",
        f"{label}: statekit drain: {drain_stmts}",
        f"{label}: empty Sweeper.run_once(): {totals(poll_counts)}"
        f" ({', '.join(f'{k} {v}' for k, v in sorted(poll_counts.items()))})",
        *explain(db),
    ]


def run(config: Config) -> Report:
    """Both databases, one after the other (PostgreSQL is skipped if it does not answer)."""
    quick = config == Config.quick()
    size = QUICK if quick else FULL
    # A round of the two-sweeper line lasts about 0.2 s, so single rounds scatter
    # (1.2x-1.8x); nine rounds' median holds still where five did not. The full run
    # takes under two minutes.
    rounds = 2 if quick else 9
    quiet()
    report = Report(name="sweep", groups={})
    loads: list[float] = [os.getloadavg()[0]]
    dialects = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}
    if postgres_available() is not None:
        report.notes.append(f"PostgreSQL skipped: nothing answers at {postgres_url()}")
        del dialects["postgresql"]
    for dialect, label in dialects.items():
        with scratch_database(dialect) as url:
            engine = make_engine(url)
            try:
                run_database(Database(label, url, engine, size), config, rounds, report, loads)
            finally:
                engine.dispose()
    report.environment = env = environment(PACKAGES)
    report.notes += [
        "1-minute load average: " + ", ".join(f"{x:.2f}" for x in loads),
        "versions: " + ", ".join(f"{k} {v}" for k, v in env.items()),
    ]
    return report
