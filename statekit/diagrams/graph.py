"""A neutral graph model of a machine, and the three views built on it.

The renderers (`statekit.diagrams.dot`, `statekit.diagrams.mermaid`) read only this
model, so every view looks the same in every format:

- `machine_graph`: the design: initial and final states, events with their guards
  and compensations, and what each state's timeout does;
- `instance_graph`: one instance's path through the design, numbered in order, with
  its current state highlighted;
- `heat_graph`: the real traffic of all instances: how often each transition was
  taken, how many instances sit in each state and how many are stuck, and which
  transitions were never taken.

Everything here is pure: the builders take records and counts, never a database.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from statekit.definition import MachineSpec, StateSpec, TransitionSpec
from statekit.diagrams.timeouts import format_duration, timeout_text, undo_candidates
from statekit.engine import Machine
from statekit.errors import InvalidArgumentError
from statekit.records import Snapshot, TransitionRecord

__all__ = [
    "Edge",
    "Graph",
    "Node",
    "NodeKind",
    "TransitionKey",
    "View",
    "format_duration",
    "heat_graph",
    "instance_graph",
    "machine_graph",
    "printable",
    "state_counts",
    "transition_counts",
]

NodeKind = Literal["initial", "normal", "final"]
View = Literal["machine", "instance", "heat"]
TransitionKey = tuple[str, str, str]
"""A transition as `(source, event, target)`."""


_BY_HAND = frozenset({"@retry", "@resolve"})
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]+")


def printable(value: str) -> str:
    """`value` with every control character, line break and lone surrogate replaced
    by a space: what any renderer may draw on one line."""
    return _UNPRINTABLE.sub(" ", value)


@dataclass(frozen=True, slots=True)
class Node:
    """One state of the diagram.

    Attributes:
        name: The state's name (also its id).
        kind: `initial`, `normal` or `final`.
        description: The state's description from the definition.
        timeout: What the state's timeout does, e.g. ``after 30m: abandon`` or
            ``after 15m: stuck; then undo cancel_car, cancel_flight``.
        annotations: Further lines shown under the name (instance or traffic facts).
        count: Instances in this state now (heat view).
        stuck: Instances stuck in this state now (heat view).
        current: The instance is in this state now (instance view).
        visited: The instance passed through this state (instance view).
        faded: Shown de-emphasised: off the instance's path, or never reached.
        declared: False for a state seen in the data that the definition lacks.
    """

    name: str
    kind: NodeKind = "normal"
    description: str = ""
    timeout: str | None = None
    annotations: tuple[str, ...] = ()
    count: int | None = None
    stuck: int | None = None
    current: bool = False
    visited: bool = False
    faded: bool = False
    declared: bool = True

    @property
    def is_stuck(self) -> bool:
        """Whether any instance is stuck here (heat) or the instance is (instance view)."""
        return bool(self.stuck)


@dataclass(frozen=True, slots=True)
class Edge:
    """One transition from one source state (a multi-source transition is one edge each).

    Attributes:
        source: Source state.
        target: Target state.
        event: The event that fires it.
        guards: Guard texts, ``name`` for a guard and ``not name`` for an `unless`.
        compensation: The compensation that undoes this step, if any.
        timeout: Set (e.g. ``auto after 1d``) when the source's timeout fires this event.
        steps: Instance view: the positions (1-based) at which the instance took it.
        count: Heat view: how often it was taken.
        emphasis: Drawn strong: on the instance's path.
        faded: Drawn faint: never taken (heat) or off the path (instance).
        declared: False for a transition seen in the data that the definition lacks.
        system: One of statekit's own transitions (`@stuck`, `@resolve`, `@retry`,
            `@compensated`): recorded by the sweeper or a person, not declared.
        actors: Instance view: who took it, from the history (in step order).
    """

    source: str
    target: str
    event: str
    guards: tuple[str, ...] = ()
    compensation: str | None = None
    timeout: str | None = None
    steps: tuple[int, ...] = ()
    count: int | None = None
    emphasis: bool = False
    faded: bool = False
    declared: bool = True
    system: bool = False
    actors: tuple[str, ...] = ()

    @property
    def key(self) -> TransitionKey:
        """The edge as `(source, event, target)`."""
        return (self.source, self.event, self.target)

    @property
    def byline(self) -> str | None:
        """Who takes one of statekit's own transitions: the recorded actors, else
        a person for `@retry` and `@resolve` and statekit for the others."""
        if not self.system:
            return None
        if self.actors:
            return "by " + ", ".join(self.actors)
        return "by hand" if self.event in _BY_HAND else "by statekit"


@dataclass(frozen=True, slots=True)
class Graph:
    """A whole diagram: nodes and edges in a stable order, plus a title.

    Attributes:
        name: The machine's name.
        title: The caption drawn with the diagram.
        view: Which view this is: `machine`, `instance` or `heat`.
        nodes: States in declaration order (undeclared ones last).
        edges: Transitions in declaration order (undeclared ones last).
        description: The machine's description, drawn under the title.
    """

    name: str
    title: str
    view: View
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    description: str = ""

    def node(self, name: str) -> Node:
        """Return the node named `name`.

        Raises:
            InvalidArgumentError: no such node; it lists the nodes.
        """
        for node in self.nodes:
            if node.name == name:
                return node
        names = ", ".join(node.name for node in self.nodes)
        raise InvalidArgumentError(
            "name",
            name,
            f"nodes: {names}",
            message=f"graph {self.name!r} has no node {name!r} (nodes: {names})",
        )

    def edges_of(self, event: str) -> tuple[Edge, ...]:
        """Return every edge of `event`, in order."""
        return tuple(e for e in self.edges if e.event == event)

    @property
    def initial(self) -> tuple[str, ...]:
        """Names of the initial states (one for a valid machine)."""
        return tuple(n.name for n in self.nodes if n.kind == "initial")

    @property
    def finals(self) -> tuple[str, ...]:
        """Names of the final states."""
        return tuple(n.name for n in self.nodes if n.kind == "final")


# -- formatting ------------------------------------------------------------------------


def _moment(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M")


def _spec_of(machine: Machine | MachineSpec) -> MachineSpec:
    return machine.spec if isinstance(machine, Machine) else machine


def _kind(state: StateSpec) -> NodeKind:
    if state.initial:
        return "initial"
    return "final" if state.final else "normal"


def _guard_texts(transition: TransitionSpec) -> tuple[str, ...]:
    return (*transition.guards, *(f"not {name}" for name in transition.unless))


# -- builders --------------------------------------------------------------------------


def machine_graph(machine: Machine | MachineSpec) -> Graph:
    """Build the design view of a machine (or of a spec).

    States come in declaration order, transitions in declaration order with one edge
    per source. A state's timeout becomes a text on the state ("after 30m: abandon",
    or "after 30m: stuck; then undo release_stock" when it has no event) and, when
    it fires an event, marks that event's edges from the state. A timeout that marks
    instances stuck also gets an `@compensated` edge into the machine's compensated
    state, where the sweeper moves them once their compensations ran.
    """
    spec = _spec_of(machine)
    timeouts = {s.name: s.timeout for s in spec.states if s.timeout is not None}
    undo = undo_candidates(spec)
    nodes = tuple(
        Node(
            name=s.name,
            kind=_kind(s),
            description=s.description,
            timeout=timeout_text(s, undo.get(s.name, ())),
        )
        for s in spec.states
    )
    edges: list[Edge] = []
    for t in spec.transitions:
        for source in dict.fromkeys(t.sources):
            timeout = timeouts.get(source)
            fired_by_timeout = timeout is not None and timeout.event == t.event
            edges.append(
                Edge(
                    source=source,
                    target=t.target,
                    event=t.event,
                    guards=_guard_texts(t),
                    compensation=t.compensation,
                    timeout=(
                        f"auto after {format_duration(timeout.after)}"
                        if timeout is not None and fired_by_timeout
                        else None
                    ),
                )
            )
    # the sweeper moves an instance stuck by its state's timeout, once every
    # compensation ran, into the machine's compensated state
    target = spec.compensated_state
    if target is not None:
        edges += [
            Edge(source=name, target=target, event="@compensated", system=True)
            for name, timeout in timeouts.items()
            if timeout.event is None and name != target
        ]
    title = f"{spec.name} v{spec.version}"
    return Graph(
        name=spec.name,
        title=title,
        view="machine",
        nodes=nodes,
        edges=tuple(edges),
        description=spec.description,
    )


def _with_undeclared(
    graph: Graph, states: Iterable[str], keys: Iterable[TransitionKey]
) -> tuple[list[Node], list[Edge]]:
    """The graph's nodes and edges plus any states and transitions the data shows
    that the design lacks (drawn as such)."""
    nodes = list(graph.nodes)
    known = {n.name for n in nodes}
    for name in states:
        if name not in known:
            known.add(name)
            nodes.append(Node(name=name, declared=False, annotations=("not in the definition",)))
    edges = list(graph.edges)
    declared = {e.key for e in edges}
    for source, event, target in keys:
        for name in (source, target):
            if name not in known:
                known.add(name)
                nodes.append(
                    Node(name=name, declared=False, annotations=("not in the definition",))
                )
        if (source, event, target) not in declared:
            declared.add((source, event, target))
            system = event.startswith("@")
            edges.append(
                Edge(source=source, target=target, event=event, declared=system, system=system)
            )
    return nodes, edges


def instance_graph(
    machine: Machine | MachineSpec,
    snapshot: Snapshot,
    history: Sequence[TransitionRecord],
) -> Graph:
    """Build one instance's view: its path through the design, from its history.

    Edges the instance took are emphasised and carry the step numbers at which it
    took them (1 = its first transition, in `seq` order); the current state is
    highlighted with when it was entered, its deadline and, if stuck, why. States
    and edges off the path are faded. A recorded transition the definition lacks
    (an older version, say) is still drawn, marked as undeclared.
    """
    base = machine_graph(machine)
    records = sorted(history, key=lambda r: r.seq)
    nodes, edges = _with_undeclared(
        base, [snapshot.state], [(r.source, r.event, r.target) for r in records]
    )
    steps: dict[TransitionKey, list[int]] = {}
    actors: dict[TransitionKey, dict[str, None]] = {}
    for position, record in enumerate(records, start=1):
        key = (record.source, record.event, record.target)
        steps.setdefault(key, []).append(position)
        if record.actor:
            actors.setdefault(key, {})[record.actor] = None
    visited = {snapshot.state}
    for record in records:
        visited.update((record.source, record.target))
    initial = base.initial
    if not records:
        visited.update(initial)

    new_nodes: list[Node] = []
    for node in nodes:
        current = node.name == snapshot.state
        notes = list(node.annotations)
        if current:
            notes.append(
                f"here since {_moment(snapshot.entered_at)}" if snapshot.entered_at else "here now"
            )
            if snapshot.stuck_at is not None:
                reason = f": {snapshot.stuck_reason}" if snapshot.stuck_reason else ""
                notes.append(f"STUCK since {_moment(snapshot.stuck_at)}{reason}")
            elif snapshot.deadline_at is not None:
                notes.append(f"deadline {_moment(snapshot.deadline_at)}")
        new_nodes.append(
            replace(
                node,
                annotations=tuple(notes),
                current=current,
                visited=node.name in visited,
                faded=node.name not in visited,
                stuck=1 if current and snapshot.stuck_at is not None else None,
            )
        )
    new_edges = [
        replace(
            edge,
            steps=tuple(steps.get(edge.key, ())),
            actors=tuple(actors.get(edge.key, ())),
            emphasis=edge.key in steps,
            faded=edge.key not in steps,
        )
        for edge in edges
    ]
    title = f"{base.name} {snapshot.key}: {snapshot.state}"
    if snapshot.stuck_at is not None:
        title += " (stuck)"
    return replace(
        base, title=title, view="instance", nodes=tuple(new_nodes), edges=tuple(new_edges)
    )


def heat_graph(
    machine: Machine | MachineSpec,
    transition_counts: Mapping[TransitionKey, int],
    state_counts: Mapping[str, int],
    stuck_counts: Mapping[str, int] | None = None,
) -> Graph:
    """Build the reality view: the design overlaid with what all instances did.

    Args:
        machine: The machine (or spec) whose design is shown.
        transition_counts: How often each `(source, event, target)` was taken, from
            the history of all instances (see `transition_counts`).
        state_counts: How many instances are in each state now.
        stuck_counts: How many of those are stuck, per state.

    Each edge carries its count; transitions never taken are faded, and so are
    states no instance ever reached. Transitions and states in the data that the
    definition lacks are added, marked undeclared.
    """
    stuck_counts = stuck_counts or {}
    base = machine_graph(machine)
    taken = {k: v for k, v in transition_counts.items() if v > 0}
    nodes, edges = _with_undeclared(
        base,
        [
            *(s for s, n in state_counts.items() if n > 0),
            *(s for s, n in stuck_counts.items() if n),
        ],
        sorted(taken),
    )
    reached = set(base.initial)
    for source, _, target in taken:
        reached.update((source, target))
    reached.update(s for s, n in state_counts.items() if n > 0)

    new_nodes: list[Node] = []
    for node in nodes:
        now = state_counts.get(node.name, 0)
        stuck = stuck_counts.get(node.name, 0)
        notes = list(node.annotations)
        if now or stuck:
            notes.append(f"{now} now, {stuck} stuck" if stuck else f"{now} now")
        elif node.name not in reached:
            notes.append("never reached")
        new_nodes.append(
            replace(
                node,
                annotations=tuple(notes),
                count=now,
                stuck=stuck,
                faded=node.name not in reached,
            )
        )
    new_edges = [
        replace(edge, count=taken.get(edge.key, 0), faded=edge.key not in taken) for edge in edges
    ]
    total = sum(state_counts.values())
    stuck_total = sum(stuck_counts.values())
    title = f"{base.name}: real traffic ({total} instances, {stuck_total} stuck)"
    return replace(base, title=title, view="heat", nodes=tuple(new_nodes), edges=tuple(new_edges))


# -- counting helpers for the heat view ------------------------------------------------


def transition_counts(records: Iterable[TransitionRecord]) -> dict[TransitionKey, int]:
    """Count records per `(source, event, target)`; feed the result to `heat_graph`."""
    return dict(Counter((r.source, r.event, r.target) for r in records))


def state_counts(snapshots: Iterable[Snapshot]) -> tuple[dict[str, int], dict[str, int]]:
    """Count instances per state and stuck instances per state, from their snapshots."""
    now: Counter[str] = Counter()
    stuck: Counter[str] = Counter()
    for snapshot in snapshots:
        now[snapshot.state] += 1
        if snapshot.stuck_at is not None:
            stuck[snapshot.state] += 1
    return dict(now), dict(stuck)
