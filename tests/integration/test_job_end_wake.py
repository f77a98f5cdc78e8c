"""A job's end wakes the loop: through each transport, a loop whose interval is far longer than
the whole run sees a chain end; and a job killed before it could record its end is still seen
ended by the regular tick."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from reconciler.devcluster import DevCluster
from tests.integration.gitops_world import gitops_world, squeue_jobs, unique, wait_until, workflow_header

pytestmark = pytest.mark.slurm


def chain(name: str, script: str, steps: int) -> str:
    tasks = "".join(f"    - name: step{i}\n" + (f"      dependsOn: [step{i - 1}]\n" if i else "")
                    + f"      script: {script}\n" for i in range(steps))
    return workflow_header(name) + tasks


@pytest.mark.parametrize("transport", ["local", "ssh"])
def test_a_loop_that_ticks_every_five_minutes_sees_a_chain_end_at_once(transport: str, tmp_path: Path,
                                                                        dev_cluster: DevCluster) -> None:
    repo, loop, _ = gitops_world(transport, tmp_path, dev_cluster, interval=300)
    name = unique("woken")
    repo.write("plans/chain.yaml", chain(name, "sleep 1", 3))
    repo.push("three steps of a second each")
    loop.start()
    try:
        # Without wakes the loop would look at the cluster again only 300 s after submitting.
        loop.wait_for(name, lambda status: status.get("phase") == "Succeeded", timeout=60,
                      what="the chain Succeeded")
    finally:
        loop.stop()


def test_a_job_killed_before_it_records_its_end_is_seen_by_the_regular_tick(tmp_path: Path,
                                                                            dev_cluster: DevCluster) -> None:
    repo, loop, _ = gitops_world("local", tmp_path, dev_cluster, interval=1.0)
    name = unique("killed")
    repo.write("plans/killed.yaml", chain(name, "sleep 300", 1))
    repo.push("a step that is killed")
    loop.start()
    try:
        loop.wait_for(name, lambda status: status.get("tasks", {}).get("step0", {}).get("phase") == "Running",
                      timeout=60, what="the step running")
        [job] = wait_until(lambda: squeue_jobs(dev_cluster, name), timeout=10, what="the job in the queue")
        # SIGKILL to the batch shell alone: its EXIT trap never runs, so no record is written.
        subprocess.run(["scancel", "--batch", "--signal=KILL", job], env={**os.environ, **dev_cluster.env},
                       check=True, timeout=30)
        status = loop.wait_for(name, lambda status: status.get("phase") == "Failed", timeout=60,
                               what="the workflow Failed")
        assert status["tasks"]["step0"]["phase"] == "Failed"
    finally:
        loop.stop()
