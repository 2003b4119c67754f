"""Render a `Graph` as Graphviz DOT text, in pure Python.

The output is deterministic (nodes and edges in the graph's order, no generated
ids, fixed number formatting), so it can be compared against a stored copy. Labels
are Graphviz HTML-like labels, escaped here; ids are always quoted.
"""

from __future__ import annotations

import math
import textwrap

from statekit.diagrams.graph import Edge, Graph, Node, printable

__all__ = ["to_dot"]

FONT = "Helvetica"
_WRAP = 34

# palette: one place to change the look
_INK = "#2d3748"
_MUTED = "#4a5568"
_FILL = "#f7fafc"
_FAINT = "#b8bec8"
_FAINT_TEXT = "#9aa3ae"
_TIMEOUT = "#b45309"
_UNDO = "#6b46c1"
_PATH = "#1d4ed8"
_PATH_FILL = "#dbeafe"
_CURRENT_FILL = "#fde68a"
_STUCK = "#c53030"
_HEAT = "#c05621"
_UNDECLARED = "#c53030"

_START = "[*]"  # cannot clash with a state: not a valid state name


def quote(text: str) -> str:
    """Quote `text` as a DOT id (control characters become spaces)."""
    return '"' + printable(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def html(text: str) -> str:
    """Escape `text` for a Graphviz HTML-like label: markup characters become
    entities and control characters, which XML forbids, spaces."""
    return (
        printable(text)
        .replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
    )


def _lines(text: str, width: int = _WRAP) -> list[str]:
    return textwrap.wrap(text, width=width, break_long_words=False, break_on_hyphens=False) or [""]


def _font(
    text: str, *, color: str, size: int | None = None, style: str = "", width: int = _WRAP
) -> list[str]:
    """Format `text` as HTML rows: one per wrapped line, each in its own font tag."""
    size_attr = f' point-size="{size}"' if size else ""
    rows = []
    for line in _lines(text, width):
        body = html(line)
        if style:
            body = f"<{style}>{body}</{style}>"
        rows.append(f'<font color="{color}"{size_attr}>{body}</font>')
    return rows


def _table(rows: list[str]) -> str:
    """Stack rows in a borderless table: unlike <br/>, it keeps lines from touching."""
    cells = "".join(f"<tr><td>{row}</td></tr>" for row in rows)
    return f'<<table border="0" cellborder="0" cellspacing="0" cellpadding="1">{cells}</table>>'


def _attrs(pairs: list[tuple[str, str]]) -> str:
    """Format attributes; values starting with '<' are HTML labels, left unquoted."""
    parts = []
    for name, value in pairs:
        parts.append(f"{name}={value if value.startswith('<') else quote(value)}")
    return "[" + ", ".join(parts) + "]"


def _node_label(node: Node, faded: bool) -> str:
    ink = _FAINT_TEXT if faded else _INK
    rows = [f'<font color="{ink}"><b>{html(node.name)}</b></font>']
    if node.description:
        rows += _font(node.description, color=_FAINT_TEXT if faded else _MUTED, size=9)
    if node.timeout:
        for part in node.timeout.split("; "):
            rows += _font(part, color=_FAINT_TEXT if faded else _TIMEOUT, size=9)
    for note in node.annotations:
        color = _STUCK if note.startswith("STUCK") or "stuck" in note else ink
        if not node.declared:
            color = _UNDECLARED
        rows += _font(note, color=_FAINT_TEXT if faded else color, size=9)
    return _table(rows)


def _node(node: Node) -> str:
    faded = node.faded
    pairs: list[tuple[str, str]] = [("label", _node_label(node, faded))]
    if node.kind == "final":
        pairs.append(("peripheries", "2"))
    if node.current:
        pairs += [("fillcolor", _CURRENT_FILL), ("color", _TIMEOUT), ("penwidth", "2.5")]
    elif node.visited:
        pairs += [("fillcolor", _PATH_FILL), ("color", _PATH), ("penwidth", "1.5")]
    elif faded:
        pairs += [("fillcolor", "#ffffff"), ("color", _FAINT)]
    if node.is_stuck:
        pairs += [("color", _STUCK), ("penwidth", "2.5")]
    if not node.declared:
        pairs += [("color", _UNDECLARED), ("style", "rounded,filled,dashed")]
    return f"  {quote(node.name)} {_attrs(pairs)};"


def _edge_rows(edge: Edge, faded: bool) -> list[str]:
    ink = _FAINT_TEXT if faded else (_PATH if edge.emphasis else _INK)
    head = f"<b>{html(edge.event)}</b>"
    if edge.steps:
        head = "<b>" + html(", ".join(str(s) for s in edge.steps)) + ".</b> " + head
    if edge.count is not None:
        head += f" ({edge.count})"
    rows = [f'<font color="{ink}">{head}</font>']
    if edge.timeout:
        rows += _font(edge.timeout, color=ink if faded else _TIMEOUT, size=9)
    if edge.guards:
        rows += _font("[" + ", ".join(edge.guards) + "]", color=ink, size=9)
    if edge.compensation:
        undo = _FAINT_TEXT if faded else _UNDO
        rows += _font(f"undo: {edge.compensation}", color=undo, size=9, style="i")
    if edge.byline:
        rows += _font(edge.byline, color=_FAINT_TEXT, size=9, style="i")
    if not edge.declared:
        rows += _font("not in the definition", color=_UNDECLARED, size=9)
    return rows


def _is_stuck_mark(edge: Edge) -> bool:
    return edge.system and edge.event == "@stuck" and not edge.faded


def _edge(edge: Edge, heaviest: int, labelled: tuple[Edge, ...] = ()) -> str:
    """One edge, styled as `edge` and labelled with `labelled` (default: itself)."""
    faded = edge.faded
    rows = [row for e in labelled or (edge,) for row in _edge_rows(e, e.faded)]
    pairs: list[tuple[str, str]] = [("label", _table(rows))]
    styles = []
    if edge.timeout or edge.system:
        styles.append("dashed")
    if edge.emphasis:
        pairs += [("color", _PATH), ("penwidth", "2.2")]
    elif edge.count:
        width = 1.0 + 4.0 * math.log1p(edge.count) / math.log1p(max(heaviest, 1))
        pairs += [
            ("color", _HEAT),
            ("penwidth", f"{width:.1f}"),
            ("arrowsize", f"{max(0.8 / math.sqrt(width), 0.4):.2f}"),
        ]
    elif faded:
        pairs += [("color", _FAINT)]
        if "dashed" not in styles:
            styles.append("dotted" if edge.count == 0 else "solid")
    if _is_stuck_mark(edge):
        pairs += [("color", _STUCK)]
    if not edge.declared:
        pairs += [("color", _UNDECLARED)]
        styles = ["dashed"]
    styles = [s for s in styles if s != "solid"]
    if styles:
        pairs.append(("style", ",".join(styles)))
    return f"  {quote(edge.source)} -> {quote(edge.target)} {_attrs(pairs)};"


_LEGENDS = {
    "machine": "double border: final state · dashed: fired by the state's timeout"
    " or by statekit · [guard] · undo: compensation",
    "instance": "1, 2, …: the instance's steps in order · blue: its path"
    " · amber: where it is now · faint: not taken",
    "heat": "(n): times taken · width: traffic · faint: never taken",
}


def _legend(graph: Graph) -> str:
    """The view's legend, promising red only for what is drawn red."""
    parts = [_LEGENDS[graph.view]]
    if any(n.is_stuck for n in graph.nodes) or any(_is_stuck_mark(e) for e in graph.edges):
        parts.append("red: stuck")
    if not all(n.declared for n in graph.nodes) or not all(e.declared for e in graph.edges):
        parts.append("red dashed: not in the definition")
    return " · ".join(parts)


def _caption(graph: Graph) -> str:
    rows = [f'<font point-size="14"><b>{html(graph.title)}</b></font>']
    if graph.description:
        rows += _font(graph.description, color=_MUTED, size=11, width=100)
    rows += _font(_legend(graph), color=_FAINT_TEXT, size=9, width=200)
    return _table(rows)


def _edges(graph: Graph, heaviest: int) -> list[str]:
    """Every edge; the self-loops of one state become one loop with their labels
    stacked (separate loops nest, each crossing the other's label), styled as the
    first of them on the instance's path, else the first."""
    loops: dict[str, list[Edge]] = {}
    for edge in graph.edges:
        if edge.source == edge.target:
            loops.setdefault(edge.source, []).append(edge)
    out = []
    for edge in graph.edges:
        if edge.source != edge.target:
            out.append(_edge(edge, heaviest))
        elif loops[edge.source][0] is edge:
            group = tuple(loops[edge.source])
            lead = next((e for e in group if e.emphasis), edge)
            out.append(_edge(lead, heaviest, group))
    return out


def to_dot(graph: Graph) -> str:
    """Render `graph` as DOT source text (ending in a newline).

    Initial states get an arrow from a black dot, final states a double border,
    timeouts an amber line on the state (and a dashed edge when they fire an
    event), guards a bracketed line on their edge and compensations an italic
    ``undo:`` line. Instance and heat views add their highlighting and counts.
    """
    heaviest = max((e.count or 0 for e in graph.edges), default=0)
    out = [
        f"// {graph.view} view of machine {graph.name!r}; generated by statekit.diagrams",
        f"digraph {quote(graph.name)} {{",
        "  graph "
        + _attrs(
            [
                ("rankdir", "LR"),
                ("label", _caption(graph)),
                ("labelloc", "t"),
                ("fontname", FONT),
                ("fontsize", "14"),
                ("nodesep", "0.45"),
                ("ranksep", "0.55"),
                ("pad", "0.3"),
            ]
        )
        + ";",
        "  node "
        + _attrs(
            [
                ("shape", "box"),
                ("style", "rounded,filled"),
                ("fillcolor", _FILL),
                ("color", _MUTED),
                ("fontname", FONT),
                ("fontsize", "12"),
                ("margin", "0.15,0.07"),
            ]
        )
        + ";",
        "  edge "
        + _attrs(
            [
                ("color", _MUTED),
                ("fontname", FONT),
                ("fontsize", "10"),
                ("arrowsize", "0.8"),
            ]
        )
        + ";",
    ]
    for name in graph.initial:
        out.append(
            f"  {quote(_START)} "
            + _attrs(
                [
                    ("shape", "point"),
                    ("style", "filled"),
                    ("width", "0.18"),
                    ("color", _INK),
                    ("fillcolor", _INK),
                    ("label", ""),
                ]
            )
            + ";"
        )
        out.append(f"  {quote(_START)} -> {quote(name)} " + _attrs([("color", _INK)]) + ";")
    out.extend(_node(node) for node in graph.nodes)
    out.extend(_edges(graph, heaviest))
    out.append("}")
    return "\n".join(out) + "\n"
