"""`call_with_timeout`: handlers run in worker threads kept for the next call, except
one that outlived its timeout, which ends with its call; a forked child starts clean."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from statekit.compensation import call_with_timeout


def _run(timeout: float | None = 5.0) -> tuple[int, str]:
    seen: list[tuple[int, str]] = []

    def call() -> None:
        me = threading.current_thread()
        seen.append((me.ident or 0, me.name))

    assert call_with_timeout(
        call, timeout, name="statekit-compensation-t", on_abandoned=lambda: None
    )
    return seen[0]


def test_a_thread_whose_call_returned_runs_the_next_call() -> None:
    first, name = _run()
    assert name == "statekit-compensation-t"
    assert first != threading.get_ident()
    assert _run()[0] == first  # the same thread, kept idle in between
    assert _run(None)[0] == threading.get_ident()  # no timeout: in the calling thread


def test_an_abandoned_call_ends_its_thread_and_is_not_reused() -> None:
    go, cleaned = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []

    def hang() -> None:
        threads.append(threading.current_thread())
        go.wait(10)

    assert not call_with_timeout(
        hang, 0.05, name="statekit-compensation-h", on_abandoned=cleaned.set
    )
    assert _run()[0] != threads[0].ident  # another thread runs the next call
    go.set()
    threads[0].join(10)
    assert cleaned.is_set()
    assert not threads[0].is_alive()


def test_an_error_is_raised_in_the_caller_and_the_thread_kept() -> None:
    first, _ = _run()

    def fail() -> None:
        raise ValueError("refund service down")

    with pytest.raises(ValueError, match="refund service down"):
        call_with_timeout(fail, 5.0, name="statekit-compensation-f", on_abandoned=lambda: None)
    assert _run()[0] == first


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_runs_calls_in_threads_of_its_own() -> None:
    _run()  # an idle thread in the parent, which the child does not have
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a call must run (not wait for a thread that is not there)
        try:
            ok = call_with_timeout(lambda: None, 2.0, name="c", on_abandoned=lambda: None)
            os.write(write, b"1" if ok else b"0")
        finally:
            sys.stdout.flush()
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    assert answer == b"1"
