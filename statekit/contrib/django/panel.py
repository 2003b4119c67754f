"""What the admin's change page shows of an instance's machine (`Panel`): the events
allowed from its state with their payload fields, its history, its compensations
when it is stuck, and its diagram (its path highlighted): an SVG drawn by Graphviz's
``dot`` when that is installed, else the Mermaid source."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from statekit.compensation import CompensationTask
from statekit.contrib.events import EventInfo, events_from
from statekit.diagrams import GraphvizError, instance_graph, render, to_mermaid
from statekit.records import TransitionRecord
from statekit.runtime import Runner
from statekit.store.protocol import Reads

__all__ = ["Diagram", "EventButton", "Panel", "diagram_of", "panel_of"]


@dataclass(frozen=True)
class EventButton:
    """An event allowed from the instance's state, and whether this user may fire it."""

    info: EventInfo
    url: str
    permitted: bool

    @property
    def name(self) -> str:
        """The event's name."""
        return self.info.name


@dataclass(frozen=True)
class Diagram:
    """The instance's diagram: `svg` (inline markup from ``dot``) when Graphviz
    drew it, and its Mermaid source always."""

    mermaid: str
    svg: str | None = None


@dataclass(frozen=True)
class Panel:
    """Everything the change page's statekit sections show."""

    machine: str
    state: str
    stuck: bool
    final: bool
    events: list[EventButton]
    history: Sequence[TransitionRecord]
    diagram: Diagram
    compensations: list[CompensationTask] = field(default_factory=list)
    states: tuple[str, ...] = ()
    can_retry: bool = False
    can_resolve: bool = False
    retry_url: str = ""
    resolve_url: str = ""
    form_key: str = ""

    @property
    def dead_lettered(self) -> bool:
        """Whether a compensation has run out of attempts (retry can reopen it)."""
        return any(task.status == "dead" for task in self.compensations)


def panel_of(
    runner: Runner,
    reads: Reads | None,
    entity: object,
    *,
    can_fire: Callable[[str], bool],
    can_retry: bool,
    can_resolve: bool,
    url: Callable[..., str],
    form_key: str,
) -> Panel:
    """The `Panel` of `entity` (its compensations read from `reads`, none
    without it); `url(what, *args)` gives the lever URLs
    (``fire``, event; ``retry``; ``resolve``)."""
    machine = runner.machine
    snapshot = machine.snapshot(entity)
    history = list(runner.history(entity))
    compensations = [] if reads is None else reads.compensations(machine.name, snapshot.key)
    events = [
        EventButton(info, url("fire", info.name), can_fire(info.name))
        for info in events_from(machine, snapshot.state)
    ]
    return Panel(
        machine=machine.name,
        state=snapshot.state,
        stuck=snapshot.stuck_at is not None,
        final=snapshot.state in machine.final_states,
        events=events,
        history=history,
        diagram=diagram_of(runner, entity, history),
        compensations=compensations,
        states=tuple(machine.states),
        can_retry=can_retry,
        can_resolve=can_resolve,
        retry_url=url("retry"),
        resolve_url=url("resolve"),
        form_key=form_key,
    )


_PROLOG = re.compile(r"^.*?(?=<svg\b)", re.DOTALL)


def diagram_of(runner: Runner, entity: object, history: Sequence[TransitionRecord]) -> Diagram:
    """The instance's path through its machine: current state highlighted, the steps
    it took numbered (`statekit.diagrams.instance_graph`)."""
    machine = runner.machine
    graph = instance_graph(machine, machine.snapshot(entity), list(history))
    mermaid = to_mermaid(graph)
    try:
        svg = render(graph, "svg").decode()
    except GraphvizError:
        return Diagram(mermaid)
    return Diagram(mermaid, _PROLOG.sub("", svg, count=1))
