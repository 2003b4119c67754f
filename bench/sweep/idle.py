"""The idle poll with a grown outbox: `SQLAlchemyStore.due()` when nothing is due and
the compensation outbox holds N done rows (with their attempt rows), after the
database gathered statistics (`ANALYZE`), as applications run it.

    python -m bench.sweep.idle                   # SQLite and PostgreSQL, 10k and 100k
    python -m bench.sweep.idle --sizes 10000 --dialects sqlite

Prints, per database and size: the median wall time of one poll, the client CPU per
poll (process time), and the plan of each probe as the database gives it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import timedelta

from sqlalchemy import Engine, event, insert

from bench._databases import Databases, postgres_available
from bench.sweep.loading import load_done_outbox
from bench.sweep.schema import EARLY, MACHINE, NAME, SweepBase, SweepJob, make_engine
from statekit.store.sqlalchemy import SQLAlchemyStore

POLLS = 300


def load(engine: Engine, store: SQLAlchemyStore, done: int) -> None:
    """Statekit's tables, 1,000 jobs with no deadline due, `done` done outbox rows with
    one attempt row each, then statistics."""
    SweepBase.metadata.create_all(engine)
    store.create_tables()
    old = EARLY - timedelta(days=30)
    with engine.begin() as conn:
        conn.execute(
            insert(SweepJob.__table__),  # type: ignore[arg-type]
            [
                {"id": i, "state": "running", "state_version": 1, "state_entered_at": old}
                | {"state_deadline_at": EARLY + timedelta(hours=1)}
                for i in range(1, 1001)
            ],
        )
    load_done_outbox(engine, store.tables, done)


def plans(engine: Engine, store: SQLAlchemyStore) -> list[str]:
    """The plan of the idle poll as sent (EXPLAIN / EXPLAIN QUERY PLAN)."""
    captured: list[tuple[str, object]] = []

    def capture(conn: object, cursor: object, statement: str, params: object, *_: object) -> None:
        captured.append((statement, params))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        store.due([NAME], EARLY)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    statement, params = captured[-1]
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(prefix + statement, params)  # type: ignore[arg-type]
        return [" | ".join(str(x) for x in row) for row in cursor.fetchall()]
    finally:
        raw.close()


def measure(engine: Engine, store: SQLAlchemyStore) -> tuple[float, float]:
    """(median wall ms, mean client CPU ms) of one idle poll."""
    for _ in range(20):
        assert store.due([NAME], EARLY) == set()
    walls = []
    cpu_start = time.process_time()
    for _ in range(POLLS):
        started = time.perf_counter()
        store.due([NAME], EARLY)
        walls.append(time.perf_counter() - started)
    cpu = (time.process_time() - cpu_start) / POLLS
    return statistics.median(walls) * 1e3, cpu * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dialects", nargs="+", default=["sqlite", "postgresql"])
    args = parser.parse_args()
    for dialect in args.dialects:
        if dialect == "postgresql" and postgres_available() is not None:
            print("postgresql: not available")
            continue
        for size in args.sizes:
            with Databases(dialect, "statekit_bench_idle") as databases:
                engine = make_engine(databases.make(f"idle{size}").url)
                try:
                    store = SQLAlchemyStore(engine, {MACHINE: SweepJob})
                    load(engine, store, size)
                    wall, cpu = measure(engine, store)
                    print(
                        f"{dialect} {size:>7,} done rows: idle poll {wall:.3f} ms wall, "
                        f"{cpu:.3f} ms client CPU"
                    )
                    for line in plans(engine, store):
                        print(f"    {line}")
                finally:
                    engine.dispose()


if __name__ == "__main__":
    main()
