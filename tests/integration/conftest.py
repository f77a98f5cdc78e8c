"""Fixtures of the Git-mode world: a plan repository with the dev cluster's SlurmCluster in it,
and a reconciler loop on it (started by the test, stopped after it); and a second dev cluster
for the tests that choose between clusters."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.devcluster import DevCluster
from tests.integration.gitops_world import Loop, PlanRepo, gitops_world
from tests.integration.second_cluster import second_cluster_dir


@pytest.fixture
def world(tmp_path: Path, dev_cluster: DevCluster) -> Iterator[tuple[PlanRepo, Loop]]:
    """Through the local transport."""
    repo, loop, _ = gitops_world("local", tmp_path, dev_cluster)
    yield repo, loop
    loop.stop()


@pytest.fixture
def local_world(tmp_path: Path, dev_cluster: DevCluster) -> Iterator[tuple[PlanRepo, Loop, Path]]:
    """Through the local transport, with a quick loop, and the cluster's working directory."""
    repo, loop, workdir = gitops_world("local", tmp_path, dev_cluster, interval=0.5)
    yield repo, loop, workdir
    loop.stop()


@pytest.fixture(params=["local", "ssh"])
def transport_world(request: pytest.FixtureRequest, tmp_path: Path,
                    dev_cluster: DevCluster) -> Iterator[tuple[PlanRepo, Loop, Path]]:
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
