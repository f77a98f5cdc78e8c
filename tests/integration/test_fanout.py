"""A fan-out sized at run time on the real dev cluster: the first step writes how many tiles there
are (and their names), the reconciler reads that after the step succeeded and submits arrays of
that size, a fan-in follows; a new count in a new commit resizes them, and a malformed count fails
the workflow with the reason. The file is read through the cluster's transport, so the main case
runs through both."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reconciler.devcluster import DevCluster
from tests.integration.gitops_world import sacct_jobs, unique, workflow_header
from tests.integration.kube_world import KubeWorld

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slurm


def workflow(name: str, *, tiles: int, count: str | None = None) -> str:
    """``tile`` writes the count (``count``, or the number of tiles) and one name per tile; the
    names have spaces and quotes, which must reach ``$TASK_ITEM`` as they are."""
    written = count if count is not None else str(tiles)
    return workflow_header(name) + f"""\
    - name: tile
      script: |
        echo {written} > count.txt
        mkdir -p lists
        for i in $(seq 0 {tiles - 1}); do echo "slide 'A' tile $i.tif"; done > lists/tiles.txt
    - name: segment
      dependsOn: [tile]
      array: {{countFrom: {{task: tile, file: count.txt}}, parallelism: 4}}
      script: |
        echo "$TASK_INDEX $RECONCILER_ATTEMPT" > "segment-$TASK_INDEX.txt"
    - name: classify
      dependsOn: [tile]
      array: {{itemsFrom: {{task: tile, file: lists/tiles.txt}}}}
      script: |
        printf '%s\\n' "$TASK_ITEM" > "item-$TASK_INDEX.txt"
    - name: mosaic
      dependsOn: [segment, classify]
      script: |
        n=$(cat ../tile/count.txt)
        echo "$n" > mosaic.txt
        for i in $(seq 0 $((n - 1))); do cat "../classify/item-$i.txt"; done | sort >> mosaic.txt
"""


def mosaic(tiles: int) -> str:
    names = sorted(f"slide 'A' tile {i}.tif" for i in range(tiles))
    return f"{tiles}\n" + "".join(f"{n}\n" for n in names)


def test_the_tile_count_written_by_the_first_step_sizes_the_arrays_and_a_new_count_resizes_them(
        transport_world, dev_cluster: DevCluster):
    repo, loop, workdir = transport_world
    name = unique("fanout")
    repo.write(f"plans/{name}.yaml", workflow(name, tiles=7))
    repo.push("cut the slide into seven tiles")
    loop.start()
    first = loop.wait_for_phase(name, "Succeeded", timeout=150)
    for task in ("segment", "classify"):
        assert first["tasks"][task]["array"]["total"] == 7
        assert first["tasks"][task]["array"]["indices"] == {"Succeeded": "0-6"}
    run_dir = workdir / "default" / name
    assert (run_dir / "mosaic" / "mosaic.txt").read_text() == mosaic(7)
    # Each array went out once, as one job of seven elements.
    elements = sacct_jobs(dev_cluster, f"{name}.segment", at_least=7)
    assert len(elements) == 7 and len({job_id.split("_")[0] for job_id, _ in elements}) == 1

    repo.write(f"plans/{name}.yaml", workflow(name, tiles=3))
    repo.push("three tiles are enough")
    second = loop.wait_for(
        name, lambda s: s["phase"] == "Succeeded" and s["tasks"]["tile"]["fingerprint"]
        != first["tasks"]["tile"]["fingerprint"], timeout=150, what="the rerun with three tiles")
    for task in ("segment", "classify"):
        assert second["tasks"][task]["array"]["total"] == 3
        assert second["tasks"][task]["array"]["indices"] == {"Succeeded": "0-2"}
    assert (run_dir / "mosaic" / "mosaic.txt").read_text() == mosaic(3)
    # Exactly the three elements of the new count ran again (attempt 2); the first run's stay.
    segments = {i: (run_dir / "segment" / f"segment-{i}.txt").read_text() for i in range(7)}
    assert segments == {i: f"{i} {2 if i < 3 else 1}\n" for i in range(7)}


def test_a_malformed_count_fails_the_workflow_with_the_file_and_the_reason(local_world):
    repo, loop, workdir = local_world
    name = unique("badcount")
    repo.write(f"plans/{name}.yaml", workflow(name, tiles=2, count="seven"))
    repo.push("a count that is not a number")
    loop.start()
    failed = loop.wait_for_phase(name, "Failed", timeout=120)
    segment = failed["tasks"]["segment"]
    assert (segment["phase"], segment["reason"]) == ("Failed", "ArraySizeInvalid")
    path = workdir / "default" / name / "tile" / "count.txt"
    assert segment["message"] == f"count.txt of task tile ({path}), line 1: 'seven' is not a positive integer"
    assert failed["tasks"]["mosaic"]["phase"] == "Skipped"
    # The item list was fine: that array ran, independently of the broken count.
    assert failed["tasks"]["classify"]["phase"] == "Succeeded"
    stalled = next(c for c in failed["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "TaskFailed"


def test_an_operator_that_lost_its_state_reads_the_size_again_and_runs_no_element_twice(
        kube_world: KubeWorld, dev_cluster: DevCluster):
    """Kubernetes mode: the local store is a cache. An operator started on an empty state
    directory finds the writer succeeded in the Workflow's status, reads the count again from
    the writer's run directory and adopts the array's jobs instead of submitting them again."""
    name, kubectl = unique("kfanout"), kube_world.kubectl
    kubectl.apply(f"""\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {{name: {name}}}
spec:
  cluster: {dev_cluster.cluster("local").metadata.name}
  defaults:
    resources: {{partition: debug, time: "00:05:00", memory: 20M}}
  tasks:
    - {{name: tile, script: "echo 5 > count.txt"}}
    - name: segment
      dependsOn: [tile]
      array: {{countFrom: {{task: tile, file: count.txt}}}}
      script: |
        echo "$TASK_INDEX" >> ../runs.log
        sleep 4
    - {{name: mosaic, dependsOn: [segment], script: "wc -l < ../runs.log > mosaic.txt"}}
""")
    # The same replica (it holds the Lease it held) killed and started again on an empty disk.
    state, identity = kube_world.directory / "state", unique("a")
    first = kube_world.operator(state_dir=state, identity=identity)
    try:
        kubectl.wait_for(name, lambda s: s.get("tasks", {}).get("segment", {}).get("phase") == "Running",
                         what="the array running", operators=(first,))
    finally:
        first.kill()
    subprocess.run(["rm", "-rf", str(state)], check=True)
    second = kube_world.operator(state_dir=state, identity=identity)
    done = kubectl.wait_for(name, lambda s: s.get("phase") == "Succeeded", timeout=120, what="Succeeded",
                            operators=(second,))
    second.stop()
    assert "has 5 elements, from" in second.log.read_text()  # read again, not remembered
    assert done["tasks"]["segment"]["array"]["total"] == 5
    assert sorted((kube_world.run_dir(name) / "runs.log").read_text().split()) == ["0", "1", "2", "3", "4"]
    elements = sacct_jobs(dev_cluster, f"{name}.segment", at_least=5)
    assert len(elements) == 5 and len({job_id.split("_")[0] for job_id, _ in elements}) == 1
