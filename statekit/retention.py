"""Retention of the compensation outbox: settled rows do not stay for ever.

Done and cancelled compensations (with their attempt rows) are deleted once they
are older than `keep_done`, by a sweeper that has one (`Sweeper(keep_done=...)`,
`statekit sweep --keep-done 7d`) or by `statekit prune --older-than 30d`. Pending,
running and dead-lettered ones are never deleted: they are work, or need a person.
By default nothing is deleted, as before: the rows are the record of what was
undone, and deleting records is the application's decision. Since the sweeper's
indexes hold open rows only, a large outbox costs disk, not sweeper time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from statekit.clock import Clock
from statekit.errors import InvalidArgumentError, StoreError
from statekit.store.protocol import OutboxRetention

__all__ = ["DEFAULT_PRUNE_BATCH", "PRUNE_EVERY", "Retention"]

logger = logging.getLogger("statekit.sweeper")

DEFAULT_PRUNE_BATCH = 1000
"""Outbox rows deleted per transaction when pruning (`Sweeper(prune_batch_size=...)`)."""
PRUNE_EVERY = timedelta(hours=1)
"""How often a sweeper with `keep_done` prunes: at its first pass, then once an hour
(looking for nothing to prune reads the settled rows, which an idle poll must not)."""


class Retention:
    """Deletes settled compensations for a `Sweeper`.

    Args:
        store: The sweeper's store (or any); pruning needs `OutboxRetention`.
        clock: The time `keep_done` counts back from.
        keep_done: How long done and cancelled compensations stay (None: for ever).
        batch_size: Rows deleted per transaction.

    Raises:
        InvalidArgumentError: `keep_done` is not positive.
        StoreError: `keep_done` is given and the store cannot prune.
    """

    def __init__(
        self, store: object, clock: Clock, keep_done: timedelta | None, batch_size: int
    ) -> None:
        if keep_done is not None and keep_done <= timedelta(0):
            raise InvalidArgumentError(
                "keep_done",
                keep_done,
                "a positive duration, or None to keep done compensations",
                message=(
                    f"keep_done ({keep_done}) must be positive, or None to keep done "
                    "compensations for ever"
                ),
            )
        self.store = store
        self.clock = clock
        self.keep_done = keep_done
        self.batch_size = batch_size
        self.pruned_at: datetime | None = None
        if keep_done is not None:
            self._outbox()  # refused now, not at the first pass

    def due_prune(self, stop: Callable[[], bool]) -> int:
        """Prune what `keep_done` lets go, if `PRUNE_EVERY` has passed since the last
        time (or never pruned); returns how many rows were deleted."""
        if self.keep_done is None:
            return 0
        now = self.clock.now()
        if self.pruned_at is not None and now - self.pruned_at < PRUNE_EVERY:
            return 0
        pruned = self.prune(now - self.keep_done, stop=stop)
        self.pruned_at = now
        return pruned

    def prune(self, before: datetime, *, stop: Callable[[], bool] = lambda: False) -> int:
        """Delete done and cancelled compensations (with their attempts) last changed
        before `before`, `batch_size` rows per transaction, until none is left or
        `stop()`; returns how many were deleted. Never a pending, running or dead one.

        Raises:
            StoreError: the store cannot prune, or the database failed.
        """
        outbox = self._outbox()
        pruned = 0
        while not stop():
            deleted = outbox.prune_compensations(before, self.batch_size)
            pruned += deleted
            if deleted < self.batch_size:
                break
        if pruned:
            logger.info("%d done or cancelled compensation(s) pruned", pruned)
        return pruned

    def prunable(self, before: datetime) -> int:
        """How many compensations `prune(before)` would delete."""
        return self._outbox().prunable_compensations(before)

    def _outbox(self) -> OutboxRetention:
        if not isinstance(self.store, OutboxRetention):
            raise StoreError(
                f"{type(self.store).__name__} cannot prune its compensation outbox: it "
                "does not implement statekit.store.protocol.OutboxRetention (MemoryStore "
                "and SQLAlchemyStore do)"
            )
        return self.store
