"""A second dev cluster beside the first, for tests that choose between clusters: where it lives,
SlurmCluster documents that name it (reached locally, over its own sshd, or over the first
cluster's sshd as one login node in front of both), and a way to keep it busy.

The session fixture ``second_dev_cluster`` (tests/integration/conftest.py) brings it up the way
``dev_cluster`` brings up the first: it reuses a running one, and stops it at the end only when
this run started it."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from reconciler.devcluster import DevCluster
from tests.integration.gitops_world import wait_until

# Long enough to outlast any test; each is cancelled when its test ends.
BLOCKER_SECONDS = 300
BLOCKER_TIME_LIMIT_MINUTES = 5


def second_cluster_dir(first: DevCluster) -> Path:
    """RECONCILER_SECOND_CLUSTER_DIR, else ``dev2`` beside the first cluster's directory (so the
    cluster is named dev2)."""
    configured = os.environ.get("RECONCILER_SECOND_CLUSTER_DIR")
    return Path(configured) if configured else first.layout.root.parent / "dev2"


def cluster_document(cluster: DevCluster, *, transport: str, login: DevCluster | None = None,
                     name: str | None = None) -> str:
    """A SlurmCluster manifest for ``cluster``: its slurm.conf (exported as SLURM_CONF to every
    command), working directory and partitions, reached locally or over ssh, through ``login``'s
    sshd when given (one login node for several clusters), else through its own."""
    yaml = YAML(typ="safe")
    document: dict[str, Any] = yaml.load(cluster.manifest_path(transport).read_text())
    if transport == "ssh" and login is not None:
        document["spec"]["ssh"].update(port=login.ports.sshd, keyFile=str(login.layout.client_key),
                                       knownHostsFile=str(login.layout.known_hosts))
    if name is not None:
        document["metadata"]["name"] = name
    text = io.StringIO()
    yaml.dump(document, text)
    return text.getvalue()


def _slurm(cluster: DevCluster, *argv: str) -> str:
    return subprocess.run(list(argv), env={**os.environ, **cluster.env}, capture_output=True, text=True,
                          check=True, timeout=60).stdout


def job_state(cluster: DevCluster, job_id: str) -> str:
    return _slurm(cluster, "squeue", "--states=all", f"--jobs={job_id}", "--noheader", "--format=%T").strip()


@contextmanager
def filled(cluster: DevCluster) -> Iterator[str]:
    """The cluster's node held whole by one running ``sleep`` (an --exclusive job with a time
    limit of five minutes, which is when Slurm expects it to end), cancelled on the way out; the
    blocking job's id."""
    job_id = _slurm(cluster, "sbatch", "--parsable", "--exclusive", "--nodes=1", "--job-name=blocker",
                    f"--time={BLOCKER_TIME_LIMIT_MINUTES}", "--output=/dev/null",
                    f"--wrap=sleep {BLOCKER_SECONDS}").strip()
    try:
        wait_until(lambda: job_state(cluster, job_id) == "RUNNING", timeout=30, what=f"blocker {job_id} running")
        yield job_id
    finally:
        _slurm(cluster, "scancel", job_id)
        wait_until(lambda: job_state(cluster, job_id) not in ("PENDING", "RUNNING", "COMPLETING"), timeout=30,
                   what=f"blocker {job_id} gone")
