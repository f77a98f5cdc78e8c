"""Status the Kubernetes way, against the real kube-apiserver and the dev cluster: the operator,
running as the chart's ServiceAccount, writes the status of Workflows and SlurmClusters by
server-side apply (managedFields name it as the owner of .status), and `kubectl get
slurmclusters` shows whether each cluster was reached, its Slurm version and our jobs there."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from reconciler.devcluster import DevCluster
from reconciler.slurm.client import SlurmClient
from reconciler.slurm.transport import open_transport
from tests.controlplane.fixtures import Kubectl, OperatorAccount
from tests.integration.gitops_world import terminate, wait_until
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
MANAGER = "slurm-reconciler"


def workflow(name: str, *, cluster: str, script: str) -> str:
    return f"""\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {{name: {name}}}
spec:
  cluster: {cluster}
  defaults:
    resources: {{partition: debug, time: "00:05:00", memory: 20M}}
  tasks:
    - {{name: step, script: {script!r}}}
"""


def cluster_manifest(dev_cluster: DevCluster, transport: str, *, name: str, **ssh: Any) -> str:
    """The dev cluster's SlurmCluster (named ``name``, its ssh settings changed by ``ssh``), for
    the test's namespace."""
    cluster = YAML(typ="safe").load(dev_cluster.manifest_path(transport).read_text())
    cluster["metadata"] = {"name": name}
    if ssh:
        cluster["spec"]["ssh"].update(ssh)
    stream = io.StringIO()
    YAML(typ="safe").dump(cluster, stream)
    return stream.getvalue()


@pytest.fixture
def operator(operator_account: OperatorAccount, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """``reconciler operator`` watching the test's namespace, as the chart's ServiceAccount."""
    log = tmp_path / "operator.log"
    with open(log, "w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "operator", "--kubeconfig", str(operator_account.kubeconfig),
             "--namespace", operator_account.namespace, "--state-dir", str(tmp_path / "state"), "--interval", "1"],
            cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "RECONCILER_LOG_LEVEL": "INFO"})
    try:
        yield process
    finally:
        terminate(process)
        if process.returncode not in (0, None):
            print(log.read_text()[-4000:])


def waited(kubectl: Kubectl, kind: str, name: str, predicate: Callable[[dict[str, Any]], bool], *,
           timeout: float, what: str) -> dict[str, Any]:
    def met() -> dict[str, Any] | None:
        found = kubectl.get(kind, name)
        return found if found is not None and predicate(found) else None

    return wait_until(met, timeout=timeout, what=f"{kind} {name}: {what}", every=0.3)  # type: ignore[no-any-return]


def ready(obj: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == "Ready"), {})


def status_owner(kubectl: Kubectl, kind: str, name: str) -> dict[str, Any]:
    """The managedFields entry of the operator's writes to the object's status subresource."""
    obj = json.loads(kubectl("get", kind, name, "-o", "json", "--show-managed-fields").stdout)
    [entry] = [e for e in obj["metadata"]["managedFields"] if e["manager"] == MANAGER and e.get("subresource")]
    return entry  # type: ignore[no-any-return]


def test_status_is_applied_and_the_cluster_shows_what_the_operator_saw(
        kubectl: Kubectl, dev_cluster: DevCluster, operator: subprocess.Popen[str]):
    kubectl.apply(cluster_manifest(dev_cluster, "local", name="dev"))
    kubectl.apply(workflow("nap", cluster="dev", script="sleep 4"))

    running = waited(kubectl, "slurmcluster", "dev", lambda c: (c.get("status") or {}).get("runningJobs") == 1,
                     timeout=20, what="one job of ours running")
    waited(kubectl, "workflow", "nap", lambda w: (w.get("status") or {}).get("phase") == "Succeeded", timeout=20,
           what="Succeeded")
    idle = waited(kubectl, "slurmcluster", "dev", lambda c: (c.get("status") or {}).get("runningJobs") == 0,
                  timeout=10, what="no job of ours running")

    # The status is the operator's, written by server-side apply to the status subresource.
    owner = status_owner(kubectl, "workflow", "nap")
    assert (owner["operation"], owner["subresource"]) == ("Apply", "status"), owner
    assert "f:status" in owner["fieldsV1"] and "f:spec" not in owner["fieldsV1"], owner
    owner = status_owner(kubectl, "slurmcluster", "dev")
    assert (owner["operation"], owner["subresource"]) == ("Apply", "status"), owner

    # What the cluster's status says is what Slurm says.
    spec = dev_cluster.cluster("local")
    client = SlurmClient(spec, open_transport(spec.spec, private_key=None))
    try:
        limits = client.info().limits
    finally:
        client.close()
    assert limits is not None and limits.slurm_version
    status = idle["status"]
    assert (status["slurmVersion"], status["maxArraySize"], status["queuedJobs"]) == (
        limits.slurm_version, limits.max_array_size, 0)
    assert {"name": "debug", "state": "UP"} in status["partitions"]
    assert (ready(idle)["status"], ready(idle)["reason"]) == ("True", "Reachable")
    assert status["observedGeneration"] == idle["metadata"]["generation"]
    assert ready(running)["lastTransitionTime"] == ready(idle)["lastTransitionTime"]  # Ready did not flip

    # A status field someone else set (a hand edit, or a write from before server-side apply) is
    # not the operator's to keep: its next write removes it.
    kubectl("patch", "workflow", "nap", "--subresource=status", "--type=merge",
            "-p", '{"status": {"revision": "by-hand", "phase": "Running"}}')
    waited(kubectl, "workflow", "nap", lambda w: w["status"]["phase"] == "Succeeded" and "revision" not in w["status"],
           timeout=10, what="the hand edit undone")

    table = kubectl("get", "slurmclusters").stdout
    assert re.search(r"^NAME\s+READY\s+VERSION\s+QUEUED\s+RUNNING\s+TRANSPORT\s+AGE$", table, re.M), table
    assert re.search(rf"^dev\s+True\s+{re.escape(limits.slurm_version)}\s+0\s+0\s+local\s+\S+$", table, re.M), table


def test_a_cluster_the_operator_cannot_reach_is_not_ready_and_says_why(
        kubectl: Kubectl, dev_cluster: DevCluster, operator: subprocess.Popen[str]):
    closed = free_port()
    kubectl.apply(cluster_manifest(dev_cluster, "ssh", name="gone", host="127.0.0.1", port=closed))
    kubectl.apply(workflow("stranded", cluster="gone", script="true"))

    gone = waited(kubectl, "slurmcluster", "gone", lambda c: ready(c).get("status") == "False", timeout=20,
                  what="Ready=False")

    condition = ready(gone)
    # An ssh connection is opened by the first command: the tick's squeue is what fails.
    assert condition["reason"] == "Unreachable", condition
    assert f"Unable to connect to port {closed} on 127.0.0.1" in condition["message"], condition
    assert "queuedJobs" not in gone["status"] and "runningJobs" not in gone["status"]
    wide = kubectl("get", "slurmclusters", "-o", "wide").stdout
    assert re.search(rf"^gone\s+False\s+ssh\s+\S+\s+\S+\s+squeue on ssh \S+@127.0.0.1:{closed}: ", wide, re.M), wide

