"""A task's parallelism holds across MaxArraySize chunks on the real dev cluster, driven by the
real ``reconciler run`` loop."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from reconciler.devcluster import DevCluster
from tests.integration.gitops_world import Loop, PlanRepo, unique, watch_to_end, workflow_header

MAX_ARRAY_SIZE = 201  # the dev cluster's: the task below is cut into two chunks
PARALLELISM = 8  # two chunks of %8 running together would need 16 CPUs: the dev node has them
COUNT = MAX_ARRAY_SIZE + PARALLELISM


def running_elements(cluster: DevCluster, job_name: str) -> int:
    """How many array elements of the job name Slurm runs right now (``-r``: one line each)."""
    done = subprocess.run(["squeue", "--me", "--noheader", "-r", "-t", "RUNNING", "--format=%j"],
                          env={**os.environ, **cluster.env}, capture_output=True, text=True, check=True)
    return sum(1 for line in done.stdout.splitlines() if line.strip() == job_name)


def test_parallelism_caps_the_task_across_max_array_size_chunks(tmp_path: Path, dev_cluster: DevCluster):
    name = unique("throttle")
    # The first element of each round at either chunk's start sleeps, so were both chunks let out
    # at once, 2 x 8 elements would stay running long enough for the sampler to see; the rest are
    # quick, so the run stays short.
    script = (f'if [ "$TASK_INDEX" -lt {PARALLELISM} ] || [ "$TASK_INDEX" -ge {MAX_ARRAY_SIZE} ]; '
              'then sleep 3; fi')
    repo = PlanRepo(tmp_path, dev_cluster.manifest_path("local").read_text())
    repo.write("plans/throttle.yaml", workflow_header(name) + f"""\
    - name: tiles
      array: {{count: {COUNT}, parallelism: {PARALLELISM}}}
      script: |
        {script}
""")
    repo.push("an array wider than MaxArraySize, eight at a time")
    loop = Loop(repo, tmp_path / "state").start()
    try:
        most, status, _ = watch_to_end(loop, name, sample=lambda: running_elements(dev_cluster, f"{name}.tiles"),
                                       timeout=600)
    finally:
        loop.stop()
    assert status.get("phase") == "Succeeded", (status, loop.log.read_text()[-3000:])
    assert status["tasks"]["tiles"]["array"]["indices"] == {"Succeeded": f"0-{COUNT - 1}"}
    assert most == PARALLELISM
