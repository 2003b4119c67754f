"""`statekit prune`, `statekit sweep --only`, `--drain-batch-size` and `--keep-done`,
through click, on a SQLite file."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from statekit import Backoff, ManualClock, Runner, Sweeper
from statekit.cli import cli
from statekit.store.sqlalchemy import SQLAlchemyStore, sqlite_engine
from tests.sweep_support import FAILURES, JobBase, JobRow, JobWorkflow, start_job

MODULE = ("-m", "tests.sweep_support")


def _store(path: Path) -> tuple[SQLAlchemyStore, Runner, ManualClock]:
    engine = sqlite_engine(str(path))
    JobBase.metadata.create_all(engine)
    store = SQLAlchemyStore(engine, {JobWorkflow.machine: JobRow})
    store.create_tables()
    clock = ManualClock()  # 2026-01-01: months before the tests run
    return store, Runner(JobWorkflow.machine, store, clock=clock), clock


@pytest.fixture
def settled(tmp_path: Path) -> str:
    """Jobs a and b compensated long ago (four done compensations); job c stuck with
    its newest compensation dead-lettered and the older one pending."""
    path = tmp_path / "jobs.db"
    store, runner, clock = _store(path)
    for key in ("a", "b", "c"):
        start_job(store.engine, runner, key, "advance", "continue_")
    FAILURES["c", "undo_second"] = 3
    sweeper = Sweeper([runner], clock=clock, backoff=Backoff(base=timedelta(seconds=1), jitter=0))
    clock.advance(minutes=11)
    for _ in range(3):
        sweeper.run_once()
        clock.advance(minutes=1)
    FAILURES.clear()
    store.engine.dispose()
    return f"sqlite:///{path}"


def invoke(*args: str, db: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [*args], env={"STATEKIT_DB": db}, catch_exceptions=False)
    return result.exit_code, result.output


def statuses(db: str) -> list[tuple[str, str]]:
    store = SQLAlchemyStore(sqlite_engine(db.removeprefix("sqlite:///")))
    try:
        return sorted((t.key, t.status) for t in store.compensations())
    finally:
        store.engine.dispose()


def test_prune_deletes_old_settled_compensations_and_nothing_else(settled: str) -> None:
    assert statuses(settled).count(("c", "dead")) == 1
    code, out = invoke("prune", "--older-than", "30d", "--dry-run", "--json", *MODULE, db=settled)
    assert code == 0, out
    assert json.loads(out)["count"] == 4
    assert len(statuses(settled)) == 6  # a dry run deletes nothing
    code, out = invoke("prune", "--older-than", "30d", "--batch-size", "3", *MODULE, db=settled)
    assert code == 0, out
    assert out.startswith("deleted 4 done or cancelled compensation(s) settled before ")
    assert statuses(settled) == [("c", "dead"), ("c", "pending")]
    code, out = invoke("prune", "--older-than", "30d", *MODULE, db=settled)
    assert (code, out.split(" settled")[0]) == (0, "deleted 0 done or cancelled compensation(s)")


def test_prune_keeps_what_is_younger_than_the_limit(settled: str) -> None:
    code, out = invoke("prune", "--older-than", "5000w", "--json", *MODULE, db=settled)
    assert code == 0, out
    assert json.loads(out)["count"] == 0
    assert len(statuses(settled)) == 6


@pytest.mark.parametrize("bad", ["0d", "soon", "-3d"])
def test_prune_refuses_a_duration_that_is_not_one(settled: str, bad: str) -> None:
    result = CliRunner().invoke(
        cli, ["prune", "--older-than", bad, *MODULE], env={"STATEKIT_DB": settled}
    )
    assert result.exit_code == 2
    assert f"{bad!r} is not a positive duration" in result.output


def test_sweep_only_deadlines_then_only_drain(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store, runner, _ = _store(path)
    for key in ("x", "y", "z"):
        start_job(store.engine, runner, key, "advance")  # deadlines in 2026-01-01: long overdue
    store.engine.dispose()
    db = f"sqlite:///{path}"

    def sweep(*options: str) -> dict[str, int]:
        code, out = invoke("sweep", "--once", "--json", *MODULE, *options, db=db)
        assert code == 0, out
        counts: dict[str, int] = json.loads(out.strip().splitlines()[-1])
        return counts

    marked = sweep("--only", "deadlines", "--deadline-batch-size", "2")
    assert (marked["marked_stuck"], marked["compensations_run"]) == (3, 0)
    assert statuses(db) == [("x", "pending"), ("y", "pending"), ("z", "pending")]
    first = sweep("--only", "drain", "--drain-batch-size", "2")
    assert (first["claimed"], first["compensations_run"]) == (0, 2)
    rest = sweep("--only", "drain", "--keep-done", "1h")  # done minutes ago: kept
    assert (rest["compensations_run"], rest["pruned"]) == (1, 0)
    assert [status for _, status in statuses(db)] == ["done"] * 3


def test_sweep_keep_done_prunes_after_the_drain(settled: str) -> None:
    code, out = invoke("sweep", "--once", "--json", "--keep-done", "7d", *MODULE, db=settled)
    assert code == 0, out
    assert json.loads(out.strip().splitlines()[-1])["pruned"] == 4
    assert statuses(settled) == [("c", "dead"), ("c", "pending")]
