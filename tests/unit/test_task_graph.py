"""The task graph (reconciler.manifests.dag): the order every fingerprint and plan walks, the
cycle a manifest is told about, what comes before and after a task, and the dashboard's layers."""

import gc
import weakref
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.api import Task
from reconciler.manifests.dag import CycleError, DagError, Graph, TaskGraph, build_graph


def tasks(*specs: tuple[str, list[str]]) -> list[Task]:
    return [Task(name=name, depends_on=deps, script="true") for name, deps in specs]


CHAIN = tasks(("extract", []), ("clean", ["extract"]), ("align", ["clean"]))
DIAMOND = tasks(("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"]), ("e", []))
# Given in an order that is topological but not by name: the name decides among tasks free to run.
UNSORTED = tasks(("zeta", []), ("yank", ["zeta"]), ("alpha", []), ("mid", ["alpha"]), ("beta", ["mid", "zeta"]))


def test_a_chain_runs_in_its_order_whatever_the_names():
    assert build_graph(CHAIN).topological_order() == ("extract", "clean", "align")
    assert build_graph(reversed(CHAIN)).topological_order() == ("extract", "clean", "align")


def test_a_diamond_is_ordered_prerequisites_first_then_by_name():
    assert build_graph(DIAMOND).topological_order() == ("a", "b", "c", "d", "e")


def test_among_tasks_free_to_run_the_smallest_name_comes_first():
    graph = build_graph(UNSORTED)
    assert graph.nodes == ("zeta", "yank", "alpha", "mid", "beta")  # as declared
    assert graph.topological_order() == ("alpha", "mid", "zeta", "beta", "yank")
    assert build_graph(reversed(UNSORTED)).topological_order() == graph.topological_order()


names = st.sampled_from([f"{letter}{digit}" for letter in "abcdef" for digit in range(3)])


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], list[tuple[str, str]]]:
    """Names in a random order, with edges only from earlier to later ones (so no cycle)."""
    order = draw(st.lists(names, min_size=1, max_size=12, unique=True))
    pairs = st.tuples(st.integers(0, len(order) - 1), st.integers(0, len(order) - 1))
    edges = [(order[i], order[j]) for i, j in draw(st.lists(pairs, max_size=30)) if i < j]
    return draw(st.permutations(order)), edges


@given(dags())
def test_the_order_is_the_smallest_by_name_at_every_step(dag: tuple[list[str], list[tuple[str, str]]]):
    nodes, edges = dag
    order = Graph(nodes, edges).topological_order()
    assert sorted(order) == sorted(nodes)
    placed: set[str] = set()
    for name in order:
        ready = {n for n in nodes if n not in placed and all(a in placed for a, b in edges if b == n)}
        assert name == min(ready)
        placed.add(name)
    assert Graph(reversed(nodes), reversed(edges)).topological_order() == order


def test_a_cycle_is_reported_by_its_members_in_the_direction_of_its_edges():
    with pytest.raises(DagError) as excinfo:
        build_graph(tasks(("a", ["c"]), ("b", ["a"]), ("c", ["b"])))
    assert excinfo.value.problems == ["dependency cycle: a -> b -> c -> a"]


def test_a_cycle_leaves_out_the_tasks_that_only_lead_to_it():
    with pytest.raises(DagError) as excinfo:
        build_graph(tasks(("start", []), ("a", ["start", "b"]), ("b", ["a"]), ("end", ["b"])))
    assert excinfo.value.problems == ["dependency cycle: a -> b -> a"]


def test_a_long_cycle_is_found_without_recursion():
    n = 30_000
    nodes = [f"t{i:05}" for i in range(n)]
    graph = Graph(nodes, [*pairwise(nodes), (nodes[-1], nodes[0])])
    with pytest.raises(CycleError) as excinfo:
        graph.topological_order()
    assert excinfo.value.cycle == nodes
    assert Graph(nodes, pairwise(nodes)).topological_order() == tuple(nodes)


def test_descendants_and_ancestors():
    graph = build_graph(DIAMOND)
    assert graph.descendants("a") == {"b", "c", "d"}
    assert graph.descendants("b") == {"d"}
    assert graph.descendants("d") == graph.descendants("e") == set()
    assert graph.ancestors("d") == {"a", "b", "c"}
    assert graph.ancestors("a") == set()


def test_neighbours_keep_the_order_they_were_declared_in():
    graph = build_graph(tasks(("z", []), ("a", []), ("m", ["z", "a"]), ("b", ["z"])))
    assert graph.predecessors("m") == ("z", "a")
    assert graph.successors("z") == ("m", "b")
    assert graph.predecessors("z") == graph.successors("m") == ()


def test_generations_are_layers_of_tasks_whose_prerequisites_came_before():
    assert build_graph(DIAMOND).generations() == [["a", "e"], ["b", "c"], ["d"]]
    assert build_graph(CHAIN).generations() == [["extract"], ["clean"], ["align"]]
    with pytest.raises(CycleError):
        Graph(["a", "b", "c"], [("a", "b"), ("b", "c"), ("c", "b")]).generations()


def test_an_edge_given_twice_is_one_edge():
    graph = Graph(["a", "b"], [("a", "b"), ("a", "b")])
    assert graph.successors("a") == ("b",) and graph.predecessors("b") == ("a",)
    assert graph.generations() == [["a"], ["b"]]


def test_tasks_by_name_cannot_be_changed_through_the_graph():
    graph = build_graph(DIAMOND)
    assert isinstance(graph, TaskGraph)
    assert graph.task("d") is DIAMOND[3] and list(graph.tasks) == ["a", "b", "c", "d", "e"]
    assert "d" in graph and "zz" not in graph and len(graph) == 5
    with pytest.raises(TypeError):
        graph.tasks["f"] = DIAMOND[0]  # type: ignore[index]


def test_a_graph_keys_a_weak_cache_and_leaves_it_when_dropped():
    cache: weakref.WeakKeyDictionary[TaskGraph, str] = weakref.WeakKeyDictionary()
    graph = build_graph(CHAIN)
    other = build_graph(CHAIN)
    cache[graph] = "kept"
    assert other not in cache  # equal graphs are still different keys: a cache is per object
    del graph
    gc.collect()
    assert len(cache) == 0
