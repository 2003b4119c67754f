"""`python -m bench.sweep --profile postgresql|sqlite`: statements per instance and a
cProfile (wall and CPU) of statekit's deadline phase."""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench._databases import postgres_available, postgres_url
from bench.sweep.contestants import raw_sweep, statekit_deadlines, timed
from bench.sweep.loading import create_and_load, reset, scratch_database
from bench.sweep.schema import Database, Size, make_engine, quiet
from bench.sweep.statements import count_statements


def profile(backend: str, size: Size, top: int) -> None:
    """Statement counts and a cProfile of statekit's deadline phase over `size`."""
    quiet()
    with database_url(backend) as url:
        engine = make_engine(url)
        db = Database(backend, url, engine, size)
        try:
            print(f"loaded {size.total:,} rows in {create_and_load(db):.1f} s")
            sweep_stmts, drain_stmts = count_statements(db)
            print(f"deadline phase: {sweep_stmts}\ndrain: {drain_stmts}")
            seconds, marked = timed(lambda: raw_sweep(db))
            print(f"raw SQL: {marked} in {seconds:.3f} s = {marked / seconds:,.0f} rows/s")
            reset(db)
            for clock_name, timer in (("wall", time.perf_counter), ("CPU", time.process_time)):
                sweeper, runner = db.sweeper()
                profiler = cProfile.Profile(timer)
                cpu = time.process_time()
                seconds, result = timed(
                    lambda: profiler.runcall(statekit_deadlines, sweeper, runner)  # noqa: B023
                )
                cpu = time.process_time() - cpu
                print(
                    f"statekit under cProfile ({clock_name} timer): {result.marked_stuck} in "
                    f"{seconds:.3f} s wall, {cpu:.3f} s CPU = "
                    f"{result.marked_stuck / seconds:,.0f} rows/s"
                )
                for order in ("tottime", "cumulative"):
                    out = io.StringIO()
                    stats = pstats.Stats(profiler, stream=out).sort_stats(order)
                    stats.print_stats(top)
                    if order == "cumulative":
                        stats.print_stats("statekit/", top)
                    print(out.getvalue())
                reset(db)
        finally:
            engine.dispose()


@contextmanager
def database_url(backend: str) -> Iterator[str]:
    if backend == "postgresql" and postgres_available() is not None:
        raise SystemExit(f"PostgreSQL does not answer at {postgres_url()}")
    with scratch_database(backend) as url:
        yield url
