"""Drain sweepers in processes of their own: `python -m bench.drain --worker URL N SECONDS`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from time import perf_counter

from bench.drain.contestants import statekit_drain
from bench.drain.schema import NAME, REMOTE_CALL, make_database, quiet


def _spawn(url: str, concurrency: int, seconds: float) -> subprocess.Popen[str]:
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.drain", "--worker", url, str(concurrency), str(seconds)],
        cwd=root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "ready":
        process.kill()
        raise RuntimeError(f"drain worker said {line!r}, expected 'ready'")
    return process


def drain_in_processes(
    url: str, processes: int, concurrency: int, seconds: float
) -> tuple[float, Counter[str]]:
    """Run `processes` sweepers' drains at once; seconds from `go` to the last one done,
    and their counts summed."""
    workers = [_spawn(url, concurrency, seconds) for _ in range(processes)]
    started = perf_counter()
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    total: Counter[str] = Counter()
    for worker in workers:
        out, _ = worker.communicate(timeout=600)
        total.update(json.loads(out.strip().splitlines()[-1]))
    return perf_counter() - started, total


def worker_main(url: str, concurrency: int, seconds: float) -> int:
    """One sweeper: connect, say `ready`, wait for `go`, drain, print its counts."""
    quiet()
    db = make_database(url, concurrency)
    REMOTE_CALL["seconds"] = seconds
    db.store.history(NAME, "0")  # connect before the clock starts
    print("ready", flush=True)
    sys.stdin.readline()
    _, result = statekit_drain(db, concurrency)
    print(json.dumps(result.as_dict()), flush=True)
    db.engine.dispose()
    return 0
