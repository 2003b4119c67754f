"""The `Reads` protocol every store answers, written once and run on each store.

Subclass `ReadsContract` in a test module (a class whose name starts with `Test`)
and provide the fixtures below. Each test fills the store with the same five
orders, fired through a `Runner` at known times from T0:

- 1: reserve +10m, pay +20m, ship +2h20m       (shipped)
- 2: reserve +10m, pay +30m                    (paid)
- 3: reserve +10m, pay +50m, stuck mark +2h    (paid, stuck: a mark in place)
- 4: never touched                             (pending)
- 5: reserve +10m, cancel +1h10m               (cancelled)

Fixtures:
    store (required): a fresh, empty store for each test that persists instances of
        `models.order.OrderWorkflow` and knows that machine (`Reads.machines`).
    new_order (required): `new_order(n) -> entity`, a new, unstarted order with key
        `n` (an integer; the store keys it as its text) and total `10 * n`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from models.order import OrderWorkflow
from statekit import ManualClock, Plan, Runner
from statekit.store.protocol import Reads, Stay, StoredState, Waiting

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
MACHINE = OrderWorkflow.machine


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


def fill(store: Any, new_entity: Callable[[int], object]) -> None:
    """The five orders of the module docstring, through a `Runner` on `store`."""
    clock = ManualClock(T0)
    orders = Runner(MACHINE, store, clock=clock)
    for number in range(1, 6):
        orders.start(new_entity(number))
    steps: list[tuple[int, int, str, dict[str, Any]]] = [
        (10, 1, "reserve", {}),
        (10, 2, "reserve", {}),
        (10, 3, "reserve", {}),
        (10, 5, "reserve", {}),
        (20, 1, "pay", {"amount": Decimal(10), "reference": "P1"}),
        (30, 2, "pay", {"amount": Decimal(20), "reference": "P2"}),
        (50, 3, "pay", {"amount": Decimal(30), "reference": "P3"}),
        (70, 5, "cancel", {}),
        (140, 1, "ship", {"carrier": "DHL", "tracking_number": "T1"}),
    ]
    for at, number, event, payload in steps:
        clock.set(minutes(at))
        orders.fire_by_key(number, event, **payload)
    # What the sweeper writes when it gives up on an instance: a mark in place.
    paid = store.load("order", "3")
    mark = Plan(
        event="@stuck",
        source="paid",
        target="paid",
        payload=None,
        now=minutes(120),
        entity_type="order",
        key="3",
        expected_version=paid.version,
        definition_version=MACHINE.version,
        stuck_reason="payment never settled",
        entered_at=paid.entered_at,
    )
    store.apply(mark)


class ReadsContract:
    """What every store's reads answer; see the module docstring for the fixtures."""

    @pytest.fixture
    def reads(self, store: Any, new_order: Callable[[int], object]) -> Reads:
        """The store, filled with the five orders."""
        fill(store, new_order)
        return store  # type: ignore[no-any-return]

    def test_machines_are_the_registered_ones(self, reads: Reads) -> None:
        assert dict(reads.machines()) == {"order": MACHINE}

    def test_count_by_state_counts_instances_now_and_the_stuck_ones(self, reads: Reads) -> None:
        assert reads.count_by_state("order") == {
            "shipped": 1,
            "paid": 2,
            "pending": 1,
            "cancelled": 1,
        }
        assert reads.count_by_state("order", stuck_only=True) == {"paid": 1}

    def test_transition_counts_in_a_window_include_both_ends(self, reads: Reads) -> None:
        assert reads.transition_counts("order") == {
            ("pending", "reserve", "stock_reserved"): 4,
            ("stock_reserved", "pay", "paid"): 3,
            ("stock_reserved", "cancel", "cancelled"): 1,
            ("paid", "ship", "shipped"): 1,
            ("paid", "@stuck", "paid"): 1,
        }
        window = reads.transition_counts("order", since=minutes(20), until=minutes(50))
        assert window == {("stock_reserved", "pay", "paid"): 3}

    def test_stays_run_from_entering_to_leaving_and_skip_marks_in_place(self, reads: Reads) -> None:
        stays = sorted(reads.stays("order", T0, minutes(180)), key=lambda s: (s.state, s.left_at))
        assert stays == [
            Stay("paid", minutes(20), minutes(140)),
            Stay("stock_reserved", minutes(10), minutes(20)),
            Stay("stock_reserved", minutes(10), minutes(30)),
            Stay("stock_reserved", minutes(10), minutes(50)),
            Stay("stock_reserved", minutes(10), minutes(70)),
        ]
        assert [s.seconds for s in stays[:2]] == [7200.0, 600.0]
        window = reads.stays("order", minutes(30), minutes(50))
        assert sorted(s.left_at for s in window) == [minutes(30), minutes(50)]

    def test_waiting_lists_non_final_instances_entered_by_now(self, reads: Reads) -> None:
        def waiting(now: datetime) -> list[Waiting]:
            return sorted(reads.waiting("order", now), key=lambda w: (w.state, w.entered_at))

        assert waiting(minutes(180)) == [
            Waiting("paid", minutes(30)),
            Waiting("paid", minutes(50)),  # the stuck mark kept its entry time
            Waiting("pending", T0),
            Waiting("shipped", minutes(140)),
        ]
        assert waiting(minutes(40)) == [Waiting("paid", minutes(30)), Waiting("pending", T0)]

    def test_stored_states_count_per_state_and_definition_version(self, reads: Reads) -> None:
        found = sorted(reads.stored_states("order"), key=lambda s: s.state)
        assert found == [
            StoredState("cancelled", 1, 1),
            StoredState("paid", 1, 2),
            StoredState("pending", 1, 1),
            StoredState("shipped", 1, 1),
        ]

    def test_stuck_lists_the_marked_instance(self, reads: Reads) -> None:
        [snapshot] = reads.stuck("order")
        assert (snapshot.key, snapshot.state, snapshot.stuck_at) == ("3", "paid", minutes(120))
        assert snapshot.stuck_reason == "payment never settled"

    def test_versions_agree_with_history_and_no_compensations_were_scheduled(
        self, reads: Reads
    ) -> None:
        assert reads.disagreements("order") == []
        assert [r.event for r in reads.history("order", "1")] == ["reserve", "pay", "ship"]
        assert reads.load("order", "3").version == 3
        assert reads.compensations("order") == []
        assert reads.attempts(1) == []

    def test_both_stores_implement_the_protocol(self, reads: Reads) -> None:
        assert isinstance(reads, Reads)
