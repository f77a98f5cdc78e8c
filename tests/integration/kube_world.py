"""A Kubernetes-mode world: the test API server, the pinned kubectl, and operator processes."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from reconciler.devcluster import DevCluster
from tests.integration.gitops_world import terminate, wait_until
from tests.kube.apiserver import ApiServer
from tests.kube.tools import kubectl_binary

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Kubectl:
    def __init__(self, binary: Path, kubeconfig: Path) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig

    def __call__(self, *args: str, check: bool = True, stdin: str | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(self.binary), "--kubeconfig", str(self.kubeconfig), *args], input=stdin,
                              capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr}{done.stdout}")
        return done

    def apply(self, manifest: str) -> subprocess.CompletedProcess[str]:
        return self("apply", "-f", "-", stdin=manifest)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        done = self("get", kind, name, "-o", "json", check=False)
        return json.loads(done.stdout) if done.returncode == 0 else None

    def status(self, name: str) -> dict[str, Any]:
        return (self.get("workflow", name) or {}).get("status") or {}

    def wait_for(self, name: str, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = 180,
                 what: str = "condition", operators: tuple[Operator, ...] = ()) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status(name)
            if status and predicate(status):
                return status
            time.sleep(0.5)
        logs = "\n".join(op.log.read_text()[-3000:] for op in operators if op.log.exists())
        raise AssertionError(f"{name}: {what} not reached in {timeout}s; status {json.dumps(status, indent=1)}\n{logs}")


class Operator:
    """``reconciler operator`` as its own process."""

    def __init__(self, *, kubeconfig: Path, state_dir: Path, identity: str, interval: float = 1.0) -> None:
        self.kubeconfig = kubeconfig
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
             "--namespace", "default", "--state-dir", str(self.state_dir), "--interval", str(self.interval),
             "--metrics-port", str(self.metrics_port), "--identity", self.identity],
            cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "RECONCILER_LOG_LEVEL": "INFO"})
        return self

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as answer:
            return answer.read().decode()

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
                   what=f"{count} more ticks of operator {self.identity}", every=0.2)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> int | None:
        return terminate(self.process)



@contextmanager
def control_plane(directory: Path, dev_cluster: DevCluster) -> Iterator[tuple[ApiServer, Kubectl]]:
    """The test API server, with the CRDs and the dev cluster's local SlurmCluster (in namespace
    default) applied, and the pinned kubectl that talks to it; the server stops on exit."""
    server = ApiServer()
    server.start()
    try:
        kubectl = Kubectl(kubectl_binary(), server.kubeconfig(directory / "config"))
        kubectl("apply", "-f", str(ROOT / "crds"))
        cluster = YAML(typ="safe").load(dev_cluster.manifest_path("local").read_text())
        cluster["metadata"]["namespace"] = "default"
        stream = io.StringIO()
        YAML(typ="safe").dump(cluster, stream)
        kubectl.apply(stream.getvalue())
        yield server, kubectl
    finally:
        server.stop()
