"""Compensations: the durable outbox rows that undo completed steps, and their retry rules."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from statekit.errors import ConcurrentTransitionError
from statekit.records import TransitionRecord

__all__ = [
    "SWEEPER_ACTOR",
    "Backoff",
    "CompensationContext",
    "CompensationTask",
    "TaskStatus",
    "call_with_timeout",
    "lost_claim",
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
    so it is left to finish and `on_abandoned` then runs in that thread."""
    if timeout is None:
        call()
        return True
    lock = threading.Lock()
    finished = threading.Event()
    state = {"done": False, "abandoned": False}
    errors: list[BaseException] = []

    def work() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the waiting thread
            errors.append(exc)
        finally:
            with lock:
                state["done"] = True
                abandoned = state["abandoned"]
            finished.set()
            if abandoned:
                try:
                    on_abandoned()
                except Exception:
                    logger.exception("cleaning up after abandoned call %s failed", name)

    threading.Thread(target=work, name=name, daemon=True).start()
    finished.wait(timeout)
    with lock:
        if not state["done"]:
            state["abandoned"] = True
            return False
    if errors:
        raise errors[0]
    return True
