"""Session fixtures: the real dev cluster (started once, and stopped at the end only when this
run started it) and a Slurm client per transport, so every backend test runs through both."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.api import SlurmCluster
from reconciler.devcluster import DevCluster


@pytest.fixture(scope="session")
def dev_cluster() -> Iterator[DevCluster]:
    directory = os.environ.get("RECONCILER_DEV_CLUSTER_DIR")
    cluster = DevCluster(Path(directory) if directory else None)
    was_running = all(cluster.status().values()) if cluster.layout.ports.exists() else False
    cluster.up()
    yield cluster
    if not was_running and os.environ.get("RECONCILER_KEEP_DEV_CLUSTER") != "1":
        cluster.down()


@pytest.fixture(scope="session", params=["local", "ssh"])
def transport_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def slurm_cluster(dev_cluster: DevCluster, transport_kind: str) -> SlurmCluster:
    return dev_cluster.cluster(transport_kind)
