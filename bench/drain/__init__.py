"""Drain benchmark: 2,000 scheduled compensations, on PostgreSQL and SQLite.

- (a) no-op handlers: statekit's drain (`Sweeper.drain`, concurrency 1) against a
  drain written by hand with the same guarantees (`bench/drain/contestants.py`),
  alternating rounds on fresh loads, ratio in one run; statements per compensation;
  and statekit's drain at concurrency 4 (against the issue's 3 x 142/s on PostgreSQL);
- (b) handlers that wait 50 ms (a remote call) with concurrency 16: compensations/s
  against the 0.8 x 16 / 0.05 = 256/s target (median of the rounds);
- (c) sweepers in processes of their own at concurrency 16: two against one (the
  medians of as many rounds, alternating which goes first).

    python -m bench drain            # 2,000 compensations, 3 rounds of (a)
    python -m bench drain --quick    # 500 compensations, 1 round

See README.md ("The drain benchmark").
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Callable

from bench import Config, Measurement, Report, Row, Target, environment
from bench._databases import Databases, postgres_available, postgres_url
from bench.drain.contestants import HandWritten, statekit_drain
from bench.drain.processes import drain_in_processes
from bench.drain.schema import REMOTE_CALL, TASKS, Database, make_database, quiet
from bench.sweep.statements import counting, per_instance

DESCRIPTION = "compensation drain, 2,000 tasks: statekit vs a hand-written drain; concurrency"
PACKAGES = ("statekit", "SQLAlchemy", "psycopg", "pydantic")
CONCURRENCY = 16
REMOTE_SECONDS = 0.05
NOOP_CONCURRENCY = 4
"""No-op handlers are CPU-bound: on a 2-core machine a few slots keep it busy."""
ISSUE_NOOP_RATE = 142
"""No-op compensations/s on PostgreSQL when issue 16 was filed (one at a time)."""


def progress(message: str) -> None:
    print(f"[drain {os.getloadavg()[0]:.2f}] {message}", file=sys.stderr, flush=True)


def _row(group: str, library: str, operation: str, seconds: list[float], tasks: int) -> Row:
    per = [s / tasks * 1e9 for s in seconds]
    return Row(group, library, operation, Measurement(statistics.median(per), tuple(per), tasks))


def _rate(row: Row) -> float:
    return 1e9 / row.median_ns


def _timed(db: Database, tasks: int, drain: Callable[[], object], problems: list[str]) -> float:
    from time import perf_counter

    db.load(tasks)
    started = perf_counter()
    drain()
    elapsed = perf_counter() - started
    problems += db.check(tasks)
    return elapsed


def run_database(dbs: Databases, label: str, tasks: int, rounds: int, report: Report) -> None:
    """(a), (b) and (c) on one database system."""
    problems: list[str] = []
    ours = make_database(dbs.make("statekit").url, CONCURRENCY)
    theirs = make_database(dbs.make("hand").url)
    for db in (ours, theirs):
        db.create()
    hand = HandWritten(theirs)
    REMOTE_CALL["seconds"] = 0.0
    timings: dict[str, list[float]] = {"statekit": [], "hand": []}
    for n in range(rounds):
        progress(f"{label}: no-op round {n + 1} of {rounds}")
        timings["statekit"].append(_timed(ours, tasks, lambda: statekit_drain(ours), problems))
        timings["hand"].append(_timed(theirs, tasks, hand.run, problems))
    statekit_row = _row(
        f"noop-{label}", "statekit", "Sweeper.drain, 1 at a time", timings["statekit"], tasks
    )
    hand_row = _row(
        f"noop-{label}", "hand-written", "claim + 1 transaction per task", timings["hand"], tasks
    )
    ratio = hand_row.median_ns / statekit_row.median_ns
    statekit_row.ratio, hand_row.ratio = statekit_row.median_ns / hand_row.median_ns, 1.0
    report.groups[f"noop-{label}"] = (
        f"{label}: no-op handlers, per compensation",
        "time / hand-written's",
    )
    report.rows += [hand_row, statekit_row]
    report.targets.append(
        Target(
            f"{label}: no-op drain, statekit vs hand-written",
            ">= 0.8x its compensations/s",
            f"{_rate(statekit_row):,.0f}/s vs {_rate(hand_row):,.0f}/s = {ratio:.2f}x",
            ratio >= 0.8,
        )
    )
    progress(f"{label}: no-op handlers at concurrency {NOOP_CONCURRENCY}")
    pooled = [
        _timed(ours, tasks, lambda: statekit_drain(ours, NOOP_CONCURRENCY), problems)
        for _ in range(rounds)
    ]
    pooled_row = _row(
        f"noop-{label}",
        "statekit",
        f"Sweeper.drain, concurrency {NOOP_CONCURRENCY}",
        pooled,
        tasks,
    )
    pooled_row.ratio = pooled_row.median_ns / hand_row.median_ns
    report.rows.append(pooled_row)
    if label == "PostgreSQL":
        floor = 3 * ISSUE_NOOP_RATE
        report.targets.append(
            Target(
                f"{label}: no-op drain vs the {ISSUE_NOOP_RATE}/s of the issue",
                f">= 3x: {floor}/s",
                f"{_rate(statekit_row):,.0f}/s one at a time, "
                f"{_rate(pooled_row):,.0f}/s at concurrency {NOOP_CONCURRENCY}",
                max(_rate(statekit_row), _rate(pooled_row)) >= floor,
            )
        )
    for name, db, drain in (
        ("statekit", ours, lambda: statekit_drain(ours)),
        ("hand-written", theirs, hand.run),
    ):
        db.load(tasks)
        with counting(db.engine) as counts:
            drain()
        report.notes.append(f"{label}: {name} drain: {per_instance(counts, tasks)}")

    progress(f"{label}: {REMOTE_SECONDS * 1000:.0f} ms handlers at concurrency {CONCURRENCY}")
    REMOTE_CALL["seconds"] = REMOTE_SECONDS
    slow = [
        _timed(ours, tasks, lambda: statekit_drain(ours, CONCURRENCY), problems)
        for _ in range(rounds)
    ]
    one_slow = (
        _timed(ours, tasks, lambda: statekit_drain(ours, 1), problems) if tasks <= 500 else None
    )
    REMOTE_CALL["seconds"] = 0.0
    slow_row = _row(
        f"slow-{label}", "statekit", f"50 ms handlers, concurrency {CONCURRENCY}", slow, tasks
    )
    report.groups[f"slow-{label}"] = (f"{label}: handlers that wait 50 ms", "none")
    report.rows.append(slow_row)
    target = 0.8 * CONCURRENCY / REMOTE_SECONDS
    if label == "PostgreSQL":  # the issue's targets for slow handlers are PostgreSQL's
        report.targets.append(
            Target(
                f"{label}: 50 ms handlers, concurrency {CONCURRENCY}",
                f">= {target:.0f} compensations/s",
                f"{_rate(slow_row):,.0f}/s",
                _rate(slow_row) >= target,
            )
        )
    else:
        report.notes.append(
            f"{label}: 50 ms handlers, concurrency {CONCURRENCY}: {_rate(slow_row):,.0f}/s "
            "(no target: SQLite's completions take its one write lock in turn)"
        )
    if one_slow is not None:
        report.notes.append(f"{label}: 50 ms handlers one at a time: {tasks / one_slow:,.0f}/s")

    progress(f"{label}: 1 and 2 sweeper processes at concurrency {CONCURRENCY}")
    runs: dict[int, list[float]] = {1: [], 2: []}
    for n in range(rounds):  # alternating which goes first
        for processes in (1, 2) if n % 2 == 0 else (2, 1):
            ours.load(tasks)
            elapsed, counts = drain_in_processes(ours.url, processes, CONCURRENCY, REMOTE_SECONDS)
            runs[processes].append(elapsed)
            problems += ours.check(tasks)
            if counts.get("compensations_run") != tasks:
                problems.append(f"{processes} process(es) ran {counts.get('compensations_run')}")
    seconds = {n: statistics.median(times) for n, times in runs.items()}
    rows = [
        _row(f"procs-{label}", "statekit", f"{n} sweeper process(es) x {CONCURRENCY}", times, tasks)
        for n, times in runs.items()
    ]
    report.groups[f"procs-{label}"] = (
        f"{label}: 50 ms handlers, sweeper processes",
        "time / one process's",
    )
    rows[0].ratio, rows[1].ratio = 1.0, rows[1].median_ns / rows[0].median_ns
    report.rows += rows
    speedup = seconds[1] / seconds[2]
    measured = f"{tasks / seconds[2]:,.0f}/s vs {tasks / seconds[1]:,.0f}/s = {speedup:.2f}x"
    if label == "PostgreSQL":
        report.targets.append(
            Target(
                f"{label}: 2 sweepers at concurrency {CONCURRENCY} vs 1",
                ">= 1.6x",
                measured,
                speedup >= 1.6,
            )
        )
    else:
        report.notes.append(
            f"{label}: 2 sweepers at concurrency {CONCURRENCY} vs 1: {measured} (no target: "
            "one write lock for both processes)"
        )
    report.targets.append(
        Target(
            f"{label}: every compensation done once, every job released",
            "no problem",
            "ok" if not problems else "; ".join(problems[:5]),
            not problems,
        )
    )
    for db in (ours, theirs):
        db.engine.dispose()


def run(config: Config) -> Report:
    """PostgreSQL (skipped if it does not answer), then SQLite."""
    quick = config == Config.quick()
    tasks, rounds = (500, 1) if quick else (TASKS, 3)
    quiet()
    report = Report(name="drain", groups={})
    loads = [os.getloadavg()[0]]
    dialects = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}
    if postgres_available() is not None:
        report.notes.append(f"PostgreSQL skipped: nothing answers at {postgres_url()}")
        del dialects["postgresql"]
    for dialect, label in dialects.items():
        with Databases(dialect, "statekit_bench_drain") as dbs:
            run_database(dbs, label, tasks, rounds, report)
        loads.append(os.getloadavg()[0])
    report.environment = env = environment(PACKAGES)
    report.notes += [
        f"{tasks:,} compensations, one per stuck job; (a) median of {rounds} round(s), "
        "statekit and hand-written alternating on fresh loads",
        "1-minute load average (other helpers share the 2 cores): "
        + ", ".join(f"{x:.2f}" for x in loads),
        "versions: " + ", ".join(f"{k} {v}" for k, v in env.items()),
    ]
    return report
