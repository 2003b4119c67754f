"""`statekit stuck`, `retry`, `resolve` and the compensations in `history`, through click."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from statekit import Backoff, ManualClock, Runner, Sweeper
from statekit.cli import cli
from statekit.store.sqlalchemy import SQLAlchemyStore, sqlite_engine
from tests.sweep_support import FAILURES, HOOKS, JobBase, JobRow, JobWorkflow


@pytest.fixture
def dead_letter(tmp_path: Path) -> str:
    """A SQLite database with job j-1 stuck and its compensation dead-lettered."""
    path = tmp_path / "jobs.db"
    engine = sqlite_engine(str(path))
    JobBase.metadata.create_all(engine)
    store = SQLAlchemyStore(engine, {JobWorkflow.machine: JobRow})
    store.create_tables()
    clock = ManualClock()
    runner = Runner(JobWorkflow.machine, store, clock=clock)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        row = JobRow(id="j-1")
        session.add(row)
        runner.start(row)
    runner.fire_by_key("j-1", "advance")
    runner.fire_by_key("j-1", "continue_")
    FAILURES["j-1", "undo_second"] = 3
    sweeper = Sweeper([runner], clock=clock, backoff=Backoff(base=timedelta(seconds=1), jitter=0))
    clock.advance(minutes=11)
    for _ in range(3):
        sweeper.run_once()
        clock.advance(minutes=1)
    engine.dispose()
    FAILURES.clear()
    return f"sqlite:///{path}"


def invoke(*args: str, db: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [*args], env={"STATEKIT_DB": db}, catch_exceptions=False)
    return result.exit_code, result.output


def test_stuck_lists_the_instance_and_its_dead_letter(dead_letter: str) -> None:
    code, out = invoke("stuck", "-m", "tests.sweep_support", db=dead_letter)
    assert code == 0, out
    assert "job j-1 in second, stuck since" in out
    assert "no progress in 'second' within 10m" in out
    assert (
        "step 2 undo_second: dead-lettered, 3/3 attempts (last error: RuntimeError: undo_second"
        in out
    )
    assert "step 1 undo_first: pending, 0/5 attempts" in out
    code, out = invoke("stuck", "--json", "-m", "tests.sweep_support", db=dead_letter)
    [row] = json.loads(out)
    assert [t["status"] for t in row["compensations"]] == ["dead", "pending"]


def test_history_shows_the_compensations_not_done(dead_letter: str) -> None:
    code, out = invoke("history", "job", "j-1", "-m", "tests.sweep_support", db=dead_letter)
    assert code == 0, out
    assert "STUCK" in out
    assert "compensations not done" in out
    assert "step 2 undo_second: dead, 3/3 attempts" in out
    code, out = invoke(
        "history", "job", "j-1", "-m", "tests.sweep_support", "--json", db=dead_letter
    )
    report = json.loads(out)
    assert [t["action"] for t in report["pending_compensations"]] == ["undo_second", "undo_first"]


def test_retry_then_sweep_finishes_the_instance(dead_letter: str) -> None:
    code, out = invoke(
        "retry", "job", "j-1", "-m", "tests.sweep_support", "--actor", "ops-ann", db=dead_letter
    )
    assert code == 0, out
    assert "retrying 1 dead-lettered compensation(s)" in out
    code, out = invoke("sweep", "--once", "--json", "-m", "tests.sweep_support", db=dead_letter)
    assert code == 0, out
    assert json.loads(out.strip().splitlines()[-1])["compensated"] == 1
    code, out = invoke("stuck", "-m", "tests.sweep_support", db=dead_letter)
    assert out.strip() == "nothing is stuck"
    code, out = invoke("history", "job", "j-1", "-m", "tests.sweep_support", db=dead_letter)
    assert "--@retry--> second by ops-ann" in out
    code, out = invoke(
        "retry", "job", "j-1", "-m", "tests.sweep_support", "--actor", "ops-ann", db=dead_letter
    )
    assert code == 1
    assert "no dead-lettered compensations" in out


def test_resolve_moves_the_instance_by_hand(dead_letter: str) -> None:
    args = ("resolve", "job", "j-1", "done", "-m", "tests.sweep_support", "--actor", "ops-bo")
    code, out = invoke(*args, "--note", "finished by hand", db=dead_letter)
    assert code == 0, out
    assert "job j-1: second -> done by ops-bo" in out
    code, out = invoke("history", "job", "j-1", "-m", "tests.sweep_support", db=dead_letter)
    assert "--@resolve--> done by ops-bo  note=finished by hand" in out
    assert "compensations not done" not in out
    code, out = invoke(*args, "--note", "", db=dead_letter)
    assert code == 1
    assert "needs a note" in out


def test_a_reader_that_goes_away_stops_the_command_quietly() -> None:
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # like `statekit diagram ... | head` once head has exited
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "statekit",
                "diagram",
                "models.order:OrderWorkflow",
                "-f",
                "dot",
            ],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.stderr == ""  # no "Error: BrokenPipeError" on the terminal
    assert done.returncode == 1


def test_sweep_stops_waiting_for_a_hung_handler(dead_letter: str) -> None:
    invoke("retry", "job", "j-1", "-m", "tests.sweep_support", "--actor", "ops", db=dead_letter)
    go = threading.Event()
    HOOKS.append(lambda job, undo: go.wait(60) and None)
    try:
        result = CliRunner().invoke(
            cli,
            ["sweep", "--once", "--json", "--lease", "5", "-m", "tests.sweep_support"],
            env={"STATEKIT_DB": dead_letter, "STATEKIT_HANDLER_TIMEOUT": "0.3"},
            catch_exceptions=False,
        )
    finally:
        go.set()
        HOOKS.clear()
        for thread in threading.enumerate():
            if thread.name.startswith("statekit-compensation"):
                thread.join(60)
    assert result.exit_code == 0, result.output
    counts = json.loads(result.output.strip().splitlines()[-1])
    assert (counts["compensations_run"], counts["compensations_failed"]) == (0, 1)
    code, out = invoke("stuck", "-m", "tests.sweep_support", db=dead_letter)
    assert code == 0, out
    assert "CompensationTimeoutError" in out
    assert "did not return within 0.3s" in out


def test_sweep_refuses_a_handler_timeout_as_long_as_the_lease(dead_letter: str) -> None:
    code, out = invoke(
        "sweep",
        "--once",
        "--lease",
        "5",
        "--handler-timeout",
        "5",
        "-m",
        "tests.sweep_support",
        db=dead_letter,
    )
    assert code == 2
    assert "--handler-timeout (5s) must be shorter than --lease (5s)" in out
    code, out = invoke(
        "sweep", "--once", "--lease", "5", "-m", "tests.sweep_support", db=dead_letter
    )
    assert code == 0, out  # the default timeout shrinks to half of a short lease


@pytest.fixture
def many_stuck(tmp_path: Path) -> str:
    """A SQLite database with eight jobs stuck after `advance`, not yet compensated."""
    path = tmp_path / "many.db"
    engine = sqlite_engine(str(path))
    JobBase.metadata.create_all(engine)
    store = SQLAlchemyStore(engine, {JobWorkflow.machine: JobRow})
    store.create_tables()
    runner = Runner(JobWorkflow.machine, store)
    sweeper = Sweeper([runner])
    for n in range(8):
        with Session(engine, expire_on_commit=False) as session, session.begin():
            row = JobRow(id=f"m-{n}")
            session.add(row)
            runner.start(row)
        runner.fire_by_key(f"m-{n}", "advance")
        sweeper.compensate("job", f"m-{n}", reason="test", actor="ops")
    engine.dispose()
    return f"sqlite:///{path}"


@pytest.mark.parametrize("how", ["option", "env"])
def test_sweep_runs_handlers_concurrently(many_stuck: str, how: str) -> None:
    lock, running, most = threading.Lock(), [0], [0]

    def overlap(job: JobRow, undo: object) -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1

    HOOKS.append(overlap)
    args = ["sweep", "--once", "--json", "-m", "tests.sweep_support"]
    env = {"STATEKIT_DB": many_stuck}
    if how == "option":
        args += ["--concurrency", "4"]
    else:
        env["STATEKIT_SWEEP_CONCURRENCY"] = "4"
    try:
        result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    finally:
        HOOKS.clear()
    assert result.exit_code == 0, result.output
    counts = json.loads(result.output.strip().splitlines()[-1])
    assert (counts["compensations_run"], counts["compensated"]) == (8, 8)
    assert 1 < most[0] <= 4  # measured: handlers overlapped, never more than four


def test_sweep_refuses_a_concurrency_below_one(many_stuck: str) -> None:
    code, out = invoke(
        "sweep", "--once", "--concurrency", "0", "-m", "tests.sweep_support", db=many_stuck
    )
    assert code == 2
    assert "--concurrency" in out
    assert "0 is not in the range x>=1" in out
