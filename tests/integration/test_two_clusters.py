"""Two dev clusters side by side: Slurm's own start estimates tell a busy cluster from an idle one,
and a workflow named to the second cluster runs there, through each transport."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.api import SlurmCluster
from reconciler.core.observed import JobSize
from reconciler.devcluster import DevCluster
from reconciler.manifests.loader import load_text
from reconciler.slurm.client import SlurmClient
from reconciler.slurm.transport import open_transport
from tests.integration.gitops_world import gitops_world, sacct_jobs, unique, workflow_header
from tests.integration.second_cluster import BLOCKER_TIME_LIMIT_MINUTES, cluster_document, filled

pytestmark = pytest.mark.slurm

QUERY = JobSize("debug", nodes=1, cpus=2, time_seconds=600, memory_mib=100)


def client(document: str) -> SlurmClient:
    [loaded] = load_text(document, filename="cluster.yaml").resources
    cluster = loaded.resource
    assert isinstance(cluster, SlurmCluster)
    return SlurmClient(cluster, open_transport(cluster.spec))


@pytest.fixture(params=["local", "ssh"])
def clients(request: pytest.FixtureRequest, dev_cluster: DevCluster,
            second_dev_cluster: DevCluster) -> Iterator[tuple[SlurmClient, SlurmClient]]:
    """A client of each cluster; over ssh both through the first cluster's sshd, one login node in
    front of two clusters, told apart by the SLURM_CONF each command gets."""
    transport = str(request.param)
    pair = (client(cluster_document(dev_cluster, transport=transport)),
            client(cluster_document(second_dev_cluster, transport=transport, login=dev_cluster)))
    yield pair
    for each in pair:
        each.close()


def test_a_filled_cluster_would_start_a_job_later_than_an_idle_one(clients, second_dev_cluster: DevCluster):
    idle, busy = clients
    too_big = JobSize("debug", nodes=1, cpus=64, time_seconds=600)
    too_long = JobSize("debug", nodes=1, cpus=1, time_seconds=2 * 3600)
    with filled(second_dev_cluster):
        asked_at = datetime.now(UTC)
        on_idle = idle.estimate_starts([QUERY, QUERY, too_big])
        on_busy = busy.estimate_starts([QUERY, too_long])
    assert on_idle.keys() == {QUERY, too_big} and on_busy.keys() == {QUERY, too_long}
    assert on_idle[too_big] is None and on_busy[too_long] is None
    idle_start, busy_start = on_idle[QUERY], on_busy[QUERY]
    assert idle_start is not None and idle_start - asked_at < timedelta(seconds=30), idle_start
    # Slurm expects the blocking job to run to its time limit.
    assert busy_start is not None
    assert busy_start - asked_at > timedelta(minutes=BLOCKER_TIME_LIMIT_MINUTES) - timedelta(seconds=30), busy_start
    # Once the blocker is gone, the second cluster is idle again.
    again = busy.estimate_starts([QUERY])[QUERY]
    assert again is not None and again - datetime.now(UTC) < timedelta(seconds=30)


@pytest.mark.parametrize("transport", ["local", "ssh"])
def test_a_workflow_named_to_the_second_cluster_runs_there(transport: str, tmp_path: Path, dev_cluster: DevCluster,
                                                           second_dev_cluster: DevCluster):
    repo, loop, _ = gitops_world(transport, tmp_path, dev_cluster)
    second = f"{second_dev_cluster.name}-{transport}"
    repo.write("clusters/second.yaml", cluster_document(second_dev_cluster, transport=transport, login=dev_cluster,
                                                         name=second))
    name = unique("elsewhere")
    header = workflow_header(name).replace("spec:\n", f"spec:\n  cluster: {second}\n", 1)
    repo.write(f"plans/{name}.yaml", header + "    - name: hello\n      command: [hostname]\n")
    repo.push("a workflow for the second cluster")

    assert loop.run_until_done(timeout=120) == 0, loop.log.read_text()[-3000:]
    status = loop.status(name)
    assert status["phase"] == "Succeeded", status
    job_id = status["tasks"]["hello"]["jobId"]
    assert (job_id, "COMPLETED") in sacct_jobs(second_dev_cluster, f"{name}.")
    first = subprocess.run(["sacct", "-X", "-P", "-n", "--starttime=now-1hours", "--format=JobName"],
                           env={**os.environ, **dev_cluster.env}, capture_output=True, text=True, check=True)
    assert f"{name}.hello" not in first.stdout.split()
