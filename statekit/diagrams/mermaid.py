"""Render a `Graph` as a Mermaid ``stateDiagram-v2``, in pure Python.

Every text from the graph (names, descriptions, notes, labels, the accessible
description) enters the output through `text`, the title through `_title`. Mermaid's
state-diagram grammar ends a label at ``:``, ``;`` or a newline and treats ``#``,
``<`` and ``%%{`` specially, so those characters are written as Mermaid entity codes
(``#58;`` for ``:``); control characters become spaces; and the words Mermaid's lexer
finds anywhere in a line (``direction LR`` makes the line a direction statement,
``end note`` closes a note) get their first letter as an entity code. A state whose
name Mermaid would read as a keyword gets an alias. Output is deterministic and ends
in a newline.
"""

from __future__ import annotations

import json
import re

from statekit.diagrams.graph import Edge, Graph, Node, printable

__all__ = ["to_mermaid"]

_ENTITIES = {
    "#": "#35;",
    ":": "#58;",
    ";": "#59;",
    "<": "#lt;",
    ">": "#gt;",
    '"': "#quot;",
    "&": "#amp;",
    "{": "#123;",
    "}": "#125;",
    "%": "#37;",
}
_ENTITY_RE = re.compile("|".join(re.escape(c) for c in _ENTITIES))
# words Mermaid's lexer acts on wherever they appear in a line
# (a value may end in "direction": the next line may start with "TB")
_LEXED_WORDS = re.compile(r"(?i)direction(?=\s|$)|end\s+note")
_TITLE_WORDS = re.compile(r"(?i)direction|end\s+note")
_KEYWORDS = frozenset(
    {"state", "note", "class", "classdef", "direction", "default", "scale", "hide", "end"}
)
_PLAIN_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_CLASSES = {
    "current": "fill:#fde68a,stroke:#b45309,stroke-width:3px",
    "visited": "fill:#dbeafe,stroke:#1d4ed8",
    "faded": "fill:#ffffff,stroke:#b8bec8,color:#9aa3ae",
    "stuck": "fill:#fed7d7,stroke:#c53030,stroke-width:3px",
    "undeclared": "fill:#ffffff,stroke:#c53030,stroke-dasharray:4 3",
}


def text(value: str, *, note: bool = False) -> str:
    """Make `value` safe as a Mermaid state description, transition label or
    accessible description (or, with `note`, a line of a block note, where ``:``
    and ``;`` may stay): one line that Mermaid reads as plain text."""
    kept = ":;" if note else ""
    escaped = _ENTITY_RE.sub(
        lambda m: m.group(0) if m.group(0) in kept else _ENTITIES[m.group(0)], printable(value)
    )
    return _LEXED_WORDS.sub(lambda m: f"#{ord(m.group(0)[0])};{m.group(0)[1:]}", escaped)


def _title(value: str) -> str:
    """`value` as a YAML double-quoted string for the front matter, with ``%`` and
    the first letter of each lexed word written as YAML escapes (``\\x25``)."""
    quoted = json.dumps(printable(value)).replace("%", "\\x25")
    return _TITLE_WORDS.sub(lambda m: f"\\x{ord(m.group(0)[0]):02x}{m.group(0)[1:]}", quoted)


def _ids(graph: Graph) -> dict[str, str]:
    """Map each state name to a Mermaid id (aliasing keywords and odd names)."""
    ids: dict[str, str] = {}
    used: set[str] = set()
    for node in graph.nodes:
        if _PLAIN_ID.match(node.name) and node.name.lower() not in _KEYWORDS:
            ids[node.name] = node.name
            used.add(node.name)
    for node in graph.nodes:
        if node.name in ids:
            continue
        base = "s_" + re.sub(r"\W", "_", node.name)
        candidate, n = base, 1
        while candidate in used:
            n += 1
            candidate = f"{base}_{n}"
        ids[node.name] = candidate
        used.add(candidate)
    return ids


def _edge_label(edge: Edge) -> str:
    head = edge.event
    if edge.steps:
        head = f"{', '.join(str(s) for s in edge.steps)}. {head}"
    if edge.count is not None:
        head += f" ({edge.count})"
    parts = [head]
    if edge.guards:
        parts[0] += " [" + ", ".join(edge.guards) + "]"
    if edge.timeout:
        parts.append(edge.timeout)
    if edge.compensation:
        parts.append(f"undo {edge.compensation}")
    if edge.byline:
        parts.append(edge.byline)
    if not edge.declared:
        parts.append("not in the definition")
    return " / ".join(parts)


def _node_class(node: Node) -> str | None:
    if not node.declared:
        return "undeclared"
    if node.is_stuck:
        return "stuck"
    if node.current:
        return "current"
    if node.visited:
        return "visited"
    if node.faded:
        return "faded"
    return None


def to_mermaid(graph: Graph) -> str:
    """Render `graph` as Mermaid ``stateDiagram-v2`` text.

    ``[*] --> initial`` and ``final --> [*]`` mark the initial and final states;
    a state is titled with its name, with its description and counts below it;
    timeouts are notes, and each edge's label holds its event, guards, timeout and
    compensation. Instance and heat views mark states with classes (current,
    visited, faded, stuck).
    """
    ids = _ids(graph)
    out = [
        "---",
        f"title: {_title(graph.title)}",
        "---",
        "stateDiagram-v2",
        "    direction LR",
    ]
    if graph.description:
        out.append(f"    accDescr: {text(graph.description)}")
    for node in graph.nodes:
        sid = ids[node.name]
        lines = [line for line in (node.description, *node.annotations) if line]
        # Mermaid titles a state with its first description line, so a state that has
        # any is declared by name first: the name is the title, the lines its body.
        if sid != node.name or lines:
            out.append(f'    state "{text(node.name)}" as {sid}')
        out += [f"    {sid} : {text(line)}" for line in lines]
    for name in graph.initial:
        out.append(f"    [*] --> {ids[name]}")
    loops: dict[str, list[str]] = {}
    for edge in graph.edges:
        if edge.source == edge.target:
            loops.setdefault(edge.source, []).append(_edge_label(edge))
    looped: set[str] = set()
    for edge in graph.edges:
        label = _edge_label(edge)
        if edge.source == edge.target:  # one loop per state, its labels joined
            if edge.source in looped:
                continue
            looped.add(edge.source)
            label = " · ".join(loops[edge.source])
        out.append(f"    {ids[edge.source]} --> {ids[edge.target]} : {text(label)}")
    for name in graph.finals:
        out.append(f"    {ids[name]} --> [*]")
    for node in graph.nodes:
        if node.timeout:
            out.append(f"    note right of {ids[node.name]}")
            out += [f"        {text(line, note=True)}" for line in node.timeout.split("; ")]
            out.append("    end note")
    classes: dict[str, list[str]] = {}
    for node in graph.nodes:
        css = _node_class(node)
        if css is not None:
            classes.setdefault(css, []).append(ids[node.name])
    for css in sorted(classes):
        out.append(f"    classDef {css} {_CLASSES[css]}")
        out.append(f"    class {','.join(classes[css])} {css}")
    return "\n".join(out) + "\n"
