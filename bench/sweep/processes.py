"""Sweepers in processes of their own: `python -m bench.sweep --worker URL`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter_ns

from bench.sweep.contestants import statekit_deadlines
from bench.sweep.schema import BATCH, EARLY, FULL, NAME, Database, make_engine, quiet


@dataclass
class Worker:
    """A sweeper in its own process: `python -m bench.sweep --worker URL`."""

    process: subprocess.Popen[str]

    @classmethod
    def spawn(cls, url: str) -> Worker:
        root = Path(__file__).resolve().parents[2]
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.sweep", "--worker", url],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        worker = cls(process)
        worker.expect("ready")
        return worker

    def expect(self, word: str) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith(word):
            self.process.kill()
            raise RuntimeError(f"sweep worker said {line!r}, expected {word!r}")
        return line[len(word) :].strip()

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def result(self) -> dict[str, int]:
        """What the worker reports when it is done (it then exits: see `finish`)."""
        data: dict[str, int] = json.loads(self.expect("done"))
        return data

    def finish(self) -> None:
        self.process.wait(timeout=60)


def sweep_in_processes(db: Database, processes: int) -> tuple[float, Counter[str]]:
    """Run `processes` sweepers at once; seconds from `go` to the last one done (its
    `done` line: the processes' exits are not timed)."""
    workers = [Worker.spawn(db.url) for _ in range(processes)]
    started = perf_counter_ns()
    for worker in workers:
        worker.go()
    results = [worker.result() for worker in workers]
    elapsed = (perf_counter_ns() - started) / 1e9
    for worker in workers:
        worker.finish()
    total: Counter[str] = Counter()
    for result in results:
        total.update(result)
    return elapsed, total


def worker_main(url: str) -> int:
    """One sweeper process: warm up, say `ready`, wait for `go`, sweep, say `done`."""
    quiet()
    engine = make_engine(url)
    db = Database("worker", url, engine, FULL)
    sweeper, runner = db.sweeper()
    with db.store.overdue_batch(NAME, EARLY, BATCH):  # connect, compile the claim
        pass
    # Warm up the statements the deadline phase sends, as the in-process contestant
    # is warm from earlier rounds: with the clock before every deadline nothing is
    # marked, but the set-based mark is compiled once and, after psycopg's fifth
    # execution, prepared on the server.
    early, early_runner = db.sweeper(EARLY)
    for _ in range(6):
        statekit_deadlines(early, early_runner)
    db.store.history(NAME, "0")
    print("ready", flush=True)
    sys.stdin.readline()
    cpu = time.process_time()
    result = statekit_deadlines(sweeper, runner)
    data = {**result.as_dict(), "cpu_ms": round((time.process_time() - cpu) * 1000)}
    print("done " + json.dumps(data), flush=True)
    engine.dispose()
    return 0
