"""Diagrams of machines: the design, one instance's path, and the real traffic.

A neutral graph model (`machine_graph`, `instance_graph`, `heat_graph`) is rendered
to DOT (`to_dot`) and Mermaid (`to_mermaid`) in pure Python, and to SVG, PNG or PDF
with Graphviz (`render`, which imports the `graphviz` package only when called).

    from statekit.diagrams import machine_graph, render, to_mermaid
    svg = render(machine_graph(OrderWorkflow.machine), "svg")
"""

from __future__ import annotations

from statekit.diagrams.dot import to_dot
from statekit.diagrams.graph import (
    Edge,
    Graph,
    Node,
    format_duration,
    heat_graph,
    instance_graph,
    machine_graph,
    state_counts,
    transition_counts,
)
from statekit.diagrams.mermaid import to_mermaid
from statekit.diagrams.render import (
    GraphvizError,
    GraphvizNotInstalledError,
    render,
    stale_diagrams,
    write_diagrams,
)

__all__ = [
    "Edge",
    "Graph",
    "GraphvizError",
    "GraphvizNotInstalledError",
    "Node",
    "format_duration",
    "heat_graph",
    "instance_graph",
    "machine_graph",
    "render",
    "stale_diagrams",
    "state_counts",
    "to_dot",
    "to_mermaid",
    "transition_counts",
    "write_diagrams",
]
