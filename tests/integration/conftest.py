"""Fixtures of the Git-mode world: a plan repository with the dev cluster's SlurmCluster in it,
and a reconciler loop on it (started by the test, stopped after it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.devcluster import DevCluster
from tests.integration.gitops_world import Loop, PlanRepo, gitops_world


@pytest.fixture
def world(tmp_path: Path, dev_cluster: DevCluster) -> Iterator[tuple[PlanRepo, Loop]]:
    """Through the local transport."""
    repo, loop, _ = gitops_world("local", tmp_path, dev_cluster)
    yield repo, loop
    loop.stop()


@pytest.fixture(params=["local", "ssh"])
def transport_world(request: pytest.FixtureRequest, tmp_path: Path,
                    dev_cluster: DevCluster) -> Iterator[tuple[PlanRepo, Loop, Path]]:
    """Through each transport, with a quick loop, and the cluster's working directory."""
    repo, loop, workdir = gitops_world(request.param, tmp_path, dev_cluster, interval=0.5)
    yield repo, loop, workdir
    loop.stop()
