"""The job machine the outbox and sweeper contracts drive, with handlers any store runs.

A handler records its call in `CALLS` (every call, committed or not) and writes its
mark on the entity (`job.undone`), which a store commits with the compensation's
completion or not at all: `job.undone` therefore holds the committed calls only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from statekit import CompensationContext, Context, State, StatefulObject, Workflow

FAILURES: dict[tuple[str, str], int] = {}
"""(key, action) -> how many more calls of that compensation fail."""

HOOKS: list[Callable[[Any, CompensationContext], None]] = []
"""Called first in every handler call (to block it or slow it down)."""

CALLS: list[tuple[str, str, int]] = []
"""(key, action, attempt) of every handler call, in order."""


def reset() -> None:
    """Forget the failures, hooks and calls of the previous test."""
    FAILURES.clear()
    HOOKS.clear()
    CALLS.clear()


def _undo(job: Any, undo: CompensationContext, mark: str) -> None:
    for hook in list(HOOKS):
        hook(job, undo)
    key = str(job.id)
    CALLS.append((key, undo.action, undo.attempt))
    job.undone = (job.undone or "") + mark  # commits with the completion only
    remaining = FAILURES.get((key, undo.action), 0)
    if remaining:
        FAILURES[key, undo.action] = remaining - 1
        raise RuntimeError(f"{undo.action} of {key} is down (attempt {undo.attempt})")


def undo_first(job: Any, undo: CompensationContext) -> None:
    """Compensation of `advance`."""
    _undo(job, undo, "1")


def undo_second(job: Any, undo: CompensationContext) -> None:
    """Compensation of `continue_`."""
    _undo(job, undo, "2")


def not_frozen(job: Any, ctx: Context) -> bool | str:
    """Guard of `expire`: a job whose key starts with "poison" makes it raise."""
    if str(job.id).startswith("poison"):
        raise RuntimeError(f"the guard of {job.id} blew up")
    return not job.frozen or "the job is frozen"


class JobWorkflow(Workflow, name="job", compensated_state="undone"):
    """new -> first -> second -> done; new expires after 10 minutes; first and second
    get stuck after 10 minutes and are compensated back, newest step first."""

    new = State(initial=True, timeout=timedelta(minutes=10), on_timeout="expire")
    first = State(timeout=timedelta(minutes=10))
    second = State(timeout=timedelta(minutes=10))
    done = State(final=True)
    expired = State(final=True)
    undone = State(final=True)

    expire = new.to(expired, guard=not_frozen)
    advance = new.to(first, compensate=undo_first, compensate_attempts=5)
    continue_ = first.to(second, compensate=undo_second, compensate_attempts=3)
    finish = second.to(done)


class Job(StatefulObject):
    """A plain job object (a store that persists mapped rows brings its own class
    with the same attributes)."""

    def __init__(self, key: str, *, frozen: bool = False) -> None:
        self.id = key
        self.frozen = frozen
        self.undone: str | None = None
