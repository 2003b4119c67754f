"""Persistence benchmark: one persisted transition per transaction, against peers.

Per transition: load the entity by key, check the guard, compare-and-set update,
insert a history row, commit. 10,000 orders each go

    pending --pay--> paid --ship--> shipped --deliver--> delivered

(30,000 transitions per contestant) on a SQLite file (WAL, synchronous=FULL,
BEGIN IMMEDIATE) and on PostgreSQL. `pay` is guarded by the row's
`card_authorized`. Contestants, each with its own database (file) and tables:

- statekit: `Runner(machine, SQLAlchemyStore(engine, {machine: Row})).fire_by_key`;
- hand-written SQLAlchemy Core: SELECT state, version and the guard's column by
  key, the guard in Python, `UPDATE ... WHERE id = :id AND state_version = :v`,
  INSERT into a table shaped like `statekit_transitions`, COMMIT;
- SQLAlchemy ORM: a mapped class with `version_id_col`, `session.get`, set the
  state, add a history object, commit;
- django-fsm-2 + django-fsm-log: `FSMField(protected=True)` with
  `ConcurrentTransitionMixin` and `@transition(conditions=[...])`; django-fsm-log's
  signal receivers write a `StateLog` row per transition;
- statekit on Django: `Runner(machine, DjangoStore()).fire_by_key` on a
  `StateModel`. Django can be configured once per process, so each Django
  contestant runs in a worker process of its own per database.

Contestants take turns in batches (round robin, the starting contestant rotating)
so load from other work on the machine hits all of them alike. See README.md.

`python -m bench persist` runs it (`run`, here); `python -m bench.persist --profile sqlite`
(or `postgresql`) profiles statekit next to the hand-written Core.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field

from bench import Config, Measurement, Report, Row, Target, environment
from bench._databases import postgres_available
from bench.persist.contestants import (
    CONTESTANTS,
    CORE,
    DJANGO,
    OPERATIONS,
    STATEKIT,
    STATEKIT_DJANGO,
    Contestant,
)
from bench.persist.workload import DATABASES, EVENTS, WARMUP, databases

DESCRIPTION = "persisted transitions (load, guard, CAS update, history, commit) on SQLite and PostgreSQL: statekit (SQLAlchemy, Django) vs Core, ORM, django-fsm-2 + log"  # noqa: E501

ENTITIES = 10_000
QUICK_ENTITIES = 1_000
BATCH = 250
QUICK_BATCH = 100

ENTITIES_ENV = "STATEKIT_BENCH_PERSIST_ENTITIES"

TARGET_VS_CORE = 0.9
TARGET_VS_DJANGO = 2.5
TARGET_DJANGO_STORE = 1.5
"""statekit's DjangoStore / django-fsm-2 + django-fsm-log throughput (issue 14)."""
ISSUE_MEASURED = {
    "sqlite": "Core with a SELECT ~2,400/s, django-fsm-2 + log ~870/s",
    "postgresql": "Core with a SELECT ~780/s, django-fsm-2 + log ~340/s",
}

PACKAGES = ("statekit", "SQLAlchemy", "psycopg", "Django", "django-fsm-2", "django-fsm-log")


# -- running -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One contestant on one database."""

    library: str
    samples_ns: list[float] = field(default_factory=list)  # per transition, one per batch
    total_ns: int = 0
    transitions: int = 0
    statements: list[list[str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Transitions per second over the whole timed run."""
        return self.transitions / (self.total_ns / 1e9) if self.total_ns else 0.0

    def statement_summary(self) -> str:
        """Statements per transition, and the sequence of a typical one."""
        if not self.statements:
            return "-"
        counts = [len(s) for s in self.statements]
        typical = statistics.mode(tuple(s) for s in self.statements)
        mean = sum(counts) / len(counts)
        return f"{mean:.2f}: {', '.join(typical)}"


def _chunks(entities: int, batch: int) -> list[range]:
    return [range(lo, min(lo + batch, entities + 1)) for lo in range(1, entities + 1, batch)]


def run_database(dialect: str, entities: int, batch: int) -> tuple[list[Outcome], list[float]]:
    """Run every contestant on `dialect`, interleaved; return outcomes and load averages."""
    loads = [os.getloadavg()[0]]
    with databases(dialect) as scratch:
        contestants: list[Contestant] = []
        try:
            for name, make in CONTESTANTS:
                contestants.append(make(scratch.make(name)))
            total = entities + WARMUP
            outcomes = [Outcome(c.library) for c in contestants]
            for contestant in contestants:
                contestant.setup(total)
            warm = range(entities + 1, total + 1)
            for contestant, outcome in zip(contestants, outcomes, strict=True):
                for event in EVENTS:
                    outcome.statements.extend(contestant.record(event, warm))
            chunks = _chunks(entities, batch)
            turn = 0
            for event in EVENTS:
                for keys in chunks:
                    start = turn % len(contestants)
                    for i in range(start, start + len(contestants)):
                        contestant = contestants[i % len(contestants)]
                        outcome = outcomes[i % len(contestants)]
                        elapsed = contestant.run(event, keys)
                        outcome.total_ns += elapsed
                        outcome.transitions += len(keys)
                        outcome.samples_ns.append(elapsed / len(keys))
                    turn += 1
                    loads.append(os.getloadavg()[0])
            for contestant, outcome in zip(contestants, outcomes, strict=True):
                outcome.problems = contestant.verify().problems(total)
        finally:
            for contestant in contestants:
                contestant.close()
    return outcomes, loads


def _entities(config: Config) -> tuple[int, int]:
    override = os.environ.get(ENTITIES_ENV)
    quick = config.sample_ms <= Config.quick().sample_ms
    entities = int(override) if override else (QUICK_ENTITIES if quick else ENTITIES)
    batch = QUICK_BATCH if quick or entities < 10 * BATCH else BATCH
    return entities, batch


def run(config: Config) -> Report:
    """Run all contestants on SQLite and PostgreSQL and check the issue's targets.

    `--quick` (a config with short samples) drives 1,000 entities instead of 10,000;
    the environment variable STATEKIT_BENCH_PERSIST_ENTITIES sets the number.
    """
    entities, batch = _entities(config)
    report = Report(
        name="persist",
        groups={
            dialect: (
                f"{title}: {entities:,} orders x 3 transitions, one transaction each",
                "median / hand-written Core median; >1 is slower than Core",
            )
            for dialect, title in DATABASES.items()
        },
    )
    skipped = postgres_available()
    dialects = ["sqlite"] if skipped else ["sqlite", "postgresql"]
    throughput_lines = [
        "Throughput = timed transitions / total timed seconds "
        f"(median/op above is the median of {batch}-transition batches):",
        f"  {'database':<10}  {'contestant':<31}  {'trans/s':>8}  {'vs Core':>7}  "
        f"{'vs django':>9}  statements per transition",
    ]
    load_lines = []
    failures = []
    for dialect in dialects:
        outcomes, loads = run_database(dialect, entities, batch)
        by_library = {o.library: o for o in outcomes}
        core, django, statekit = by_library[CORE], by_library[DJANGO], by_library[STATEKIT]
        on_django = by_library[STATEKIT_DJANGO]
        core_median = statistics.median(core.samples_ns)
        for outcome in outcomes:
            median = statistics.median(outcome.samples_ns)
            timing = Measurement(median, tuple(outcome.samples_ns), batch)
            note = "; ".join(outcome.problems)
            report.rows.append(
                Row(
                    dialect,
                    outcome.library,
                    OPERATIONS[outcome.library],
                    timing,
                    ratio=median / core_median,
                    note=note,
                )
            )
            if outcome.problems:
                failures.append(f"{dialect} {outcome.library}: {note}")
            throughput_lines.append(
                f"  {dialect:<10}  {outcome.library:<31}  {outcome.throughput:>8,.0f}  "
                f"{outcome.throughput / core.throughput:>6.2f}x  "
                f"{outcome.throughput / django.throughput:>8.2f}x  "
                f"{outcome.statement_summary()}"
            )
        vs_core = statekit.throughput / core.throughput
        vs_django = statekit.throughput / django.throughput
        sound = not (statekit.problems or core.problems or django.problems)
        store_vs_fsm = on_django.throughput / django.throughput
        report.targets += [
            Target(
                f"{dialect}: statekit vs hand-written Core",
                f"statekit / Core throughput >= {TARGET_VS_CORE:.2f}x",
                f"{statekit.throughput:,.0f}/s / {core.throughput:,.0f}/s = {vs_core:.2f}x",
                sound and vs_core >= TARGET_VS_CORE,
            ),
            Target(
                f"{dialect}: statekit vs django-fsm-2 + django-fsm-log",
                f"statekit / django throughput >= {TARGET_VS_DJANGO:.2f}x",
                f"{statekit.throughput:,.0f}/s / {django.throughput:,.0f}/s = {vs_django:.2f}x",
                sound and vs_django >= TARGET_VS_DJANGO,
            ),
            Target(
                f"{dialect}: statekit's DjangoStore vs django-fsm-2 + django-fsm-log",
                f"DjangoStore / django throughput >= {TARGET_DJANGO_STORE:.2f}x",
                f"{on_django.throughput:,.0f}/s / {django.throughput:,.0f}/s = {store_vs_fsm:.2f}x",
                not (on_django.problems or django.problems) and store_vs_fsm >= TARGET_DJANGO_STORE,
            ),
        ]
        load_lines.append(
            f"  {dialect}: 1-min load average min {min(loads):.2f}, "
            f"median {statistics.median(loads):.2f}, max {max(loads):.2f} "
            f"({len(loads)} readings, {os.cpu_count()} CPUs)"
        )
    report.environment = env = environment(PACKAGES)
    report.notes = [
        *throughput_lines,
        "Load average during the run (sampled after every round of batches):",
        *load_lines,
        *(["PostgreSQL skipped: " + skipped] if skipped else []),
        *(["VERIFICATION FAILED (these rows do not count): " + f for f in failures]),
        f"Every contestant verified after its run: {entities + WARMUP:,} entities delivered "
        f"and {3 * (entities + WARMUP):,} history rows ({WARMUP} untimed warm-up entities "
        "whose transitions were used to count statements).",
        "For reference, the issue measured: "
        + "; ".join(f"{d}: {v}" for d, v in ISSUE_MEASURED.items() if d in dialects),
        "Profile statekit next to Core: python -m bench.persist --profile sqlite|postgresql",
        "versions: " + ", ".join(f"{k} {v}" for k, v in env.items()),
    ]
    return report
