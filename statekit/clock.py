"""Where statekit reads the time: always through an injected clock."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from statekit.errors import InvalidArgumentError

__all__ = ["Clock", "ManualClock", "ServerClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Anything with a `now()` that returns an aware UTC datetime."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The wall clock, in UTC."""

    __slots__ = ()

    def now(self) -> datetime:
        """Return the current UTC time."""
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to; tests use it instead of sleeping."""

    __slots__ = ("_now",)

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
        if start.tzinfo is None:
            raise InvalidArgumentError(
                "start", start, "ManualClock needs a timezone-aware start time"
            )
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        """Return the clock's current time."""
        return self._now

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by `delta` (or `timedelta(**kwargs)`) and return the new time."""
        step = delta if delta is not None else timedelta(**kwargs)
        if step < timedelta(0):
            raise InvalidArgumentError(
                "delta",
                step,
                "a clock does not go backwards",
                message=f"a clock does not go backwards; advance by {step} refused",
            )
        self._now += step
        return self._now

    def set(self, moment: datetime) -> None:
        """Jump to `moment` (timezone-aware, not earlier than now)."""
        if moment.tzinfo is None:
            raise InvalidArgumentError(
                "moment", moment, "ManualClock.set needs a timezone-aware datetime"
            )
        if moment < self._now:
            raise InvalidArgumentError(
                "moment",
                moment,
                "a clock does not go backwards",
                message=(
                    f"a clock does not go backwards; set to {moment.isoformat()} refused "
                    f"(it reads {self._now.isoformat()})"
                ),
            )
        self._now = moment.astimezone(UTC)


class ServerClock:
    """A `Clock` whose `now()` is a database server's current UTC time, so sweepers
    on machines whose clocks disagree still compare leases and deadlines against one
    clock. The server is asked once per `resync` interval; in between, its answer is
    carried forward with this process's monotonic clock (which no clock change moves).
    Stores subclass it with `read_server_time` (`statekit.store.sqlalchemy.
    DatabaseClock`, the Django store's `DatabaseClock`)."""

    def __init__(self, *, resync: timedelta = timedelta(seconds=30)) -> None:
        self._resync = resync.total_seconds()
        self._lock = threading.Lock()
        self._synced: tuple[datetime, float] | None = None

    def now(self) -> datetime:
        """Return the server's current time, timezone-aware, in UTC."""
        with self._lock:
            synced = self._synced
            ticks = time.monotonic()
            if synced is None or ticks - synced[1] >= self._resync:
                value = self.read_server_time()
                value = value.replace(tzinfo=UTC) if value.tzinfo is None else value
                synced = self._synced = (value.astimezone(UTC), time.monotonic())
                ticks = synced[1]
        return synced[0] + timedelta(seconds=ticks - synced[1])

    def read_server_time(self) -> datetime:
        """The server's current time (naive values are read as UTC)."""
        raise NotImplementedError
