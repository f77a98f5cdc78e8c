"""The task graph of a workflow: its checks and the stable order of its tasks.

Called by ``manifests.resolve`` (which builds and checks the graph of every workflow it resolves),
by ``core.fingerprint`` (which walks it prerequisites first), by the planner, the diff and the CLI
(a task's prerequisites, what comes before or after it) and by ``dashboard.layout`` (which draws
a graph by generations). Pure; nothing here touches Slurm or the filesystem.

A graph never changes once built: each node's neighbours are in the order their edges were given,
and the order of the tasks is the lexicographical topological one (prerequisites first, ties
broken by name), worked out once per graph. Building and ordering are linear in the edges, bar
the heap that breaks ties, so a graph of ten thousand tasks costs a few milliseconds.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType

from ..api import Task


class DagError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class CycleError(ValueError):
    """A graph with a cycle has no topological order; ``cycle`` names one, each node once, in
    the direction of its edges."""

    def __init__(self, cycle: list[str]) -> None:
        super().__init__(f"dependency cycle: {' -> '.join([*cycle, cycle[0]])}")
        self.cycle = cycle


class Graph:
    """A directed graph over names. Nodes keep the order they were given in (a name given twice
    is one node), and an edge given twice is one edge. Every edge's ends must be nodes.

    Instances compare and hash by identity, so they key weak caches of what is derived from them.
    """

    def __init__(self, nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> None:
        successors: dict[str, list[str]] = {name: [] for name in nodes}
        predecessors: dict[str, list[str]] = {name: [] for name in successors}
        seen: set[tuple[str, str]] = set()
        for edge in edges:
            if edge in seen:
                continue
            seen.add(edge)
            before, after = edge
            if after not in predecessors:
                raise KeyError(after)
            successors[before].append(after)
            predecessors[after].append(before)
        self._nodes = tuple(successors)
        self._successors = {name: tuple(after) for name, after in successors.items()}
        self._predecessors = {name: tuple(before) for name, before in predecessors.items()}
        self._order: tuple[str, ...] | None = None

    @property
    def nodes(self) -> tuple[str, ...]:
        return self._nodes

    def __iter__(self) -> Iterator[str]:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, name: object) -> bool:
        return name in self._successors

    def predecessors(self, name: str) -> tuple[str, ...]:
        return self._predecessors[name]

    def successors(self, name: str) -> tuple[str, ...]:
        return self._successors[name]

    def descendants(self, name: str) -> frozenset[str]:
        """Every node reachable from ``name``, without it."""
        return self._reachable(name, self._successors)

    def ancestors(self, name: str) -> frozenset[str]:
        """Every node ``name`` is reachable from, without it."""
        return self._reachable(name, self._predecessors)

    @staticmethod
    def _reachable(name: str, neighbours: Mapping[str, tuple[str, ...]]) -> frozenset[str]:
        found: set[str] = set()
        stack = list(neighbours[name])
        while stack:
            current = stack.pop()
            if current not in found:
                found.add(current)
                stack.extend(neighbours[current])
        found.discard(name)  # reached again only through a cycle
        return frozenset(found)

    def topological_order(self) -> tuple[str, ...]:
        """Every node, each after all its predecessors; among the nodes free to come next, the
        smallest name first (Kahn's algorithm with a heap), so the order depends on the names and
        edges only, never on the order they were given in. Raises :class:`CycleError`."""
        if self._order is None:
            waiting = {name: len(before) for name, before in self._predecessors.items() if before}
            ready = [name for name in self._nodes if name not in waiting]
            heapq.heapify(ready)
            order: list[str] = []
            while ready:
                name = heapq.heappop(ready)
                order.append(name)
                for after in self._successors[name]:
                    waiting[after] -= 1
                    if not waiting[after]:
                        del waiting[after]
                        heapq.heappush(ready, after)
            if waiting:
                raise CycleError(self._cycle())
            self._order = tuple(order)
        return self._order

    def generations(self) -> list[list[str]]:
        """The nodes in layers: first those without predecessors, then those whose predecessors
        are all in earlier layers, and so on. Within a layer, the nodes free first come first.
        Raises :class:`CycleError`."""
        waiting = {name: len(before) for name, before in self._predecessors.items() if before}
        layer = [name for name in self._nodes if name not in waiting]
        layers: list[list[str]] = []
        while layer:
            layers.append(layer)
            following: list[str] = []
            for name in layer:
                for after in self._successors[name]:
                    waiting[after] -= 1
                    if not waiting[after]:
                        del waiting[after]
                        following.append(after)
            layer = following
        if waiting:
            raise CycleError(self._cycle())
        return layers

    def _cycle(self) -> list[str]:
        """The first cycle a depth-first search meets, starting from the nodes in their order and
        following each node's edges in theirs; it starts at the node the search came back to.
        Only called on a graph that has one."""
        finished: set[str] = set()  # no cycle goes through these
        for start in self._nodes:
            if start in finished:
                continue
            path = [start]
            on_path = {start}
            pending = [iter(self._successors[start])]
            while pending:
                for after in pending[-1]:
                    if after in on_path:
                        return path[path.index(after):]
                    if after not in finished:
                        path.append(after)
                        on_path.add(after)
                        pending.append(iter(self._successors[after]))
                        break
                else:
                    pending.pop()
                    done = path.pop()
                    on_path.remove(done)
                    finished.add(done)
        raise AssertionError("a graph without a topological order has a cycle")


class TaskGraph(Graph):
    """A workflow's tasks by name, with an edge from each prerequisite to the task that depends
    on it. Built by :func:`build_graph`, which checks it."""

    def __init__(self, tasks: Iterable[Task]) -> None:
        self._tasks = {task.name: task for task in tasks}
        super().__init__(self._tasks, ((before, task.name) for task in self._tasks.values()
                                       for before in task.depends_on))

    @property
    def tasks(self) -> Mapping[str, Task]:
        return MappingProxyType(self._tasks)

    def task(self, name: str) -> Task:
        return self._tasks[name]


def build_graph(tasks: Iterable[Task]) -> TaskGraph:
    """The graph of ``tasks``, in their order.

    Raises :class:`DagError` listing duplicate names, unknown or self dependencies, and the
    first cycle found, by name.
    """
    tasks = list(tasks)
    problems: list[str] = []
    seen: set[str] = set()
    for task in tasks:
        if task.name in seen:
            problems.append(f"duplicate task name {task.name!r}")
        seen.add(task.name)
    for task in tasks:
        for upstream in task.depends_on:
            if upstream == task.name:
                problems.append(f"task {task.name!r} depends on itself")
            elif upstream not in seen:
                problems.append(f"task {task.name!r} depends on unknown task {upstream!r}")
    if problems:
        raise DagError(problems)
    graph = TaskGraph(tasks)
    try:
        graph.topological_order()
    except CycleError as exc:
        raise DagError([str(exc)]) from None
    return graph
