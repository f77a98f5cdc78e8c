"""Where each task of a workflow's DAG is drawn: layers from left to right, one per topological
generation, so every edge points rightwards; within a layer, nodes are ordered by where their
prerequisites sit, which keeps most edges from crossing.

Pure. Called by :mod:`reconciler.dashboard.render` for the SVG, and tested on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..manifests.dag import CycleError, Graph

NODE_WIDTH = 168
NODE_HEIGHT = 44
COLUMN_GAP = 56
ROW_GAP = 18
MARGIN = 12


@dataclass(frozen=True, kw_only=True)
class Box:
    x: int
    y: int
    width: int = NODE_WIDTH
    height: int = NODE_HEIGHT

    @property
    def left_middle(self) -> tuple[int, int]:
        return self.x, self.y + self.height // 2

    @property
    def right_middle(self) -> tuple[int, int]:
        return self.x + self.width, self.y + self.height // 2


@dataclass(frozen=True, kw_only=True)
class Layout:
    boxes: dict[str, Box]
    width: int
    height: int


def layers(names: Sequence[str], edges: Sequence[tuple[str, str]]) -> list[list[str]]:
    """The nodes in topological generations, each ordered by the mean row of its prerequisites
    (ties in the given order). A graph with a cycle, which a valid workflow never has, is drawn
    one node per layer in the given order rather than not at all."""
    known = set(names)
    graph = Graph(names, (e for e in edges if e[0] in known and e[1] in known))
    given = {name: i for i, name in enumerate(names)}
    try:
        generations = [sorted(g, key=given.__getitem__) for g in graph.generations()]
    except CycleError:
        return [[name] for name in names]
    row: dict[str, float] = {}
    ordered = []
    for generation in generations:
        def key(name: str) -> tuple[float, int]:
            before = [row[p] for p in graph.predecessors(name)]
            return (sum(before) / len(before) if before else given[name], given[name])

        generation.sort(key=key)
        row.update((name, float(i)) for i, name in enumerate(generation))
        ordered.append(generation)
    return ordered


def layout(names: Sequence[str], edges: Sequence[tuple[str, str]]) -> Layout:
    """Each node's box, and the drawing's size."""
    columns = layers(names, edges)
    boxes = {name: Box(x=MARGIN + c * (NODE_WIDTH + COLUMN_GAP), y=MARGIN + r * (NODE_HEIGHT + ROW_GAP))
             for c, column in enumerate(columns) for r, name in enumerate(column)}
    deepest = max((len(column) for column in columns), default=0)
    return Layout(boxes=boxes,
                  width=2 * MARGIN + len(columns) * NODE_WIDTH + max(0, len(columns) - 1) * COLUMN_GAP,
                  height=2 * MARGIN + deepest * NODE_HEIGHT + max(0, deepest - 1) * ROW_GAP)
