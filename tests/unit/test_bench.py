"""The benchmarks' pure parts run, at sizes small enough for the fast lane, so that scripts/bench
does not rot between the times it is run. Nothing here times anything."""

from __future__ import annotations

import subprocess

import pytest

from benchmarks import cluster, loop, scale
from reconciler.manifests.loader import load_text
from reconciler.manifests.resolve import resolve

CLUSTER = "apiVersion: hpc.reconciler.dev/v1alpha1\nkind: SlurmCluster\nmetadata: {name: dev}\nspec: {workdir: /w}\n"


@pytest.mark.parametrize("case", [loop.Case("tasks", "tasks", 200), loop.Case("array", "array", 500, 0),
                                  loop.Case("array, most finished", "array", 500, 450)])
def test_loop_case_measures_a_tick(case: loop.Case) -> None:
    result = loop.run_case(case, repeat=1)
    assert result["active"] == case.size - case.finished
    assert float(result["peak_rss_mb"]) > 0  # type: ignore[arg-type]
    assert result["steady_replanned"] == 0  # the steady tick plans no workflow again
    if case.kind == "array":
        # Index ranges keep an array's status small whatever its size.
        assert 0 < int(result["array_status_bytes"]) < 2048  # type: ignore[call-overload]


def test_one_loop_over_many_workflows_observes_each_cluster_once_a_tick() -> None:
    result = scale.measure(workflows=4, tasks=3)
    ticks = {row["tick"]: row["commands"] for row in result["ticks"]}  # type: ignore[attr-defined]
    assert ticks["submit"]["sbatch"] == 12
    assert ticks["all running"] == ticks["running, steady"] == {"sacct": 1, "squeue": 1}
    assert ticks["all completed"]["squeue"] == 1
    assert ticks["steady"] == {"sacct": 1, "squeue": 1}
    assert result["succeeded"] == 4


@pytest.mark.parametrize("key", sorted(cluster.SHAPES))
def test_each_floor_shape_is_a_valid_workflow(key: str) -> None:
    text = CLUSTER + "---\n" + cluster.SHAPES[key].manifest("bench")
    loaded = load_text(text, filename="bench.yaml")
    assert not loaded.errors
    [workflow] = resolve(loaded.resources).workflows
    assert workflow.tasks


def test_the_floor_script_parses() -> None:
    subprocess.run(["bash", "-n", str(cluster.FLOOR)], check=True)
