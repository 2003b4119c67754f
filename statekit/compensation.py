"""Compensations: the durable outbox rows that undo completed steps, and their retry rules."""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from statekit.errors import ConcurrentTransitionError
from statekit.records import TransitionRecord

__all__ = [
    "SWEEPER_ACTOR",
    "TASK_COLUMNS",
    "Backoff",
    "CompensationContext",
    "CompensationTask",
    "TaskStatus",
    "call_with_timeout",
    "lost_claim",
    "task_of",
]

logger = logging.getLogger("statekit.sweeper")

SWEEPER_ACTOR = "statekit-sweeper"
"""The actor recorded on transitions the sweeper makes."""

TaskStatus = Literal["pending", "running", "done", "dead", "cancelled"]


@dataclass(slots=True)
class CompensationTask:
    """One compensation to run: undo step `step_seq` of an instance with `action`.

    Unique per (entity type, key, step, action), so scheduling it twice is harmless.
    Steps of one instance run newest first: a task waits while a newer step of the
    same instance is not done.
    """

    entity_type: str
    key: str
    step_seq: int
    action: str
    event: str
    max_attempts: int
    status: TaskStatus = "pending"
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    claim_token: str | None = None
    id: int | None = None

    @property
    def idempotency_key(self) -> str:
        """Stable across attempts and sweepers: pass it on to the outside system."""
        return f"statekit:{self.entity_type}:{self.key}:{self.step_seq}:{self.action}"


TASK_COLUMNS = (
    "entity_type",
    "entity_key",
    "step_seq",
    "action",
    "event",
    "max_attempts",
    "status",
    "attempts",
    "next_attempt_at",
    "last_error",
    "claim_token",
    "id",
)
"""The outbox's columns (and Django fields) of a task, in `CompensationTask` order:
what every store selects to build one with `task_of`."""


def task_of(row: Sequence[Any]) -> CompensationTask:
    """The task of an outbox row read as `TASK_COLUMNS`."""
    return CompensationTask(*row)


def lost_claim(task: CompensationTask) -> ConcurrentTransitionError:
    """The error for a compensation whose claim the caller no longer holds (its lease
    ran out and another sweeper took it, a person cancelled it, or the instance was
    deleted or replaced); every store raises it and changes nothing."""
    return ConcurrentTransitionError(
        entity_type=task.entity_type,
        key=task.key,
        event=f"compensate {task.action}",
        expected_version=task.attempts,
        actual_version=None,
    )


@dataclass(frozen=True, slots=True)
class CompensationContext:
    """What a compensation handler is given besides the entity."""

    step: TransitionRecord
    idempotency_key: str
    attempt: int
    action: str


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: `base * 2**(attempt-1)`, capped, times 1..1+jitter."""

    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, attempt: int) -> timedelta:
        """The wait after failed attempt number `attempt` (1-based)."""
        raw: timedelta = min(self.base * (2 ** max(attempt - 1, 0)), self.cap)
        return raw * (1 + self.jitter * self.rng.random())


def call_with_timeout(
    call: Callable[[], None],
    timeout: float | None,
    *,
    name: str,
    on_abandoned: Callable[[], None],
) -> bool:
    """Run `call` in a worker thread named `name` and wait up to `timeout` seconds
    (None: run it here and wait for it). Returns True when it returned (re-raising
    what it raised), False when it is still running: Python cannot stop a thread,
    so it is left to finish and `on_abandoned` then runs in that thread (which then
    ends). Worker threads whose call returned in time wait, idle, for the next call:
    starting a thread costs a handshake with it, per call, under the drain's load."""
    if timeout is None:
        call()
        return True
    lock = threading.Lock()
    finished = threading.Event()
    state = {"done": False, "abandoned": False}
    errors: list[BaseException] = []

    def work() -> bool:
        """Run the call; True when the thread may be kept for another call."""
        try:
            call()
        except BaseException as exc:  # handed to the waiting thread
            errors.append(exc)
        finally:
            with lock:
                state["done"] = True
                abandoned = state["abandoned"]
            if not abandoned:
                threading.current_thread().name = _IDLE_NAME
            finished.set()
            if abandoned:
                try:
                    on_abandoned()
                except Exception:
                    logger.exception("cleaning up after abandoned call %s failed", name)
        return not abandoned

    _CALLERS.run(work, name)
    finished.wait(timeout)
    with lock:
        if not state["done"]:
            state["abandoned"] = True
            return False
    if errors:
        raise errors[0]
    return True


_IDLE_NAME = "statekit-caller-idle"
_IDLE_SECONDS = 2.0
"""How long an idle caller thread waits for another call before it ends."""


class _Callers:
    """The idle threads of `call_with_timeout`, each waiting for its next call."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every idle thread (a forked child has none of its parent's)."""
        self._lock = threading.Lock()
        self._idle: list[_Caller] = []

    def run(self, work: Callable[[], bool], name: str) -> None:
        """Run `work` in an idle thread renamed `name`, or in a new one."""
        with self._lock:
            caller = self._idle.pop() if self._idle else None
        if caller is None:
            caller = _Caller(self)
            caller.thread.name = name
            caller.jobs.put(work)
            caller.thread.start()
        else:
            caller.thread.name = name
            caller.jobs.put(work)

    def rest(self, caller: _Caller) -> None:
        with self._lock:
            self._idle.append(caller)

    def retire(self, caller: _Caller) -> bool:
        """Take an idle `caller` out of the pool; False when a call was just handed
        to it (then it has work coming)."""
        with self._lock:
            if caller in self._idle:
                self._idle.remove(caller)
                return True
            return False


class _Caller:
    """One worker thread of `_Callers`."""

    def __init__(self, callers: _Callers) -> None:
        self.callers = callers
        self.jobs: queue.SimpleQueue[Callable[[], bool]] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while True:
            try:
                work = self.jobs.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                if self.callers.retire(self):
                    return
                continue  # a call was handed over as the wait ran out
            if not work():
                return  # abandoned: the thread ends with its call
            self.callers.rest(self)


_CALLERS = _Callers()
if hasattr(os, "register_at_fork"):  # a forked child has none of its parent's threads
    os.register_at_fork(after_in_child=_CALLERS.reset)
