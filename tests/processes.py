"""Worker processes (`python -m tests.workers COMMAND JSON`) for multi-process tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def spawn(command: str, **args: Any) -> subprocess.Popen[str]:
    """Start a worker running `command` with keyword arguments `args`."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.workers", command, json.dumps(args)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_ready(process: subprocess.Popen[str]) -> None:
    """Wait for the worker's `{"ready": true}` line."""
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        _, err = process.communicate(timeout=30)
        pytest.fail(f"worker died before it was ready: {err}")
    assert json.loads(line) == {"ready": True}


def go(process: subprocess.Popen[str]) -> None:
    """Release a worker waiting on its stdin."""
    assert process.stdin is not None
    process.stdin.write("go\n")
    process.stdin.flush()


def result(process: subprocess.Popen[str]) -> dict[str, Any]:
    """Wait for the worker to finish and return its last JSON line."""
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    reported: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return reported


def together(command: str, count: int, **args: Any) -> list[dict[str, Any]]:
    """Start `count` workers running `command`, release them together once all are
    ready, and return their results."""
    workers = [spawn(command, **args) for _ in range(count)]
    for worker in workers:
        wait_ready(worker)
    for worker in workers:
        go(worker)
    return [result(worker) for worker in workers]
