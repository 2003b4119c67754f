"""`python -m bench.persist --profile sqlite|postgresql`: cProfile statekit next to the
hand-written Core, per transition, split into the driver's time and Python's."""

from __future__ import annotations

import cProfile
import io
import pstats

from bench.persist.contestants import STATEKIT, CoreContestant, StatekitContestant
from bench.persist.workload import DATABASES, EVENTS, WARMUP, databases, fire_each

_DRIVER_CALLS = (
    ("~", "<method 'execute' of 'sqlite3.Cursor' objects>"),
    ("~", "<method 'commit' of 'sqlite3.Connection' objects>"),
    ("psycopg/cursor.py", "execute"),
    ("psycopg/connection.py", "commit"),
)

_STATEKIT_PARTS = (
    ("statekit/runtime.py", "fire_by_key", "Runner.fire_by_key (everything)"),
    ("statekit/store/sqlalchemy/store.py", "transaction", "store.transaction (generator)"),
    ("statekit/store/sqlalchemy/rows.py", "instance", "RowLoader.instance"),
    ("sqlalchemy/orm/session.py", "get", "Session.get (SELECT + identity map)"),
    ("statekit/runtime.py", "_fire", "Runner.fire"),
    ("statekit/engine.py", "decide", "Machine.decide"),
    ("statekit/engine.py", "stage", "Machine.stage (state attributes)"),
    ("statekit/store/sqlalchemy/store.py", "apply", "SQLAlchemyStore.apply"),
    ("statekit/store/sqlalchemy/store.py", "_write", "_write (UPDATE + INSERT)"),
    ("sqlalchemy/sql/dml.py", "values", "Update.values() (statement built per call)"),
    ("sqlalchemy/sql/cache_key.py", "_generate_cache_key", "statement cache keys (all)"),
    ("statekit/records.py", "record", "Plan.record"),
    ("statekit/store/sqlalchemy/sessions.py", "defer", "defer (event.listen per Session)"),
    ("sqlalchemy/event/api.py", "listen", "event.listen"),
    ("statekit/store/sqlalchemy/sessions.py", "mark_persisted", "mark_persisted"),
    ("sqlalchemy/orm/session.py", "commit", "Session.commit (flush + COMMIT)"),
    ("sqlalchemy/orm/session.py", "flush", "Session.flush"),
    ("sqlalchemy/orm/session.py", "close", "Session.close"),
    ("sqlalchemy/orm/session.py", "connection", "Session.connection"),
)


def _cumulative(stats: pstats.Stats, path: str, name: str) -> tuple[float, int]:
    """Cumulative seconds and calls of the function `name` in a file ending with `path`;
    when several match (a method and the one it delegates to), the outermost one."""
    best = (0.0, 0)
    for (filename, _line, function), (_cc, nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if function == name and filename.replace("\\", "/").endswith(path) and ct > best[0]:
            best = (ct, nc)
    return best


def _driver_seconds(stats: pstats.Stats) -> float:
    return sum(_cumulative(stats, path, name)[0] for path, name in _DRIVER_CALLS)


def profile(dialect: str, entities: int = 100) -> str:
    """cProfile statekit and hand-written Core over `3 * entities` transitions each."""
    lines = [f"== profile: {DATABASES[dialect]}, {3 * entities} transitions each =="]
    with databases(dialect) as scratch:
        made = [
            StatekitContestant(scratch.make("profile_statekit")),
            CoreContestant(scratch.make("profile_core")),
        ]
        try:
            total = entities + WARMUP
            for contestant in made:
                contestant.setup(total)
                for event in EVENTS:
                    contestant.record(event, range(entities + 1, total + 1))
            keys = list(range(1, entities + 1))
            per_transition: dict[str, tuple[float, float]] = {}
            statekit_stats = None
            for contestant in made:
                profiler = cProfile.Profile()
                profiler.enable()
                for event in EVENTS:
                    fire_each(contestant.step, event, keys)
                profiler.disable()
                stats = pstats.Stats(profiler)
                count = 3 * entities
                overall = stats.total_tt / count  # type: ignore[attr-defined]
                driver = _driver_seconds(stats) / count
                per_transition[contestant.library] = (overall, driver)
                if contestant.library == STATEKIT:
                    statekit_stats = stats
                lines.append(
                    f"{contestant.library:<31} {overall * 1e6:8.1f} µs/transition profiled; "
                    f"in the driver (cursor.execute + commit) {driver * 1e6:7.1f} µs; "
                    f"Python beyond the driver {(overall - driver) * 1e6:7.1f} µs"
                )
            (sk_all, sk_driver), (core_all, core_driver) = per_transition.values()
            lines.append(
                f"statekit - Core: {(sk_all - core_all) * 1e6:+.1f} µs/transition, of which "
                f"driver {(sk_driver - core_driver) * 1e6:+.1f} µs and Python "
                f"{((sk_all - sk_driver) - (core_all - core_driver)) * 1e6:+.1f} µs "
                "(profiling inflates Python time; compare the parts, not the totals)"
            )
            assert statekit_stats is not None
            lines.append("statekit, cumulative µs per transition by part:")
            count = 3 * entities
            for path, name, label in _STATEKIT_PARTS:
                seconds, calls = _cumulative(statekit_stats, path, name)
                if calls:
                    lines.append(
                        f"  {label:<45} {seconds / count * 1e6:8.1f} µs  "
                        f"({calls / count:.2f} calls/transition)"
                    )
            out = io.StringIO()
            statekit_stats.stream = out  # type: ignore[attr-defined]
            statekit_stats.sort_stats("tottime").print_stats(25)
            lines.append("statekit, top functions by own time:")
            lines.extend("  " + line for line in out.getvalue().splitlines() if line.strip())
        finally:
            for contestant in made:
                contestant.close()
    return "\n".join(lines)
