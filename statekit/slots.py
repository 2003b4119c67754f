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

A task may also be given up while its thread is still inside `work` (a handler that
outlived its time: Python cannot stop the thread). `Slots.supersede` then starts a new
thread that finishes the task's bookkeeping and carries on as the slot; the old thread
raises `Superseded` out of `work` when it gets control back, and ends.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Slots", "Superseded"]

T = TypeVar("T")


class Superseded(BaseException):
    """Raised out of `work` in a thread whose task was given up: another thread
    carries on as its slot (see `Slots.supersede`), so this one ends quietly."""


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
        self._live = 0  # slots whose thread has not ended (a successor keeps its slot's)
        self._started = 0  # threads started (names them)

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
        with self._changed:
            self._live = self.size
        for _ in range(self.size):
            try:
                self._start(None)
            except BaseException as exc:  # fewer threads: the others drain
                with self._changed:
                    self._errors.append(exc)
                    self._live -= 1
        with self._changed:
            while self._live:
                self._changed.wait()
        if self._errors:
            raise self._errors[0]

    def supersede(self, give_up: Callable[[], None]) -> None:
        """A slot's task was given up while its thread is still inside `work`: start
        a thread that runs `give_up()` (the task's bookkeeping) in the slot's place,
        then carries on as the slot. The old thread must raise `Superseded` out of
        `work` once it returns."""
        try:
            self._start(give_up)
        except BaseException as exc:  # no thread: the slot ends, and the task with it
            with self._changed:
                self._errors.append(exc)
                self._busy -= 1
                self._live -= 1
                self._changed.notify_all()

    def _start(self, give_up: Callable[[], None] | None) -> None:
        # Daemon threads: a handler that never returns must not keep the process alive.
        with self._changed:
            self._started += 1
            name = f"statekit-drain-{self._started}"
        threading.Thread(target=self._slot, args=(give_up,), name=name, daemon=True).start()

    def _slot(self, give_up: Callable[[], None] | None) -> None:
        try:
            if give_up is not None:
                try:
                    give_up()
                finally:
                    self._finished(None)
            task = self._next()
            while task is not None:
                try:
                    follow = self.work(task)
                except Superseded:
                    return  # the successor finished the task and is this slot now
                except BaseException:
                    self._finished(None)
                    raise
                task = self._finished(follow)
                if task is None:
                    task = self._next()
        except BaseException as exc:  # raised by `run` once the others finished
            with self._changed:
                self._errors.append(exc)
                self._changed.notify_all()
        with self._changed:
            self._live -= 1
            self._changed.notify_all()

    def _finished(self, follow: Sequence[T] | None) -> T | None:
        """A task of this slot is done: the first task it handed back (claimed for
        this slot, which stays busy), or None (the slot is free)."""
        with self._changed:
            task = None
            if follow:
                task = follow[0]
                self._handed.extend(follow[1:])
            else:
                self._busy -= 1
            self._changed.notify_all()
            return task

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
