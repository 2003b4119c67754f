"""Diagrams: the graph model, DOT and Mermaid text, Graphviz images, and diagrams/.

Expected DOT and Mermaid of the example models are the files in diagrams/ (the
staleness check keeps them in step with the models); expected output of the
instance and heat views and of a machine with awkward text is in tests/snapshots/.
Set STATEKIT_UPDATE_SNAPSHOTS=1 to rewrite those after an intended change.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import models.order
from models.order import OrderWorkflow
from models.ticket import TicketWorkflow
from models.travel import TripWorkflow
from statekit import InvalidArgumentError, Machine, MachineSpec, Snapshot, TransitionRecord
from statekit.definition import StateSpec, TimeoutSpec, TransitionSpec
from statekit.diagrams import (
    Graph,
    GraphvizNotInstalledError,
    format_duration,
    heat_graph,
    instance_graph,
    machine_graph,
    render,
    stale_diagrams,
    state_counts,
    to_dot,
    to_mermaid,
    transition_counts,
    write_diagrams,
)
from statekit.diagrams.__main__ import find_machines, main

ROOT = Path(__file__).resolve().parents[2]
DIAGRAMS = ROOT / "diagrams"
SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots"
MACHINES = {
    "order": OrderWorkflow.machine,
    "ticket": TicketWorkflow.machine,
    "trip": TripWorkflow.machine,
}
MISSING_DOT = (
    "Graphviz 'dot' was not found; install Graphviz (e.g. apt-get install graphviz) "
    "or use --format dot|mermaid"
)
T0 = datetime(2024, 5, 1, 9, 0)


def check_snapshot(name: str, actual: str) -> None:
    """Compare `actual` with tests/snapshots/<name>, or rewrite it when asked to."""
    path = SNAPSHOTS / name
    if os.environ.get("STATEKIT_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert path.is_file(), f"missing snapshot {path}; run with STATEKIT_UPDATE_SNAPSHOTS=1"
    assert actual == path.read_text(encoding="utf-8"), f"{name} differs from its snapshot"


def record(seq: int, event: str, source: str, target: str, key: str = "T-7") -> TransitionRecord:
    return TransitionRecord("ticket", key, seq, event, source, target, T0 + timedelta(hours=seq))


def ticket_instance() -> Graph:
    history = [
        record(5, "ask_customer", "in_progress", "waiting_on_customer"),
        record(1, "assign", "new", "assigned"),
        record(2, "start", "assigned", "in_progress"),
        record(3, "resolve", "in_progress", "resolved"),
        record(4, "reopen", "resolved", "in_progress"),
    ]  # deliberately out of order: the view sorts by seq
    snapshot = Snapshot(
        "ticket",
        "T-7",
        "waiting_on_customer",
        5,
        entered_at=T0 + timedelta(hours=5),
        deadline_at=T0 + timedelta(days=7, hours=5),
    )
    return instance_graph(TicketWorkflow.machine, snapshot, history)


def order_heat() -> Graph:
    counts = {
        ("pending", "reserve", "stock_reserved"): 120,
        ("stock_reserved", "pay", "paid"): 97,
        ("paid", "ship", "shipped"): 90,
        ("shipped", "deliver", "delivered"): 85,
        ("pending", "cancel", "cancelled"): 9,
        ("stock_reserved", "cancel", "cancelled"): 4,
        ("shipped", "refund", "refunded"): 2,
        ("paid", "cancel", "cancelled"): 1,  # not in the definition
    }
    now = {
        "pending": 5,
        "stock_reserved": 12,
        "paid": 7,
        "shipped": 5,
        "delivered": 85,
        "cancelled": 14,
        "refunded": 2,
    }
    return heat_graph(OrderWorkflow.machine, counts, now, {"stock_reserved": 9, "paid": 1})


def awkward_spec() -> MachineSpec:
    """A machine whose texts hold every character DOT and Mermaid treat specially."""
    return MachineSpec(
        name="awkward",
        description='Quotes "here", <angle> & ampersand; colon: hash #1 {braces} 100%',
        states=(
            StateSpec(name="draft", initial=True, description='say "hi" <b>bold</b> & co'),
            StateSpec(
                name="note",
                description="a: b; c # d",
                timeout=TimeoutSpec(after=timedelta(hours=36), event="expire"),
            ),
            StateSpec(name="state", timeout=TimeoutSpec(after=timedelta(seconds=90))),
            StateSpec(name="done", final=True),
        ),
        transitions=(
            TransitionSpec(
                event="submit",
                sources=("draft",),
                target="note",
                guards=("is_complete",),
                unless=("is_blocked",),
                compensation="withdraw",
            ),
            TransitionSpec(event="expire", sources=("note",), target="done"),
            TransitionSpec(event="park", sources=("note", "draft"), target="state"),
            TransitionSpec(event="finish", sources=("state",), target="done"),
        ),
    )


# -- snapshots ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MACHINES))
@pytest.mark.parametrize(("suffix", "renderer"), [(".dot", to_dot), (".mmd", to_mermaid)])
def test_model_diagram_text_matches_the_committed_file(
    name: str, suffix: str, renderer: object
) -> None:
    assert callable(renderer)
    expected = (DIAGRAMS / f"{name}{suffix}").read_text(encoding="utf-8")
    assert renderer(machine_graph(MACHINES[name])) == expected


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("ticket_instance", ticket_instance),
        ("order_heat", order_heat),
        ("awkward", lambda: machine_graph(awkward_spec())),
    ],
)
def test_view_snapshots(name: str, build: object) -> None:
    assert callable(build)
    graph = build()
    check_snapshot(f"{name}.dot", to_dot(graph))
    check_snapshot(f"{name}.mmd", to_mermaid(graph))


def test_output_is_deterministic() -> None:
    first = [to_dot(machine_graph(m)) + to_mermaid(machine_graph(m)) for m in MACHINES.values()]
    again = [to_dot(machine_graph(m)) + to_mermaid(machine_graph(m)) for m in MACHINES.values()]
    assert first == again
    code = (
        "from models.order import OrderWorkflow\n"
        "from statekit.diagrams import machine_graph, to_dot, to_mermaid\n"
        "g = machine_graph(OrderWorkflow.machine)\n"
        "print(to_dot(g) + to_mermaid(g), end='')\n"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out == first[0]


# -- the machine view --------------------------------------------------------------------


def test_machine_graph_marks_initial_and_final_states() -> None:
    graph = machine_graph(OrderWorkflow.machine)
    assert graph.view == "machine"
    assert graph.initial == ("pending",)
    assert graph.finals == ("delivered", "cancelled", "refunded")
    assert graph.node("shipped").kind == "normal"
    dot = to_dot(graph)
    assert '"[*]" -> "pending"' in dot
    for final in graph.finals:
        assert re.search(rf'^  "{final}" \[.*peripheries="2"', dot, re.MULTILINE)
    assert not re.search(r'^  "shipped" \[.*peripheries', dot, re.MULTILINE)
    mermaid = to_mermaid(graph)
    assert mermaid.splitlines()[3] == "stateDiagram-v2"
    assert "    [*] --> pending" in mermaid
    for final in graph.finals:
        assert f"    {final} --> [*]" in mermaid


def test_machine_graph_accepts_a_spec_or_a_machine() -> None:
    assert machine_graph(OrderWorkflow.spec) == machine_graph(OrderWorkflow.machine)


def test_guards_and_compensations_sit_on_their_edges() -> None:
    graph = machine_graph(OrderWorkflow.machine)
    (pay,) = graph.edges_of("pay")
    assert (pay.source, pay.target) == ("stock_reserved", "paid")
    assert pay.guards == ("payment_authorized",)
    assert pay.compensation == "refund_payment"
    (ship,) = graph.edges_of("ship")
    assert ship.guards == ()
    assert ship.compensation is None
    dot_line = next(
        line for line in to_dot(graph).splitlines() if '"stock_reserved" -> "paid"' in line
    )
    assert "[payment_authorized]" in dot_line
    assert "undo: refund_payment" in dot_line
    assert (
        "    stock_reserved --> paid : pay [payment_authorized] / undo refund_payment"
        in to_mermaid(graph)
    )
    awkward = machine_graph(awkward_spec())
    (submit,) = awkward.edges_of("submit")
    assert submit.guards == ("is_complete", "not is_blocked")


def test_a_multi_source_transition_becomes_one_edge_per_source() -> None:
    graph = machine_graph(TripWorkflow.machine)
    aborts = graph.edges_of("abort")
    assert [e.source for e in aborts] == [
        "requested",
        "flight_booked",
        "hotel_booked",
        "car_booked",
    ]
    assert {e.target for e in aborts} == {"aborted"}


def test_timeouts_show_the_duration_and_what_happens() -> None:
    order = machine_graph(OrderWorkflow.machine)
    assert order.node("pending").timeout == "after 1d: abandon"
    assert order.node("stock_reserved").timeout == "after 30m: stuck; then undo release_stock"
    assert order.node("paid").timeout == (
        "after 2d: stuck; then undo refund_payment, release_stock"
    )
    assert order.node("shipped").timeout is None
    (abandon,) = order.edges_of("abandon")
    assert abandon.timeout == "auto after 1d"
    cancel_from_pending = order.edges_of("cancel")[0]
    assert cancel_from_pending.timeout is None
    abandon_line = next(line for line in to_dot(order).splitlines() if "<b>abandon</b>" in line)
    assert 'style="dashed"' in abandon_line
    assert "auto after 1d" in abandon_line
    stuck_line = next(
        line for line in to_dot(order).splitlines() if line.startswith('  "stock_reserved" [')
    )
    assert "after 30m: stuck" in stuck_line
    assert "then undo release_stock" in stuck_line
    assert "    note right of pending\n        after 1d: abandon\n    end note" in to_mermaid(order)

    trip = machine_graph(TripWorkflow.machine)
    # reverse order of the steps: the latest step is undone first
    assert trip.node("car_booked").timeout == (
        "after 15m: stuck; then undo cancel_car, cancel_hotel, cancel_flight"
    )
    assert trip.node("requested").timeout is None
    assert machine_graph(TicketWorkflow.machine).node("new").timeout == "after 4h: stuck"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(minutes=30), "30m"),
        (timedelta(hours=2), "2h"),
        (timedelta(days=1), "1d"),
        (timedelta(days=7), "7d"),
        (timedelta(hours=36), "1d 12h"),
        (timedelta(seconds=90), "1m 30s"),
        (timedelta(hours=1, minutes=1, seconds=1), "1h 1m"),
        (timedelta(milliseconds=250), "250ms"),
    ],
)
def test_format_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


def test_dot_escapes_quotes_and_markup() -> None:
    dot = to_dot(machine_graph(awkward_spec()))
    assert "&quot;hi&quot; &lt;b&gt;bold&lt;/b&gt; &amp; co" in dot
    assert '"hi"' not in dot
    assert "<b>bold</b>" not in dot


def test_mermaid_escapes_what_its_grammar_chokes_on() -> None:
    mermaid = to_mermaid(machine_graph(awkward_spec()))
    # keywords are aliased, never used as bare ids
    assert '    state "note" as s_note' in mermaid
    assert '    state "state" as s_state' in mermaid
    assert "    s_note --> done : expire / auto after 1d 12h" in mermaid
    body = mermaid.split("stateDiagram-v2\n", 1)[1]
    in_note = False
    for line in body.splitlines():
        stripped = line.strip()
        if stripped.startswith("note "):
            in_note = True
            continue
        if stripped == "end note":
            in_note = False
            continue
        if in_note:
            assert "<" not in re.sub(r"#\w+;", "", stripped), line
            continue
        # a description or label runs to the next ':' or ';' in Mermaid's grammar, which
        # sees entity codes (#58;) only after Mermaid's encodeEntities replaced them
        if " : " in stripped:
            label = re.sub(r"#\w+;", "(entity)", stripped.split(" : ", 1)[1])
            assert not set(label) & set(':;<"%'), line
    assert "a#58; b#59; c #35; d" in mermaid


# -- the instance view -------------------------------------------------------------------


def test_instance_graph_numbers_the_path_and_highlights_the_current_state() -> None:
    graph = ticket_instance()
    assert graph.view == "instance"
    assert graph.title == "ticket T-7: waiting_on_customer"
    steps = {e.event: e.steps for e in graph.edges if e.steps}
    assert steps == {
        "assign": (1,),
        "start": (2,),
        "resolve": (3,),
        "reopen": (4,),
        "ask_customer": (5,),
    }
    assert all(e.emphasis and not e.faded for e in graph.edges if e.steps)
    assert all(e.faded and not e.emphasis for e in graph.edges if not e.steps)
    current = graph.node("waiting_on_customer")
    assert current.current
    assert current.visited
    assert current.annotations == ("here since 2024-05-01 14:00", "deadline 2024-05-08 14:00")
    assert [n.name for n in graph.nodes if n.current] == ["waiting_on_customer"]
    assert graph.node("closed").faded
    assert not graph.node("closed").visited
    assert graph.node("new").visited
    assert not graph.node("new").faded
    dot = to_dot(graph)
    assert "<b>1.</b> <b>assign</b>" in dot
    current_line = next(line for line in dot.splitlines() if line.startswith('  "waiting_on'))
    assert 'fillcolor="#fde68a"' in current_line
    mermaid = to_mermaid(graph)
    assert "    new --> assigned : 1. assign" in mermaid
    assert "    class waiting_on_customer current" in mermaid


def test_instance_graph_repeats_and_stuck_and_undeclared_steps() -> None:
    history = [
        record(1, "assign", "new", "assigned"),
        record(2, "assign", "assigned", "assigned"),
        record(3, "assign", "assigned", "assigned"),
        record(4, "escalate", "assigned", "escalated"),  # from an older definition
    ]
    snapshot = Snapshot(
        "ticket",
        "T-9",
        "escalated",
        4,
        entered_at=T0,
        stuck_at=T0 + timedelta(hours=4),
        stuck_reason="timed out",
    )
    graph = instance_graph(TicketWorkflow.machine, snapshot, history)
    loop = next(e for e in graph.edges if e.key == ("assigned", "assign", "assigned"))
    assert loop.steps == (2, 3)
    extra = graph.edges[-1]
    assert extra.key == ("assigned", "escalate", "escalated")
    assert not extra.declared
    assert extra.steps == (4,)
    node = graph.node("escalated")
    assert not node.declared
    assert node.current
    assert node.is_stuck
    assert "STUCK since 2024-05-01 13:00: timed out" in node.annotations
    assert graph.title.endswith("(stuck)")
    assert "2, 3.</b> <b>assign" in to_dot(graph)
    assert "2, 3. assign" in to_mermaid(graph)


def test_instance_graph_from_a_state_the_definition_lacks() -> None:
    history = [record(1, "migrate", "legacy", "assigned")]
    snapshot = Snapshot("ticket", "T-1", "assigned", 1)
    graph = instance_graph(TicketWorkflow.machine, snapshot, history)
    legacy = graph.node("legacy")
    assert not legacy.declared
    assert legacy.visited
    assert graph.edges[-1].key == ("legacy", "migrate", "assigned")
    with pytest.raises(InvalidArgumentError, match="no node 'nowhere'"):
        graph.node("nowhere")


def test_mermaid_aliases_never_collide() -> None:
    spec = MachineSpec(
        name="clash",
        states=(
            StateSpec(name="s_note", initial=True),
            StateSpec(name="note"),
            StateSpec(name="s_note_2", final=True),
            StateSpec(name="Note", final=True),
        ),
        transitions=(
            TransitionSpec(event="go", sources=("s_note",), target="note"),
            TransitionSpec(event="stop", sources=("note",), target="s_note_2"),
            TransitionSpec(event="halt", sources=("note",), target="Note"),
        ),
    )
    mermaid = to_mermaid(machine_graph(spec))
    assert '    state "note" as s_note_3' in mermaid
    assert '    state "Note" as s_Note' in mermaid
    assert "    s_note --> s_note_3 : go" in mermaid


def test_instance_graph_without_history_shows_the_initial_state() -> None:
    snapshot = Snapshot("order", "42", "pending", 0)
    graph = instance_graph(OrderWorkflow.machine, snapshot, [])
    assert graph.node("pending").current
    assert graph.node("pending").annotations == ("here now",)
    assert not any(e.emphasis for e in graph.edges)


# -- the heat view -----------------------------------------------------------------------


def test_heat_graph_counts_traffic_and_fades_what_was_never_taken() -> None:
    graph = order_heat()
    assert graph.view == "heat"
    assert graph.title == "order: real traffic (130 instances, 10 stuck)"
    by_key = {e.key: e for e in graph.edges}
    assert by_key[("stock_reserved", "pay", "paid")].count == 97
    never = by_key[("paid", "refund", "refunded")]
    assert never.count == 0
    assert never.faded
    assert by_key[("pending", "abandon", "cancelled")].faded
    assert not by_key[("pending", "reserve", "stock_reserved")].faded
    undeclared = by_key[("paid", "cancel", "cancelled")]
    assert not undeclared.declared
    assert undeclared.count == 1
    reserved = graph.node("stock_reserved")
    assert (reserved.count, reserved.stuck) == (12, 9)
    assert reserved.annotations == ("12 now, 9 stuck",)
    assert graph.node("delivered").annotations == ("85 now",)
    dot = to_dot(graph)
    never_line = next(line for line in dot.splitlines() if "<b>refund</b> (0)" in line)
    assert 'color="#b8bec8"' in never_line
    assert 'style="dotted"' in never_line
    pay_line = next(line for line in dot.splitlines() if "<b>pay</b> (97)" in line)
    assert 'penwidth="4.' in pay_line
    mermaid = to_mermaid(graph)
    assert "    stock_reserved : 12 now, 9 stuck" in mermaid
    assert "    paid --> refunded : refund (0)" in mermaid


def test_heat_graph_fades_states_no_instance_reached() -> None:
    graph = heat_graph(TripWorkflow.machine, {("requested", "abort", "aborted"): 3}, {"aborted": 3})
    assert graph.node("confirmed").faded
    assert graph.node("confirmed").annotations == ("never reached",)
    assert not graph.node("requested").faded  # every instance starts there
    assert not graph.node("aborted").faded
    assert graph.node("aborted").annotations == ("3 now",)


def test_heat_graph_adds_states_the_definition_lacks() -> None:
    graph = heat_graph(OrderWorkflow.machine, {}, {"lost": 2})
    assert not graph.node("lost").declared
    assert graph.node("lost").annotations == ("not in the definition", "2 now")


def test_counting_helpers() -> None:
    records = [
        record(1, "assign", "new", "assigned", key="a"),
        record(1, "assign", "new", "assigned", key="b"),
        record(2, "start", "assigned", "in_progress", key="a"),
    ]
    assert transition_counts(records) == {
        ("new", "assign", "assigned"): 2,
        ("assigned", "start", "in_progress"): 1,
    }
    snapshots = [
        Snapshot("ticket", "a", "in_progress", 2),
        Snapshot("ticket", "b", "assigned", 1, stuck_at=T0),
        Snapshot("ticket", "c", "assigned", 1),
    ]
    assert state_counts(snapshots) == ({"in_progress": 1, "assigned": 2}, {"assigned": 1})


# -- rendering with Graphviz ---------------------------------------------------------------


@pytest.mark.graphviz
@pytest.mark.parametrize(
    ("fmt", "magic"), [("svg", b"<?xml"), ("png", b"\x89PNG\r\n\x1a\n"), ("pdf", b"%PDF-")]
)
def test_render_produces_real_images(dot_binary: str, fmt: str, magic: bytes) -> None:
    data = render(machine_graph(OrderWorkflow.machine), fmt)  # type: ignore[arg-type]
    assert data.startswith(magic)
    assert len(data) > 1000


@pytest.mark.graphviz
@pytest.mark.parametrize(
    "build", [ticket_instance, order_heat, lambda: machine_graph(awkward_spec())]
)
def test_rendered_svg_shows_the_labels(dot_binary: str, build: object) -> None:
    assert callable(build)
    graph = build()
    svg = render(graph, "svg").decode()
    assert "<svg" in svg
    for node in graph.nodes:
        assert f">{node.name}<" in svg
    for edge in graph.edges:
        assert f">{edge.event}<" in svg


@pytest.mark.graphviz
def test_render_accepts_dot_text(dot_binary: str) -> None:
    svg = render(to_dot(machine_graph(OrderWorkflow.machine)), "svg").decode()
    assert "payment_authorized" in svg
    assert "undo: refund_payment" in svg
    assert "after 30m: stuck" in svg


def test_render_rejects_unknown_formats() -> None:
    with pytest.raises(ValueError, match="unsupported image format 'gif'"):
        render(machine_graph(OrderWorkflow.machine), "gif")  # type: ignore[arg-type]


def test_render_without_dot_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GraphvizNotInstalledError) as caught:
        render(machine_graph(OrderWorkflow.machine), "png")
    assert str(caught.value) == MISSING_DOT
    assert "\n" not in str(caught.value)


def test_import_does_not_load_graphviz() -> None:
    code = (
        "import sys\n"
        "import statekit.diagrams\n"
        "from models.order import OrderWorkflow\n"
        "g = statekit.diagrams.machine_graph(OrderWorkflow.machine)\n"
        "statekit.diagrams.to_dot(g); statekit.diagrams.to_mermaid(g)\n"
        "assert 'graphviz' not in sys.modules, 'graphviz imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# -- diagrams/ ---------------------------------------------------------------------------


def test_diagrams_directory_is_up_to_date() -> None:
    stale = stale_diagrams(MACHINES.values(), DIAGRAMS)
    assert stale == [], (
        "diagrams/ is stale; run 'make diagrams' (python -m statekit.diagrams): "
        + ", ".join(str(p.relative_to(ROOT)) for p in stale)
    )


def test_models_package_lists_every_workflow() -> None:
    assert [m.name for m in find_machines("models")] == ["order", "ticket", "trip"]


def test_module_command_checks_the_repository() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "statekit.diagrams", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "3 machines, diagrams up to date\n"


def test_check_command_on_the_repository(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    # as from a console script, whose sys.path lacks the current directory
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(ROOT))])
    assert main(["--check"]) == 0
    assert sys.path[0] == str(ROOT)
    assert "3 machines, diagrams up to date" in capsys.readouterr().out


def changed_order() -> Machine:
    """The order machine with the payment window widened from 30 to 45 minutes."""
    spec = OrderWorkflow.spec
    states = tuple(
        s.model_copy(update={"timeout": TimeoutSpec(after=timedelta(minutes=45))})
        if s.name == "stock_reserved"
        else s
        for s in spec.states
    )
    spec = spec.model_copy(update={"states": states})
    return Machine(spec, vars(models.order))


@pytest.mark.graphviz
def test_staleness_is_detected_and_regeneration_fixes_it(
    dot_binary: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    machines = list(MACHINES.values())
    written = write_diagrams(machines, tmp_path)
    assert sorted(p.name for p in written) == sorted(
        f"{n}.{s}" for n in MACHINES for s in ("dot", "mmd", "svg")
    )
    assert stale_diagrams(machines, tmp_path) == []
    assert write_diagrams(machines, tmp_path) == []  # nothing to do the second time

    svg = (tmp_path / "order.svg").read_text()
    assert "statekit-dot-sha256" in svg
    assert "Generated by graphviz" not in svg

    # the model changes but diagrams/ is not regenerated
    changed = [changed_order(), MACHINES["ticket"], MACHINES["trip"]]
    assert stale_diagrams(changed, tmp_path) == [
        tmp_path / "order.dot",
        tmp_path / "order.mmd",
        tmp_path / "order.svg",
    ]
    # regenerating the sources alone leaves the SVG stale: it was drawn from old DOT
    (tmp_path / "order.dot").write_text(to_dot(machine_graph(changed[0])))
    (tmp_path / "order.mmd").write_text(to_mermaid(machine_graph(changed[0])))
    assert stale_diagrams(changed, tmp_path) == [tmp_path / "order.svg"]
    assert write_diagrams(changed, tmp_path) == [tmp_path / "order.svg"]
    assert stale_diagrams(changed, tmp_path) == []

    # an SVG from another Graphviz version (other bytes, same stamp) is not stale
    ticket_svg = tmp_path / "ticket.svg"
    ticket_svg.write_text(ticket_svg.read_text().replace("<svg", "<!-- other -->\n<svg", 1))
    assert stale_diagrams(changed, tmp_path) == []
    # a hand-edited or foreign SVG without the stamp is
    (tmp_path / "trip.svg").write_text("<svg/>")
    assert stale_diagrams(changed, tmp_path) == [tmp_path / "trip.svg"]

    monkeypatch.chdir(ROOT)
    assert main(["--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "stale diagrams" in err
    assert str(tmp_path / "trip.svg") in err
    assert main(["--out", str(tmp_path)]) == 0
    assert main(["--check", "--out", str(tmp_path)]) == 0


def test_regeneration_without_dot_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert main(["--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err == f"error: {MISSING_DOT}\n"


def test_check_needs_no_graphviz(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert main(["--check"]) == 0
    assert main(["--check", "--out", str(tmp_path / "empty")]) == 1
    assert "order.svg" in capsys.readouterr().err


def test_main_reports_a_package_without_workflows(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["--models", "statekit.store", "--check"]) == 1
    assert "no workflows found" in capsys.readouterr().err


def test_statekits_own_transitions_are_drawn_as_such_not_as_undeclared() -> None:
    history = [
        record(1, "assign", "new", "assigned"),
        record(2, "start", "assigned", "in_progress"),
        record(3, "@stuck", "in_progress", "in_progress"),
        record(4, "@resolve", "in_progress", "closed"),
    ]
    snapshot = Snapshot("ticket", "T-7", "closed", 4, entered_at=T0 + timedelta(hours=4))
    graph = instance_graph(TicketWorkflow.machine, snapshot, history)
    stuck, resolve = graph.edges_of("@stuck")[0], graph.edges_of("@resolve")[0]
    assert (stuck.system, stuck.declared, stuck.steps) == (True, True, (3,))
    assert (resolve.system, resolve.declared, resolve.steps) == (True, True, (4,))
    assert not any(edge.system for edge in machine_graph(TicketWorkflow.machine).edges)
    dot, mermaid = to_dot(graph), to_mermaid(graph)
    assert "by statekit" in dot
    assert "not in the definition" not in dot
    assert "by statekit" in mermaid
    assert "not in the definition" not in mermaid


def test_mermaid_keeps_the_state_name_above_its_description() -> None:
    # Mermaid draws a state's first description line as its title, in place of the
    # name: a state with a description or notes is declared by name first.
    snapshot = Snapshot("order", "42", "cancelled", 2)
    mermaid = to_mermaid(instance_graph(OrderWorkflow.machine, snapshot, []))
    lines = mermaid.splitlines()
    for name in ("pending", "stock_reserved", "cancelled"):
        declared = lines.index(f'    state "{name}" as {name}')
        assert lines[declared + 1].startswith(f"    {name} : ")
    assert '    state "shipped" as shipped' not in lines  # no description, no notes
