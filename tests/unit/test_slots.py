"""`Slots`, the drain's worker slots: claims for free slots only, several claims in
flight at once, every claimed task run, the first error raised after the rest, a
given-up task's slot carried on by a new thread; and the `Watchdog` that gives up
calls past their time."""

from __future__ import annotations

import threading
import time

import pytest

from statekit.slots import Slots, Superseded
from statekit.watchdog import Watchdog

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
    ran_in: dict[int, int] = {}
    handed: dict[int, int] = {}  # follow-up -> the task that handed it back
    chained = 0

    def work(task: int) -> list[int]:
        nonlocal chained
        ran_in[task] = threading.get_ident()
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


def test_a_superseded_slot_is_carried_on_by_a_new_thread() -> None:
    queue = Queue(100)
    release, given_up = threading.Event(), threading.Event()
    bookkept: list[int] = []
    ended: list[str] = []
    slots: Slots[int]

    def work(task: int) -> None:
        if task != 90:
            queue.work(task)
            return
        threading.Thread(target=slots.supersede, args=(lambda: bookkept.append(task),)).start()
        given_up.wait(5)  # the successor has taken the slot over
        release.wait(10)  # ...and the drain goes on without this thread
        ended.append(threading.current_thread().name)
        raise Superseded

    slots = Slots(SIZE, queue.claim, work, lambda: False)
    runner = threading.Thread(target=slots.run)
    original = slots._slot

    def watched(give_up: object) -> None:
        if give_up is not None:
            given_up.set()
        original(give_up)  # type: ignore[arg-type]

    slots._slot = watched  # type: ignore[method-assign]
    runner.start()
    runner.join(10)
    assert not runner.is_alive()  # the run ended while task 90's thread still waits
    assert bookkept == [90]  # its bookkeeping ran once, in the successor
    assert sorted(queue.done) == [t for t in range(100) if t != 90]  # every other task ran
    assert queue.worst <= SIZE + 1  # the given-up task still counts as outstanding
    release.set()
    for thread in threading.enumerate():
        if thread.name.startswith("statekit-drain"):
            thread.join(5)
    assert len(ended) == 1  # the old thread ended quietly, after the run


def test_the_watchdog_gives_up_a_call_past_its_time_and_only_that_one() -> None:
    dog = Watchdog(0.05)
    expired: list[str] = []
    try:
        quick = dog.watch(lambda: expired.append("quick"))
        assert quick.end() is False  # ended in time: never given up
        slow = dog.watch(lambda: expired.append("slow"))
        started = time.monotonic()
        while not expired and time.monotonic() - started < 5:
            time.sleep(0.005)
        waited = time.monotonic() - started
        assert expired == ["slow"]
        assert 0.05 <= waited < 0.05 + 1.0  # after its deadline, within a poll or so
        assert slow.end() is True  # its thread learns that it was given up
        time.sleep(0.1)
        assert expired == ["slow"]  # once
    finally:
        dog.stop()
    assert not any(t.name == "statekit-drain-watchdog" for t in threading.enumerate())


def test_a_watchdog_with_nothing_to_watch_starts_no_thread() -> None:
    dog = Watchdog(60)
    dog.stop()  # a drain pass that found nothing due
    assert not any(t.name == "statekit-drain-watchdog" for t in threading.enumerate())
