"""Fixtures of the Git-mode world: a plan repository with the dev cluster's SlurmCluster in it,
and a reconciler loop on it (started by the test, stopped after it); and a second dev cluster
for the tests that choose between clusters."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.cli.submit import Submission, submit_workflow
from reconciler.devcluster import DevCluster
from reconciler.manifests.loader import load_text
from reconciler.manifests.resolve import resolve
from reconciler.slurm.client import SlurmClient
from reconciler.slurm.transport import open_transport
from tests.integration.gitops_world import Loop, PlanRepo, gitops_world, squeue_jobs, wait_until, workflow_header
from tests.integration.second_cluster import second_cluster_dir


@pytest.fixture(scope="session")
def overtime(dev_cluster: DevCluster) -> Iterator[Submission]:
    """A job past its time limit of a minute, submitted (through the local transport) by the first
    Git-mode world of the session: Slurm ends it 60 to 90 s after it started (it checks limits
    every half minute), so the suite runs on meanwhile and the tests of TIMEOUT, later, find it
    ended. It holds one CPU for that while; the tests that count every job in the queue (capacity,
    submit limits, a cluster filled whole) come later than that in the suite. Cancelled at the end
    if a short session leaves it running."""
    cluster = dev_cluster.cluster("local")
    client = SlurmClient(cluster, open_transport(cluster.spec))
    text = dev_cluster.manifest_path("local").read_text() + "---\n" + workflow_header("overtime").replace(
        'time: "00:05:00"', 'time: "00:01:00"') + "    - name: main\n      script: sleep 300\n"
    [workflow] = resolve(load_text(text, filename="overtime.yaml").resources).workflows
    submission = submit_workflow(workflow, client)
    try:
        yield submission
    finally:
        client.cancel([job for ids in submission.jobs.values() for job in ids])
        client.close()


@pytest.fixture
def quiet_queue(dev_cluster: DevCluster, overtime: Submission) -> None:
    """For a test that counts every job of the user in the queue: the session's overtime job has
    ended (at once in a whole run, where it ended long before; up to a minute and a half when the
    test runs alone)."""
    ids = {job for ids in overtime.jobs.values() for job in ids}
    wait_until(lambda: not ids & set(squeue_jobs(dev_cluster, "")), timeout=150,
               what=f"the overtime job {', '.join(sorted(ids))} out of the queue")


@pytest.fixture
def world(tmp_path: Path, dev_cluster: DevCluster, overtime: Submission) -> Iterator[tuple[PlanRepo, Loop]]:
    """Through the local transport."""
    repo, loop, _ = gitops_world("local", tmp_path, dev_cluster)
    yield repo, loop
    loop.stop()


@pytest.fixture
def local_world(tmp_path: Path, dev_cluster: DevCluster, overtime: Submission) -> Iterator[tuple[PlanRepo, Loop, Path]]:
    """Through the local transport, with a quick loop, and the cluster's working directory."""
    repo, loop, workdir = gitops_world("local", tmp_path, dev_cluster, interval=0.5)
    yield repo, loop, workdir
    loop.stop()


@pytest.fixture(params=["local", "ssh"])
def transport_world(request: pytest.FixtureRequest, tmp_path: Path, dev_cluster: DevCluster,
                    overtime: Submission) -> Iterator[tuple[PlanRepo, Loop, Path]]:
    """Through each transport, with a quick loop, and the cluster's working directory."""
    repo, loop, workdir = gitops_world(request.param, tmp_path, dev_cluster, interval=0.5)
    yield repo, loop, workdir
    loop.stop()


@pytest.fixture(scope="session")
def second_dev_cluster(dev_cluster: DevCluster) -> Iterator[DevCluster]:
    """A second dev cluster (named dev2 unless RECONCILER_SECOND_CLUSTER_DIR says otherwise),
    started once and stopped at the end only when this run started it, as ``dev_cluster`` is."""
    cluster = DevCluster(second_cluster_dir(dev_cluster))
    was_running = all(cluster.status().values()) if cluster.layout.ports.exists() else False
    cluster.up()
    yield cluster
    if not was_running and os.environ.get("RECONCILER_KEEP_DEV_CLUSTER") != "1":
        cluster.down()
