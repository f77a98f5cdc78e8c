"""Kubernetes mode end to end, on the real control plane (a pytest plugin, loaded by
tests/conftest.py).

The fixture ``kube_world`` gives a test a namespace of its own with the dev cluster's local
SlurmCluster (named dev) in it, the chart's ServiceAccount and RBAC, the pinned kubectl as the
cluster admin in that namespace (with waits on a Workflow's status), and a way to start
``reconciler operator`` processes: every one watches that namespace only, keeps its Lease there
and runs as the ServiceAccount, never as admin, so a call its Role does not grant fails as it
would in production. Operators a test leaves running are stopped after it.
"""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from reconciler.devcluster import DevCluster
from tests.controlplane import fixtures
from tests.controlplane.fixtures import OperatorAccount
from tests.controlplane.server import ControlPlane
from tests.integration.gitops_world import terminate, unique, wait_until
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
# The operator's user agent: "slurm-reconciler/<version> (<identity>)".
OPERATOR_AGENT = "slurm-reconciler/"


class Kubectl(fixtures.Kubectl):
    """The admin's kubectl in the test's namespace, and what a test waits for through it."""

    def status(self, name: str) -> dict[str, Any]:
        return (self.get("workflow", name) or {}).get("status") or {}

    def wait_for(self, name: str, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = 180,
                 what: str = "condition", operators: tuple[Operator, ...] = ()) -> dict[str, Any]:
        """The Workflow's status once ``predicate`` holds for it (its operators' logs otherwise)."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status(name)
            if status and predicate(status):
                return status
            time.sleep(0.3)
        logs = "\n".join(op.log.read_text()[-3000:] for op in operators if op.log.exists())
        raise AssertionError(f"{name}: {what} not reached in {timeout}s; status {json.dumps(status, indent=1)}\n{logs}")

    def watch_until(self, *args: str, until: Callable[[str], bool], timeout: float = 120) -> list[str]:
        """Run ``kubectl <args>`` (a ``-w`` watch) and read its lines until one satisfies ``until``;
        every line read, that one last. The watch is stopped either way."""
        process = subprocess.Popen([str(self.binary), "--kubeconfig", str(self.kubeconfig), "-n", self.namespace,
                                    *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    line = lines.get(timeout=left)
                except queue.Empty:
                    break
                if line is None:
                    break
                seen.append(line)
                if until(line):
                    return seen
        finally:
            process.kill()
            _, errors = process.communicate(timeout=30)
        raise AssertionError(f"kubectl {' '.join(args)}: no line wanted in {timeout}s; read:\n"
                             + "\n".join(seen) + f"\n{errors}")


class Operator:
    """``reconciler operator`` as its own process, watching one namespace as its ServiceAccount."""

    def __init__(self, *, kubeconfig: Path, namespace: str, state_dir: Path, identity: str,
                 interval: float = 0.5) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.state_dir = state_dir
        self.identity = identity
        self.interval = interval
        self.metrics_port = free_port()
        self.log = state_dir.parent / f"{identity}.log"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> Operator:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        output = open(self.log, "a")  # noqa: SIM115 - the child writes to it for its whole life
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "operator", "--kubeconfig", str(self.kubeconfig),
             "--namespace", self.namespace, "--state-dir", str(self.state_dir), "--interval", str(self.interval),
             "--metrics-port", str(self.metrics_port), "--identity", self.identity],
            cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "RECONCILER_LOG_LEVEL": "INFO"})
        output.close()
        return self

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as answer:
            return str(answer.read().decode())

    def metric(self, name: str) -> float | None:
        try:
            text = self.metrics()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith((name + " ", name + "{")):
                return float(line.rsplit(" ", 1)[1])
        return None

    def leading(self) -> bool:
        return self.metric("reconciler_leader") == 1.0

    def ticks(self) -> int:
        """Ticks this replica has finished; a tick counts once its statuses are written."""
        value = self.metric("reconciler_ticks_total")
        if value is None:
            raise AssertionError(f"operator {self.identity} shows no tick count on its metrics port")
        return int(value)

    def later_ticks(self, count: int = 1, *, timeout: float = 60.0) -> None:
        """Returns once ``count`` whole ticks that began after this call have finished (the tick
        under way at the call is not one of them)."""
        start = self.ticks()
        wait_until(lambda: self.ticks() >= start + 1 + count, timeout=timeout,
                   what=f"{count} more ticks of operator {self.identity}", every=0.1)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> int | None:
        return terminate(self.process)


@dataclass
class KubeWorld:
    plane: ControlPlane
    namespace: str
    kubectl: Kubectl
    account: OperatorAccount
    directory: Path
    workdir: Path  # the local SlurmCluster's working directory
    operators: list[Operator] = field(default_factory=list)

    def operator(self, *, state_dir: Path | None = None, identity: str | None = None) -> Operator:
        """A started operator; a fresh state directory and identity unless given."""
        identity = identity or unique("op")
        started = Operator(kubeconfig=self.account.kubeconfig, namespace=self.namespace,
                           state_dir=state_dir or self.directory / identity, identity=identity).start()
        self.operators.append(started)
        return started

    def run_dir(self, name: str) -> Path:
        """Where the dev cluster runs a Workflow of this namespace."""
        return self.workdir / self.namespace / name

    def operator_calls(self, resource: str | None = None, *, verb: str | None = None,
                       identity: str | None = None) -> list[dict[str, Any]]:
        """The audit log's finished requests of this namespace's operators (of one replica, with
        ``identity``), of every resource or of one ("workflows", "workflows/status", "leases",
        ...); each event gets that name of its resource as ``resource``, and its API group ("" for
        the core group) as ``apiGroup``."""
        user = f"system:serviceaccount:{self.namespace}:{self.account.service_account}"
        agent = f"({identity})" if identity else ""
        found = []
        for event in self.plane.audit_events():
            ref = event.get("objectRef") or {}
            named = ref.get("resource", "") + ("/" + ref["subresource"] if ref.get("subresource") else "")
            if (event.get("stage") == "ResponseComplete" and event["user"].get("username") == user
                    and event.get("userAgent", "").startswith(OPERATOR_AGENT)
                    and event["userAgent"].endswith(agent) and resource in (None, named)
                    and verb in (None, event.get("verb"))):
                found.append({**event, "resource": named, "apiGroup": ref.get("apiGroup", "")})
        return found


def cluster_manifest(dev_cluster: DevCluster, namespace: str) -> str:
    """The dev cluster's local SlurmCluster, placed in ``namespace``."""
    cluster = YAML(typ="safe").load(dev_cluster.manifest_path("local").read_text())
    cluster["metadata"]["namespace"] = namespace
    stream = io.StringIO()
    YAML(typ="safe").dump(cluster, stream)
    return stream.getvalue()


@pytest.fixture
def kube_world(control_plane: ControlPlane, kube_namespace: str, operator_account: OperatorAccount,
               dev_cluster: DevCluster, tmp_path: Path) -> Iterator[KubeWorld]:
    kubectl = Kubectl(control_plane.admin_kubeconfig, kube_namespace)
    kubectl.apply(cluster_manifest(dev_cluster, kube_namespace))
    world = KubeWorld(plane=control_plane, namespace=kube_namespace, kubectl=kubectl, account=operator_account,
                      directory=tmp_path, workdir=Path(dev_cluster.cluster("local").spec.workdir))
    yield world
    for operator in world.operators:
        operator.stop()
