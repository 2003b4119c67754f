"""The drain's worker slots: N threads that claim their own work.

A slot that comes free claims, in one claim (one statement on PostgreSQL and SQLite),
for itself and for every other waiting slot that no claim in flight already covers;
it keeps one task and hands the rest to the waiting slots. Claims of different slots
run at once (a claim's commit waits for the disk; claims queued behind one another
would keep free slots idle), a task starts in the thread that claimed it or in a
waiting one, and no claim takes more tasks than there are slots waiting for one: no
task is claimed before a slot is free to run it, so a stop or a crash leaves none
waiting out a lease.

A task's work may hand back tasks of its own: ones claimed for this slot as the task
finished (in its completion transaction, see `statekit.drain`). The slot runs them
next without claiming, and stays busy in between.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

__all__ = ["Slots"]

T = TypeVar("T")


class Slots(Generic[T]):
    """Run `work(task)` in `size` threads on tasks from `claim(k)` (up to k tasks),
    and on the tasks `work` returns (claimed for the slot that ran it), until a
    claim finds nothing while no slot is busy and no other claim is in flight,
    `stop()` is true, or something raised (the first error is raised once every
    running task finished)."""

    def __init__(
        self,
        size: int,
        claim: Callable[[int], list[T]],
        work: Callable[[T], Sequence[T] | None],
        stop: Callable[[], bool],
    ) -> None:
        self.size = size
        self.claim = claim
        self.work = work
        self.stop = stop
        self._changed = threading.Condition()
        self._handed: deque[T] = deque()  # claimed for a waiting slot, not yet taken
        self._waiting = 0  # slots waiting for a task
        self._covered = 0  # waiting slots a claim in flight is claiming for
        self._busy = 0  # slots running a task
        self._over = False
        self._errors: list[BaseException] = []

    def run(self) -> None:
        """Run until done (see the class docstring).

        Raises:
            BaseException: the first error a claim or a task raised.
        """
        if self.stop():
            return
        first = self.claim(self.size)  # every slot is free: one claim for them all
        if not first:
            return
        self._handed.extend(first)
        with ThreadPoolExecutor(self.size, thread_name_prefix="statekit-drain") as pool:
            for _ in range(self.size):
                pool.submit(self._slot)
        if self._errors:
            raise self._errors[0]

    def _slot(self) -> None:
        try:
            task = self._next()
            while task is not None:
                follow: Sequence[T] | None = None
                try:
                    follow = self.work(task)
                finally:
                    with self._changed:
                        if follow:  # claimed for this slot: it stays busy
                            task = follow[0]
                            self._handed.extend(follow[1:])
                        else:
                            task = None
                            self._busy -= 1
                        self._changed.notify_all()
                if task is None:
                    task = self._next()
        except BaseException as exc:  # raised by `run` once the others finished
            with self._changed:
                self._errors.append(exc)
                self._changed.notify_all()

    def _next(self) -> T | None:
        """The next task for this slot, or None when the drain is over."""
        with self._changed:
            self._waiting += 1
            try:
                while True:
                    if self._handed:
                        self._busy += 1
                        return self._handed.popleft()
                    if self._over or self._errors:
                        return None
                    if self._covered >= self._waiting:
                        self._changed.wait()  # a claim in flight claims for this slot too
                        continue
                    if self.stop():
                        self._over = True
                        self._changed.notify_all()
                        return None
                    tasks = self._claim_for(self._waiting - self._covered)
                    if tasks:
                        self._busy += 1
                        self._handed.extend(tasks[1:])
                        return tasks[0]
                    if self._busy == 0 and self._covered == 0 and not self._handed:
                        self._over = True  # nothing due, nothing running, no claim in flight
                        self._changed.notify_all()
                        return None
                    self._changed.wait()  # a running task may make an older step due
            finally:
                self._waiting -= 1

    def _claim_for(self, free: int) -> list[T]:
        """Claim up to `free` tasks with the lock released (called holding it)."""
        self._covered += free
        self._changed.release()
        try:
            return self.claim(free)
        except BaseException as exc:
            self._errors.append(exc)
            return []
        finally:
            self._changed.acquire()
            self._covered -= free
            self._changed.notify_all()
