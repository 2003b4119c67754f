"""Outbox retention every `OutboxRetention` store honours, written once, run on each
store: settled rows (done, cancelled) older than a moment go with their attempts, in
bounded batches; pending, running and dead-lettered rows never go.

Subclass `RetentionContract` next to a store's `OutboxContract` (same fixtures).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from statekit import InvalidArgumentError, ManualClock, Runner, Sweeper
from statekit.store.protocol import OutboxRetention, SweepStore
from tests.contract.outbox_contract import LEASE, OutboxContract, tasks_of


class RetentionContract(OutboxContract):
    """Behaviour of `OutboxRetention`; the fixtures are `OutboxContract`'s."""

    def settle(self, store: SweepStore, clock: ManualClock, key: str) -> list[int]:
        """Schedule the two compensations of `key`, complete the newest and
        dead-letter the other; returns their ids (done, dead)."""
        self.schedule(store, key, tasks_of(key), clock)
        [newest] = store.claim_compensations(clock.now(), 1, LEASE)
        self.complete(store, newest, clock)
        [older] = store.claim_compensations(clock.now(), 1, LEASE)
        self.fail(store, older, clock, dead=True)
        return [newest.id or 0, older.id or 0]

    def test_is_an_outbox_retention(self, store: SweepStore) -> None:
        assert isinstance(store, OutboxRetention)

    def test_prune_deletes_only_old_settled_rows_in_batches(
        self, store: SweepStore, job: Callable[..., None], clock: ManualClock
    ) -> None:
        assert isinstance(store, OutboxRetention)
        for key in ("a", "b", "c"):
            job(key, "advance", "continue_")
        done_a, dead_a = self.settle(store, clock, "a")
        done_b, _ = self.settle(store, clock, "b")
        self.schedule(store, "c", tasks_of("c"), clock)
        with store.session_unit("job", "c") as entity:  # a person resolved it
            store.cancel_compensations(entity, clock.now())
        clock.advance(days=10)
        job("d", "advance", "continue_")
        self.settle(store, clock, "d")  # settled recently: kept
        self.schedule(store, "a", tasks_of("a"), clock)  # nothing new: exists
        job("e", "advance")
        self.schedule(store, "e", tasks_of("e")[1:], clock)  # pending
        [running] = store.claim_compensations(clock.now(), 1, LEASE)
        before = clock.now() - timedelta(days=7)
        assert store.prunable_compensations(before) == 4  # a, b done; c's two cancelled
        assert store.prune_compensations(before, 3) == 3
        assert store.prune_compensations(before, 3) == 1
        assert store.prune_compensations(before, 3) == 0
        assert store.prunable_compensations(before) == 0
        left = {(t.key, t.status) for t in store.compensations("job")}
        assert left == {
            ("a", "dead"),
            ("b", "dead"),
            ("d", "done"),
            ("d", "dead"),
            ("e", "running"),
        }
        assert store.attempts(done_a) == store.attempts(done_b) == []
        assert len(store.attempts(dead_a)) == 1
        assert running.key == "e"

    def test_a_cancelled_row_scheduled_again_is_not_pruned(
        self, store: SweepStore, job: Callable[..., None], clock: ManualClock
    ) -> None:
        assert isinstance(store, OutboxRetention)
        job("r", "advance")
        self.schedule(store, "r", tasks_of("r")[1:], clock)
        with store.session_unit("job", "r") as entity:
            store.cancel_compensations(entity, clock.now())
        clock.advance(days=10)
        self.schedule(store, "r", tasks_of("r")[1:], clock)  # stuck again: reopened
        assert store.prune_compensations(clock.now() - timedelta(days=7), 10) == 0
        assert [t.status for t in store.compensations("job", "r")] == ["pending"]

    def test_a_sweeper_with_keep_done_prunes_once_per_hour(
        self, store: SweepStore, runner: Runner, job: Callable[..., None], clock: ManualClock
    ) -> None:
        job("k", "advance", "continue_")
        job("m", "advance", "continue_")
        self.settle(store, clock, "k")
        clock.advance(hours=1)
        self.settle(store, clock, "m")
        sweeper = Sweeper([runner], clock=clock, keep_done=timedelta(days=1), prune_batch_size=1)
        clock.advance(days=1, minutes=-30)
        assert sweeper.run_once(drain=False).pruned == 0  # pruning goes with the drain
        assert sweeper.run_once().pruned == 1  # k's done row; m's is not a day old
        clock.advance(minutes=45)
        assert sweeper.run_once().pruned == 0  # m's is, but the hour has not passed
        clock.advance(minutes=15)
        assert sweeper.run_once(deadlines=False).pruned == 1
        left = [(t.key, t.status) for t in store.compensations("job")]
        assert left == [("k", "dead"), ("m", "dead")]

    def test_keep_done_and_the_batch_sizes_are_checked(self, runner: Runner) -> None:
        with pytest.raises(InvalidArgumentError, match="keep_done"):
            Sweeper([runner], keep_done=timedelta(0))
        for size in ("drain_batch_size", "prune_batch_size"):
            with pytest.raises(InvalidArgumentError, match=f"{size} 0 refused"):
                Sweeper([runner], **{size: 0})
