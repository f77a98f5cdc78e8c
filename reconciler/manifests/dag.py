"""The task graph of a workflow: its checks and the stable order of its tasks.

Called by ``manifests.resolve`` (which builds and checks the graph of every workflow it resolves)
and by ``core.fingerprint`` (which walks it prerequisites first). Pure functions over networkx
graphs; nothing here touches Slurm or the filesystem.
"""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx

from ..api import Task


class DagError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def build_graph(tasks: Iterable[Task]) -> nx.DiGraph[str]:
    """A graph with an edge from each prerequisite to the task that depends on it.

    Raises :class:`DagError` listing duplicate names, unknown or self dependencies, and the
    first cycle found, by name.
    """
    tasks = list(tasks)
    graph: nx.DiGraph[str] = nx.DiGraph()
    problems: list[str] = []
    seen: set[str] = set()
    for task in tasks:
        if task.name in seen:
            problems.append(f"duplicate task name {task.name!r}")
        seen.add(task.name)
        graph.add_node(task.name, task=task)
    for task in tasks:
        for upstream in task.depends_on:
            if upstream == task.name:
                problems.append(f"task {task.name!r} depends on itself")
            elif upstream not in seen:
                problems.append(f"task {task.name!r} depends on unknown task {upstream!r}")
            else:
                graph.add_edge(upstream, task.name)
    if not problems:
        try:
            cycle = nx.find_cycle(graph)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            names = [edge[0] for edge in cycle] + [cycle[0][0]]
            problems.append(f"dependency cycle: {' -> '.join(names)}")
    if problems:
        raise DagError(problems)
    return graph


def task_of(graph: nx.DiGraph[str], name: str) -> Task:
    return graph.nodes[name]["task"]


def topological_order(graph: nx.DiGraph[str]) -> list[str]:
    """Task names, prerequisites first; ties broken by name so the order is stable."""
    return list(nx.lexicographical_topological_sort(graph))

