"""`Slots`, the drain's worker slots: claims for free slots only, several claims in
flight at once, every claimed task run, the first error raised after the rest."""

from __future__ import annotations

import threading
import time

import pytest

from statekit.slots import Slots

SIZE = 4


class Queue:
    """`count` tasks behind a claim that takes 2 ms (a commit), counting what it sees."""

    def __init__(self, count: int) -> None:
        self.lock = threading.Lock()
        self.left = count
        self.outstanding = 0  # claimed, not yet finished
        self.asked = 0  # tasks asked for by the claims in flight
        self.in_flight = 0
        self.overlapped = 0  # claims that began while another was in flight
        self.done: list[int] = []
        self.worst = 0  # the most slots spoken for at once (must stay <= SIZE)

    def claim(self, free: int) -> list[int]:
        with self.lock:
            self.asked += free
            self.worst = max(self.worst, self.outstanding + self.asked)
            self.overlapped += self.in_flight > 0
            self.in_flight += 1
        time.sleep(0.002)
        with self.lock:
            taken = min(free, self.left)
            self.left -= taken
            self.asked -= free
            self.in_flight -= 1
            self.outstanding += taken
            return [self.left + n for n in range(taken)]

    def work(self, task: int) -> None:
        time.sleep(0.001)
        with self.lock:
            self.outstanding -= 1
            self.done.append(task)


def test_claims_speak_for_free_slots_only_and_run_at_once() -> None:
    queue = Queue(300)
    Slots(SIZE, queue.claim, queue.work, lambda: False).run()
    assert sorted(queue.done) == list(range(300))  # each claimed task ran, once
    assert queue.worst <= SIZE  # running + claimed + asked for never beyond the slots
    assert queue.overlapped > 0  # a claim did not wait for another to finish


def test_a_stop_claims_nothing_more_and_runs_what_was_claimed() -> None:
    queue = Queue(300)
    stopping = threading.Event()

    def work(task: int) -> None:
        stopping.set()
        queue.work(task)

    Slots(SIZE, queue.claim, work, stopping.is_set).run()
    assert len(queue.done) == 300 - queue.left  # nothing claimed is left unrun
    assert len(queue.done) <= 2 * SIZE  # the first claim and at most one round in flight


def test_an_error_is_raised_after_the_running_tasks_finished() -> None:
    queue = Queue(50)
    finished: list[int] = []

    def work(task: int) -> None:
        if task == 45:
            raise RuntimeError("store down")
        time.sleep(0.01)
        finished.append(task)
        queue.work(task)

    with pytest.raises(RuntimeError, match="store down"):
        Slots(SIZE, queue.claim, work, lambda: False).run()
    assert queue.outstanding == 1  # only the failed task; the others ran to the end


def test_a_task_handed_back_by_its_work_runs_next_in_the_same_slot() -> None:
    queue = Queue(200)
    ran_in: dict[int, str] = {}
    handed: dict[int, int] = {}  # follow-up -> the task that handed it back
    chained = 0

    def work(task: int) -> list[int]:
        nonlocal chained
        ran_in[task] = threading.current_thread().name
        queue.work(task)
        with queue.lock:  # claim the next task for this slot, as a completion would
            if queue.left == 0 or task % 2:
                return []
            queue.left -= 1
            queue.outstanding += 1
            chained += 1
            handed[queue.left] = task
            return [queue.left]

    Slots(SIZE, queue.claim, work, lambda: False).run()
    assert sorted(queue.done) == list(range(200))  # every task ran once
    assert chained > 50  # half of the tasks handed on
    assert queue.worst <= SIZE
    assert queue.outstanding == 0
    assert all(ran_in[follow] == ran_in[task] for follow, task in handed.items())
