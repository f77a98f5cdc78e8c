"""Session fixtures: the real dev cluster (started once, and stopped at the end only when this
run started it) and a Slurm client per transport, so every backend test runs through both.

Every test that needs a server process is marked ``slurm`` here, by the fixtures it uses, so that
``scripts/test -m "not slurm"`` (the fast lane) runs everything else without root and never starts
the dev cluster, an sshd or the Kubernetes control plane.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.api import SlurmCluster
from reconciler.devcluster import DevCluster
from reconciler.devcluster.configs import CLUSTER_NAME

# The real Kubernetes control plane (etcd and kube-apiserver) and its fixtures, and the
# Kubernetes-mode world of the end-to-end tests over it.
pytest_plugins = ["tests.controlplane.fixtures", "tests.integration.kube_world"]

# The fixtures that start a server: the dev cluster (slurmctld, slurmd, slurmdbd, MariaDB and
# sshd, installed and started as root), the private sshd of the transport tests, and the
# Kubernetes control plane (etcd and kube-apiserver, tests/controlplane). A fixture that asks for
# one through request.getfixturevalue is invisible here and marks its own parameter.
SERVER_FIXTURES = frozenset({"dev_cluster", "sshd", "control_plane"})


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The resilience scenarios stop the dev cluster's daemons for minutes: only scripts/resilience
    # runs them, never the default suite.
    resilience = os.environ.get("RECONCILER_RESILIENCE") == "1"
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slurm)
        if not resilience and item.get_closest_marker("resilience") is not None:
            item.add_marker(pytest.mark.skip(reason="a resilience scenario: run scripts/resilience"))
    # Tests that judge what the whole run did (from the control plane's audit log) come last; the
    # sort is stable, so every other test keeps its place.
    items.sort(key=lambda item: item.get_closest_marker("after_everything") is not None)


@pytest.fixture(scope="session")
def dev_cluster() -> Iterator[DevCluster]:
    directory = os.environ.get("RECONCILER_DEV_CLUSTER_DIR")
    # Named dev wherever it lives: manifests in the tests name that cluster.
    cluster = DevCluster(Path(directory) if directory else None, name=CLUSTER_NAME)
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
