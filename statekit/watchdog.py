"""Time limits for calls that run in the thread that needs their result.

The drain's worker slots run each compensation handler in the slot's own thread: a
hand-off to another thread and back would cost two thread switches per compensation.
Python cannot stop a thread, so a handler that outlives its time is not stopped but
given up: a `Watchdog` thread looks at the running calls every `interval` seconds and,
for a call past its deadline, runs the call's `on_expiry` (the drain starts a new
thread that records the timeout and carries on in the slot's place). The thread of the
given-up call learns it from `Watch.end` once the call returns, and ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Watch", "Watchdog"]

logger = logging.getLogger("statekit.sweeper")

_RUNNING, _ENDED, _EXPIRED = range(3)


class Watch:
    """One call under a `Watchdog`: it either ends in time or expires, never both."""

    __slots__ = ("_dog", "_lock", "_state", "deadline", "on_expiry")

    def __init__(self, dog: Watchdog, deadline: float, on_expiry: Callable[[], None]) -> None:
        self._dog = dog
        self._lock = threading.Lock()
        self._state = _RUNNING
        self.deadline = deadline
        self.on_expiry = on_expiry

    def end(self) -> bool:
        """The call returned (or raised): True when it had already been given up."""
        with self._lock:
            if self._state == _EXPIRED:
                return True
            self._state = _ENDED
        self._dog.forget(self)
        return False

    def expire(self) -> bool:
        """Give the call up, unless it ended first; True when given up now."""
        with self._lock:
            if self._state != _RUNNING:
                return False
            self._state = _EXPIRED
        return True


class Watchdog:
    """Gives up calls that outlive `seconds`, within `interval` after their deadline
    (a twentieth of `seconds`, between 2 ms and 1 s).

    Starting and ending a watch takes a lock and a dictionary entry, no thread switch;
    the watchdog's own thread starts with the first watch and wakes once per interval
    until `stop`.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.interval = min(max(seconds / 20, 0.002), 1.0)
        self._watches: dict[int, Watch] = {}
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="statekit-drain-watchdog", daemon=True
        )
        self._starting = threading.Lock()
        self._started = False

    def stop(self) -> None:
        """Stop watching: calls still running are no longer given up."""
        self._stopped.set()
        with self._starting:
            if self._started:
                self._thread.join()

    def watch(self, on_expiry: Callable[[], None]) -> Watch:
        """Start timing a call; `on_expiry` runs in the watchdog's thread if the call
        is given up (it should return quickly: start a thread for longer work)."""
        if not self._started:
            with self._starting:
                if not self._started and not self._stopped.is_set():
                    self._thread.start()
                    self._started = True
        watch = Watch(self, time.monotonic() + self.seconds, on_expiry)
        self._watches[id(watch)] = watch
        return watch

    def forget(self, watch: Watch) -> None:
        self._watches.pop(id(watch), None)

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval):
            now = time.monotonic()
            for watch in list(self._watches.values()):
                if watch.deadline <= now and watch.expire():
                    self.forget(watch)
                    try:
                        watch.on_expiry()
                    except Exception:
                        logger.exception("giving up a call that outlived its time failed")
