"""Diagrams under hostile text, big machines and statekit's own steps.

Mermaid cannot be run here, so its output is checked against the parts of Mermaid's
state-diagram lexer that hostile text can reach: a line holding ``direction XX``
becomes a direction statement, ``%%{`` starts configuration anywhere in the text,
and a block note runs to the first ``end note``. Graphviz output is checked with the
real `dot`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from models.order import OrderWorkflow
from statekit import MachineSpec, Snapshot, StatekitError, TransitionRecord
from statekit.definition import StateSpec, TimeoutSpec, TransitionSpec
from statekit.diagrams import (
    Edge,
    Graph,
    GraphvizError,
    Node,
    heat_graph,
    instance_graph,
    machine_graph,
    render,
    to_dot,
    to_mermaid,
)

T0 = datetime(2024, 5, 1, 9, 0)
HOSTILE = (
    "pick the direction LR",
    "then Direction\ttb please",
    "%%{init: {'theme': 'forest'}}%%",
    "end note",
    "END   Note early",
    "tab\tbell\x07 escape\x1b[31m nul\x00 del\x7f cr\r lf\n ls\u2028 end",
    "ends in the direction",
)


def hostile_graph() -> Graph:
    """Every text slot of a graph filled with hostile text (built directly, so the
    renderer is tested on its own, whatever the definition accepts)."""
    nodes = tuple(
        Node(
            name=f"tb{i}",
            kind="initial" if i == 0 else "normal",
            description=text,
            timeout=f"after 1h: stuck; then undo {text}",
            annotations=(f"STUCK since 2024-05-01 09:00: {text}",),
        )
        for i, text in enumerate(HOSTILE)
    )
    edges = tuple(
        Edge(
            source=f"tb{i}",
            target=f"tb{(i + 1) % len(HOSTILE)}",
            event=f"go{i}",
            guards=(text,),
            compensation=text,
        )
        for i, text in enumerate(HOSTILE)
    )
    return Graph(
        name="hostile",
        title="hostile %%{init: {'theme': 'dark'}}%% direction TB",
        view="machine",
        nodes=nodes,
        edges=edges,
        description="\n".join(HOSTILE),
    )


def mermaid_statements(mermaid: str) -> list[str]:
    """The diagram's statements as Mermaid's lexer splits them (notes as one each)."""
    body = mermaid.split("stateDiagram-v2\n", 1)[1]
    statements: list[str] = []
    note: list[str] | None = None
    for line in body.split("\n"):
        if note is not None:
            note.append(line)
            if re.search(r"(?i)end\s+note", line):
                statements.append("\n".join(note))
                note = None
            continue
        if re.match(r"\s*note\s", line, re.I):
            note = [line]
            continue
        statements.append(line)
    return statements


def test_mermaid_text_cannot_become_statements_or_configuration() -> None:
    graph = hostile_graph()
    mermaid = to_mermaid(graph)
    assert "%%" not in mermaid
    statements = mermaid_statements(mermaid)
    directions = [s for s in statements if re.search(r"(?i)direction\s+(LR|RL|TB|BT)", s)]
    assert directions == ["    direction LR"]
    # Mermaid's pattern is `.*direction\s+TB`, and \s+ spans a line break
    assert re.findall(r"(?i)direction\s+(?:LR|RL|TB|BT)", mermaid) == ["direction LR"]
    # every note closes on its own 'end note' line, and nothing else does
    notes = [s for s in statements if s.lstrip().startswith("note ")]
    assert len(notes) == len(graph.nodes)
    for note in notes:
        assert re.findall(r"(?i)end\s+note", note) == ["end note"], note
        assert note.endswith("\n    end note")
    edge_lines = [s for s in statements if " --> " in s and "[*]" not in s]
    assert len(edge_lines) == len(graph.edges)
    # no control character survives (a carriage return or line separator ends a line)
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f\u2028\u2029]", mermaid)


def test_mermaid_title_keeps_its_text_but_not_configuration() -> None:
    mermaid = to_mermaid(hostile_graph())
    head = mermaid.split("---\n")[1]
    assert head.startswith("title: ")
    assert "%" not in head
    # YAML double-quoted escapes: \x25 is '%'
    title = head[len("title: ") :].strip()
    decoded = json.loads(re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), title))
    assert decoded == "hostile %%{init: {'theme': 'dark'}}%% direction TB"


def test_a_stuck_reason_reaches_mermaid_neutralised() -> None:
    snapshot = Snapshot(
        "order",
        "1",
        "paid",
        3,
        entered_at=T0,
        stuck_at=T0,
        stuck_reason="end note %%{init: {}}%% direction RL",
    )
    history = [
        TransitionRecord("order", "1", 1, "reserve", "pending", "stock_reserved", T0),
        TransitionRecord("order", "1", 2, "pay", "stock_reserved", "paid", T0),
        TransitionRecord("order", "1", 3, "@stuck", "paid", "paid", T0, actor="ann"),
    ]
    mermaid = to_mermaid(instance_graph(OrderWorkflow.machine, snapshot, history))
    assert "%%" not in mermaid
    assert [s for s in mermaid_statements(mermaid) if re.search(r"(?i)direction\s+RL", s)] == []


@pytest.mark.graphviz
def test_control_characters_do_not_break_dot(dot_binary: str) -> None:
    svg = render(hostile_graph(), "svg").decode()
    assert ">pick the direction LR<" in svg


@pytest.mark.graphviz
def test_a_graphviz_failure_is_a_statekit_error(dot_binary: str) -> None:
    with pytest.raises(GraphvizError) as caught:
        render("digraph broken { a -> ", "svg")
    assert isinstance(caught.value, StatekitError)
    assert "syntax error" in str(caught.value)


# -- statekit's own steps in the instance and heat views ----------------------------------


def person_steps() -> tuple[Snapshot, list[TransitionRecord]]:
    history = [
        TransitionRecord("order", "7", 1, "reserve", "pending", "stock_reserved", T0),
        TransitionRecord("order", "7", 2, "pay", "stock_reserved", "paid", T0),
        TransitionRecord("order", "7", 3, "@stuck", "paid", "paid", T0, actor="statekit-sweeper"),
        TransitionRecord("order", "7", 4, "@retry", "paid", "paid", T0, actor="clerk-ann"),
        TransitionRecord("order", "7", 5, "@resolve", "paid", "shipped", T0, actor="clerk-bo"),
    ]
    return Snapshot("order", "7", "shipped", 5, entered_at=T0), history


def test_a_persons_retry_and_resolve_are_labelled_with_the_person() -> None:
    snapshot, history = person_steps()
    graph = instance_graph(OrderWorkflow.machine, snapshot, history)
    bylines = {e.event: e.byline for e in graph.edges if e.steps and e.system}
    assert bylines == {
        "@stuck": "by statekit-sweeper",
        "@retry": "by clerk-ann",
        "@resolve": "by clerk-bo",
    }
    for text in (to_dot(graph), to_mermaid(graph)):
        assert "by clerk-ann" in text
        assert "by clerk-bo" in text
    # the two self-loops on paid are one loop, in Mermaid as in DOT
    (loop,) = [line for line in to_mermaid(graph).splitlines() if "paid --> paid" in line]
    assert "3. @stuck / by statekit-sweeper · 4. @retry / by clerk-ann" in loop


def cubic_points(points: list[list[float]]) -> list[tuple[float, float]]:
    """Points along a Graphviz B-spline (cubic Bezier pieces), 20 per piece."""
    found = []
    for i in range(0, len(points) - 3, 3):
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = points[i : i + 4]
        for step in range(21):
            t = step / 20
            a, b, c, d = (1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t * t * (1 - t), t**3
            found.append((a * x0 + b * x1 + c * x2 + d * x3, a * y0 + b * y1 + c * y2 + d * y3))
    return found


def self_loops(dot_binary: str, dot: str, state: str) -> list[tuple[str, Any, Any]]:
    """Each self-loop on `state` as laid out by the real `dot`: its label's text, its
    label's box (x0, y0, x1, y1) and the points of its line."""
    laid = json.loads(
        subprocess.run(
            [dot_binary, "-Tjson"], input=dot, capture_output=True, text=True, check=True
        ).stdout
    )
    (node,) = [n["_gvid"] for n in laid["objects"] if n.get("name") == state]
    loops = []
    for edge in laid.get("edges", []):
        if not edge["tail"] == edge["head"] == node:
            continue
        ops = edge.get("_ldraw_", [])
        height = max((op["size"] for op in ops if op["op"] == "F"), default=10.0)
        spans = []
        for op in (op for op in ops if op["op"] == "T"):
            shift = {"l": 0.0, "c": 0.5, "r": 1.0}[op["align"]]
            x0 = op["pt"][0] - shift * op["width"]
            spans.append((x0, op["pt"][1] - 0.3 * height, x0 + op["width"], op["pt"][1] + height))
        text = " ".join(op["text"] for op in ops if op["op"] == "T")
        box = tuple(f(s[i] for s in spans) for i, f in enumerate((min, min, max, max)))
        line = [p for op in edge["_draw_"] if op["op"] == "b" for p in cubic_points(op["points"])]
        loops.append((text, box, line))
    return loops


@pytest.mark.graphviz
def test_two_self_loops_on_one_state_keep_their_labels_apart(dot_binary: str) -> None:
    snapshot, history = person_steps()
    graph = instance_graph(OrderWorkflow.machine, snapshot, history)
    loops = self_loops(dot_binary, to_dot(graph), "paid")
    texts = " ".join(text for text, _, _ in loops)
    assert "@stuck" in texts
    assert "@retry" in texts
    for text, box, _ in loops:
        x0, y0, x1, y1 = box
        for other, other_box, line in loops:
            if other == text:
                continue
            a0, b0, a1, b1 = other_box
            assert not (x0 < a1 and a0 < x1 and y0 < b1 and b0 < y1), (text, other)
            crossing = [(x, y) for x, y in line if x0 < x < x1 and y0 < y < y1]
            assert not crossing, f"the loop of {other!r} crosses the label {text!r}"


def saga_spec(states: int = 4, *, compensated_edge: bool = False) -> MachineSpec:
    """A chain of steps, each undone by a compensation, each stuck after a while;
    stuck instances end, compensated, in `undone` (reached by no declared event)."""
    names = [f"step{i}" for i in range(states)]
    return MachineSpec(
        name="saga",
        states=(
            StateSpec(name=names[0], initial=True),
            *(
                StateSpec(name=n, timeout=TimeoutSpec(after=timedelta(minutes=5)))
                for n in names[1:]
            ),
            StateSpec(name="done", final=True),
            StateSpec(name="undone", final=True),
        ),
        transitions=(
            *(
                TransitionSpec(
                    event=f"go{i}",
                    sources=(names[i],),
                    target=names[i + 1],
                    compensation=f"undo{i}",
                )
                for i in range(states - 1)
            ),
            TransitionSpec(event="finish", sources=(names[-1],), target="done"),
            TransitionSpec(event="back", sources=tuple(names[1:]), target=names[0]),
        ),
        compensated_state="undone",
    )


def test_the_compensated_state_is_connected_where_the_sweeper_leads() -> None:
    graph = machine_graph(saga_spec())
    into = [e for e in graph.edges if e.target == "undone"]
    assert sorted(e.source for e in into) == ["step1", "step2", "step3"]
    assert {(e.event, e.system) for e in into} == {("@compensated", True)}


@pytest.mark.graphviz
def test_heat_view_draws_what_its_legend_promises(dot_binary: str) -> None:
    counts = {
        ("pending", "reserve", "stock_reserved"): 3,
        ("stock_reserved", "@stuck", "stock_reserved"): 2,
        ("stock_reserved", "@compensated", "cancelled"): 2,
    }
    graph = heat_graph(OrderWorkflow.machine, counts, {"cancelled": 2, "stock_reserved": 1})
    dot = to_dot(graph)
    legend = dot.split("\n")[2]
    assert "red: stuck" in legend
    stuck = [line for line in dot.splitlines() if "@stuck" in line and "->" in line]
    assert len(stuck) == 1
    assert 'color="#c53030"' in stuck[0]
    assert "not in the definition" not in legend  # nothing undeclared is drawn


# -- size: machine_graph's work grows linearly --------------------------------------------


def counted_lines(spec: MachineSpec, budget: int) -> int:
    """Run machine_graph(spec), counting the Python lines statekit executes; stop
    (failing) once `budget` is spent."""
    package = str(Path(__file__).resolve().parents[2] / "statekit")
    executed = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal executed
        if not frame.f_code.co_filename.startswith(package):
            return None
        if event == "line":
            executed += 1
            if executed > budget:
                raise RuntimeError(f"machine_graph spent more than {budget} lines")
        return tracer

    sys.settrace(tracer)
    try:
        machine_graph(spec)
    finally:
        sys.settrace(None)
    return executed


def test_machine_graph_work_grows_linearly_with_states() -> None:
    small, large = saga_spec(1000), saga_spec(2000)
    budget = 200 * 2000  # a linear algorithm's worth of lines per state, generously
    work_small = counted_lines(small, budget)
    work_large = counted_lines(large, budget)
    # doubling the states doubles the work; an O(n^2) algorithm would quadruple it
    assert work_large / work_small < 2.5, (work_small, work_large)


# -- the demo without Graphviz -----------------------------------------------------------


def test_demo_without_graphviz_says_it_wrote_dot_and_how_to_get_svg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from statekit.cli.demo import run_demo

    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    lines: list[str] = []
    run_demo(tmp_path / "demo", echo=lines.append)
    report = "\n".join(lines)
    assert (tmp_path / "demo" / "order.dot").is_file()
    assert not (tmp_path / "demo" / "order.svg").exists()
    assert "Graphviz 'dot' was not found" in report
    assert "install Graphviz" in report
    assert ".dot instead of .svg" in report
