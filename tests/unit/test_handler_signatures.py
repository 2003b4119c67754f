"""Handlers are checked when the machine is built, and a bug in one is not hidden.

A guard with the wrong number of parameters used to pass `Machine()` and `statekit
check` and fail only when its event was fired; `can_fire`, which "never raises", then
swallowed the `TypeError` and answered False.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from statekit import (
    CompensationContext,
    Context,
    DefinitionError,
    MemoryStore,
    Runner,
    State,
    StatefulObject,
    Workflow,
)


@dataclass(eq=False)
class Lamp(StatefulObject):
    id: str
    bulbs: int = 1

    def has_bulb(self, ctx: Context) -> bool:
        return self.bulbs > 0

    def flicker(self) -> None:  # no ctx: cannot be a handler
        pass


def one_argument(lamp: Lamp) -> bool:  # forgot ctx
    return True


def three_arguments(lamp: Lamp, ctx: Context, extra: int) -> None:
    pass


def fine(lamp: Lamp, ctx: Context) -> bool:
    return True


def flexible(*args: object, **kwargs: object) -> bool:
    return True


def undo(lamp: Lamp, step: CompensationContext) -> None:
    pass


def undo_badly() -> None:
    pass


def test_handlers_that_cannot_take_entity_and_context_are_named_at_build_time() -> None:
    with pytest.raises(DefinitionError) as caught:

        class BrokenLampWorkflow(Workflow, entity=Lamp):
            off = State(initial=True)
            on = State(final=True)
            switch_on = off.to(
                on,
                guard=[one_argument, "has_bulb"],
                pre=fine,
                action=[three_arguments, "flicker"],
                effect=flexible,
                compensate=undo_badly,
            )

    problems = caught.value.problems
    assert caught.value.machine == "broken_lamp"
    assert len(problems) == 4, problems
    text = "\n".join(problems)
    assert "guard 'one_argument'" in text
    assert "action 'three_arguments'" in text
    assert "action 'flicker'" in text
    assert "compensation 'undo_badly'" in text
    assert "(entity, ctx)" in text
    assert "(entity, undo)" in text


def test_well_formed_handlers_pass() -> None:
    class GoodLampWorkflow(Workflow, entity=Lamp):
        off = State(initial=True)
        on = State(final=True)
        switch_on = off.to(on, guard=[fine, "has_bulb"], effect=flexible, compensate=undo)

    assert GoodLampWorkflow.machine.name == "good_lamp"


def buggy_guard(lamp: Lamp, ctx: Context) -> bool:
    return lamp.wattage > 0  # type: ignore[attr-defined]  # a bug: no such attribute


class BuggyLampWorkflow(Workflow):
    off = State(initial=True)
    on = State(final=True)
    switch_on = off.to(on, guard=buggy_guard)


def test_can_fire_lets_a_bug_in_a_guard_out() -> None:
    runner = Runner(BuggyLampWorkflow.machine, MemoryStore())
    lamp = Lamp(id="l1")
    runner.start(lamp)
    with pytest.raises(AttributeError, match="wattage"):
        runner.can_fire(lamp, "switch_on")
    with pytest.raises(AttributeError, match="wattage"):
        BuggyLampWorkflow.machine.can_fire(lamp, "switch_on")
    assert runner.can_fire(lamp, "no_such_event") is False  # a refusal is still False


PROBE = """
from statekit import Context, State, Workflow


def forgot_ctx(entity: object) -> bool:
    return True


def counts(entity: object, ctx: Context) -> int:
    return 1


def fine(entity: object, ctx: Context) -> bool | str:
    return True


class LampWorkflow(Workflow):
    off = State(initial=True)
    on = State(final=True)
    a = off.to(on, guard=forgot_ctx)
    b = off.to(on, guard=counts)
    c = off.to(on, guard=fine, action=fine)
"""


def test_mypy_rejects_handlers_of_the_wrong_shape(tmp_path: Path) -> None:
    """The handler options are typed: a guard that forgot `ctx`, or returns a number,
    fails `mypy --strict` in the application, before anything runs."""
    probe = tmp_path / "lamp.py"
    probe.write_text(PROBE)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"),
         str(probe)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert [line.split(":")[1] for line in errors] == ["20", "21"], result.stdout
    assert all('Argument "guard"' in line for line in errors)
