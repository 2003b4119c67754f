"""What a state's timeout does, as text: its duration and, for a stuck timeout, the
compensations that may run."""

from __future__ import annotations

from collections import deque
from datetime import timedelta

from statekit.definition import MachineSpec, StateSpec

__all__ = ["format_duration", "timeout_text", "undo_candidates"]

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def format_duration(value: timedelta) -> str:
    """Format a duration the way people write it: ``30m``, ``2h``, ``1d 12h``.

    Whole units only, largest first, at most two of them; below a second it
    shows milliseconds.
    """
    total = value.total_seconds()
    if total < 1:
        return f"{round(total * 1000)}ms"
    seconds = int(total)
    parts: list[str] = []
    for unit, size in _UNITS:
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return " ".join(parts[:2])


_UNDO_SHOWN = 3
"""How many compensations a stuck timeout's text names (nearest first)."""


def undo_candidates(spec: MachineSpec) -> dict[str, tuple[str, ...]]:
    """Per state, the compensations a stuck instance there may have to run, nearest
    step first: at most `_UNDO_SHOWN`, plus an ellipsis when there are more.

    These are the compensations of the transitions from which the state can be
    reached, ranked by how many steps back they lie (then by declaration order);
    which of them actually run depends on the steps the instance took. One
    breadth-first walk forward from every compensated step at once, in which each
    state keeps only its nearest few, makes this linear in the machine's size.
    """
    successors: dict[str, list[str]] = {s.name: [] for s in spec.states}
    for t in spec.transitions:
        for source in dict.fromkeys(t.sources):
            successors.setdefault(source, []).append(t.target)
    keep = _UNDO_SHOWN + 1  # one more than shown, to know there are more
    found: dict[str, list[str]] = {}
    # (compensation, state it is offered in); a transition's compensation is
    # nearest in its own target, one step further in each state after that
    queue = deque((t.compensation, t.target) for t in spec.transitions if t.compensation)
    while queue:
        compensation, state = queue.popleft()
        names = found.setdefault(state, [])
        if len(names) >= keep or compensation in names:
            continue
        names.append(compensation)
        queue.extend((compensation, following) for following in successors.get(state, ()))
    return {
        state: (*names[:_UNDO_SHOWN], "…") if len(names) > _UNDO_SHOWN else tuple(names)
        for state, names in found.items()
    }


def timeout_text(state: StateSpec, undo: tuple[str, ...]) -> str | None:
    """The timeout of `state` as text, e.g. ``after 30m: abandon`` or ``after 15m:
    stuck; then undo cancel_car, cancel_flight`` (`undo` from `undo_candidates`)."""
    if state.timeout is None:
        return None
    after = format_duration(state.timeout.after)
    if state.timeout.event is not None:
        return f"after {after}: {state.timeout.event}"
    if undo:
        return f"after {after}: stuck; then undo {', '.join(undo)}"
    return f"after {after}: stuck"
