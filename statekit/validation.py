"""Build-time graph rules for a `MachineSpec`: every offender is reported at once."""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import Callable

from statekit.definition import MachineSpec, TransitionSpec

__all__ = ["graph_problems", "reference_problems"]


def _label(t: TransitionSpec) -> str:
    return f"transition {t.event!r} ({'|'.join(t.sources)} -> {t.target})"


def graph_problems(spec: MachineSpec) -> list[str]:
    """Return every structural problem of `spec`: initial states, unknown or
    unreachable states, dead ends, exits from final states, ambiguous events and
    timeouts that cannot fire."""
    problems: list[str] = []
    states = {s.name: s for s in spec.states}
    initial = [s.name for s in spec.states if s.initial]
    if not initial:
        problems.append("no initial state (mark exactly one state initial)")
    elif len(initial) > 1:
        problems.append(f"several initial states: {', '.join(initial)} (mark exactly one)")

    outgoing: dict[str, list[TransitionSpec]] = defaultdict(list)
    for t in spec.transitions:
        for source in t.sources:
            if source not in states:
                problems.append(f"{_label(t)}: unknown source state {source!r}")
            elif states[source].final:
                problems.append(f"{_label(t)}: leaves final state {source!r}")
            else:
                outgoing[source].append(t)
        if t.target not in states:
            problems.append(f"{_label(t)}: unknown target state {t.target!r}")

    for state in spec.states:
        if state.final and state.timeout is not None:
            problems.append(f"final state {state.name!r} declares a timeout")
        if not state.final and not outgoing[state.name]:
            problems.append(
                f"non-final state {state.name!r} has no way out (no transition leaves it)"
            )
        timeout_event = state.timeout.event if state.timeout else None
        if timeout_event and not any(t.event == timeout_event for t in outgoing[state.name]):
            problems.append(
                f"state {state.name!r} times out by firing {timeout_event!r}, "
                f"but no transition {timeout_event!r} leaves {state.name!r}"
            )

    compensated = spec.compensated_state
    if compensated is not None:
        if compensated not in states:
            problems.append(f"compensated_state {compensated!r} is not a declared state")
        elif not states[compensated].final:
            problems.append(f"compensated_state {compensated!r} must be a final state")

    if len(initial) == 1:
        reached = {initial[0]}
        if compensated is not None:
            reached.add(compensated)  # entered by the sweeper once compensations finish
        frontier = [initial[0]]
        while frontier:
            for t in outgoing[frontier.pop()]:
                if t.target in states and t.target not in reached:
                    reached.add(t.target)
                    frontier.append(t.target)
        for name in states:
            if name not in reached:
                problems.append(f"state {name!r} is unreachable from initial state {initial[0]!r}")

    problems.extend(_ambiguity_problems(outgoing))
    problems.extend(_payload_problems(spec))
    return problems


def _ambiguity_problems(outgoing: dict[str, list[TransitionSpec]]) -> list[str]:
    problems: list[str] = []
    for state, transitions in outgoing.items():
        by_event: dict[str, list[TransitionSpec]] = defaultdict(list)
        for t in transitions:
            by_event[t.event].append(t)
        for event, branches in by_event.items():
            seen_guards: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
            for index, branch in enumerate(branches):
                guards = (branch.guards, branch.unless)
                unguarded = not branch.guards and not branch.unless
                if unguarded and index < len(branches) - 1:
                    later = ", ".join(repr(b.target) for b in branches[index + 1 :])
                    problems.append(
                        f"event {event!r} is ambiguous from state {state!r}: the branch to "
                        f"{branch.target!r} has no guard, so the branches to {later} can never "
                        "be taken (guard it, or declare the unguarded branch last)"
                    )
                elif not unguarded and guards in seen_guards:
                    problems.append(
                        f"event {event!r} is ambiguous from state {state!r}: two branches "
                        f"share the same guards ({', '.join(branch.guards + branch.unless)})"
                    )
                seen_guards.add(guards)
    return problems


def _payload_problems(spec: MachineSpec) -> list[str]:
    payloads: dict[str, set[str | None]] = defaultdict(set)
    for t in spec.transitions:
        payloads[t.event].add(t.payload)
    return [
        f"event {event!r} declares different payload models on its branches: "
        + ", ".join(sorted(str(m) for m in models))
        for event, models in payloads.items()
        if len(models) > 1
    ]


def signature_problems(
    spec: MachineSpec, handler_of: Callable[[str], Callable[..., object] | None]
) -> list[str]:
    """Return a problem for every handler that cannot be called the way statekit calls
    it: `handler(entity, ctx)`, or `handler(entity, undo)` for a compensation.
    `handler_of(name)` gives the function to check (an entity method unbound, so its
    `self` stands for the entity), or None to skip a name."""
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for t in spec.transitions:
        refs: list[tuple[str, str]] = [
            *(("guard", n) for n in t.guards),
            *(("guard", n) for n in t.unless),
            *(("precondition", n) for n in t.preconditions),
            *(("postcondition", n) for n in t.postconditions),
            *(("action", n) for n in t.actions),
            *(("effect", n) for n in t.effects),
        ]
        if t.compensation is not None:
            refs.append(("compensation", t.compensation))
        for kind, name in refs:
            if (kind, name) in seen:
                continue
            seen.add((kind, name))
            handler = handler_of(name)
            if handler is None:
                continue
            try:
                signature = inspect.signature(handler)
            except (TypeError, ValueError):  # a builtin without a signature: trust it
                continue
            try:
                signature.bind(None, None)
            except TypeError:
                second = "undo" if kind == "compensation" else "ctx"
                problems.append(
                    f"{_label(t)}: {kind} {name!r} cannot be called as {kind}(entity, "
                    f"{second}); its signature is {name}{signature}"
                )
    return problems


def reference_problems(spec: MachineSpec, exists: Callable[[str, str], bool]) -> list[str]:
    """Return a problem for every callable or model name that `exists(kind, name)`
    cannot resolve."""
    problems: list[str] = []
    for t in spec.transitions:
        refs: list[tuple[str, str]] = [
            *(("guard", n) for n in t.guards),
            *(("guard", n) for n in t.unless),
            *(("precondition", n) for n in t.preconditions),
            *(("postcondition", n) for n in t.postconditions),
            *(("action", n) for n in t.actions),
            *(("effect", n) for n in t.effects),
        ]
        if t.compensation is not None:
            refs.append(("compensation", t.compensation))
        if t.payload is not None:
            refs.append(("payload", t.payload))
        for kind, name in refs:
            if not exists(kind, name):
                what = "payload model" if kind == "payload" else kind
                problems.append(f"{_label(t)}: unknown {what} {name!r}")
    return problems
