"""Pytest fixtures over the real control plane (a pytest plugin, loaded by tests/conftest.py).

* ``control_plane`` (session): etcd and kube-apiserver built (before the first test, when a
  selected test needs them) and started once per run, the
  project's CRDs applied from ``crds/`` (the files users apply), stopped at the end;
* ``kube_namespace``: a namespace of its own per test, so tests never see each other's objects
  (the namespace is deleted afterwards; nothing waits for that);
* ``kubectl``: the pinned kubectl as the cluster admin, its default namespace the test's;
* ``operator_account``: the chart's own ServiceAccount and RBAC (``helm template`` of the
  watch-one-namespace variant, applied with kubectl) in the test's namespace, and a kubeconfig
  holding that ServiceAccount's token: the identity the operator runs as in production.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .build import binaries
from .server import ControlPlane
from .tools import helm_binary, kubectl_binary

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "slurm-reconciler"
# The chart's release name in the tests, hence the ServiceAccount, Role and Lease names.
RELEASE = "slurm-reconciler"
# The chart's templates that make the operator's identity: its ServiceAccount, its Role, and the
# Roles reading named Secrets (which render nothing unless the values name a Secret).
ACCOUNT_TEMPLATES = ("serviceaccount.yaml", "rbac.yaml", "secret-access.yaml")


class Kubectl:
    """The pinned kubectl with one kubeconfig and a default namespace."""

    def __init__(self, kubeconfig: Path, namespace: str = "default") -> None:
        self.binary = kubectl_binary()
        self.kubeconfig = kubeconfig
        self.namespace = namespace

    def __call__(self, *args: str, check: bool = True, stdin: str | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(self.binary), "--kubeconfig", str(self.kubeconfig), "-n", self.namespace, *args],
                              input=stdin, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr}{done.stdout}")
        return done

    def apply(self, manifest: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self("apply", "-f", "-", stdin=manifest, check=check)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        done = self("get", kind, name, "-o", "json", check=False)
        return json.loads(done.stdout) if done.returncode == 0 else None


def helm_template(*args: str, namespace: str, timeout: float = 60) -> str:
    done = subprocess.run([str(helm_binary()), "template", RELEASE, str(CHART), "--namespace", namespace, *args],
                          capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise AssertionError(f"helm template failed ({done.returncode}): {done.stderr}")
    return done.stdout


# The tests that run the operator (those using ``operator_account``, the identity it runs as), as
# collected before -k, -m or --deselect left any out: what the audit of its calls must know to
# tell a whole run from part of one.
OPERATOR_TESTS = pytest.StashKey[frozenset[str]]()
OPERATOR_FIXTURE = "operator_account"


@pytest.hookimpl(tryfirst=True)  # before -k, -m and --deselect
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    config.stash[OPERATOR_TESTS] = frozenset(
        item.nodeid for item in items if OPERATOR_FIXTURE in getattr(item, "fixturenames", ()))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the control plane before the first test when any selected test needs it, so the
    first build (minutes on a fresh machine) counts against no test's timeout."""
    if any("control_plane" in getattr(item, "fixturenames", ()) for item in session.items):
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        started = time.monotonic()
        built = binaries()
        if reporter is not None and time.monotonic() - started > 1:
            reporter.write_line(f"built the test control plane in {time.monotonic() - started:.0f} s: "
                                f"{built.kube_apiserver.parent}")


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(binaries(), tmp_path_factory.mktemp("controlplane")).start()
    try:
        Kubectl(plane.admin_kubeconfig)("apply", "-f", str(ROOT / "crds"))
        for crd in ("workflows", "workflowtemplates", "slurmclusters"):
            Kubectl(plane.admin_kubeconfig)("wait", "--for=condition=Established", "--timeout=60s",
                                            f"crd/{crd}.hpc.reconciler.dev")
        yield plane
    finally:
        plane.stop()


@contextmanager
def fresh_namespace(plane: ControlPlane) -> Iterator[str]:
    """A namespace no other test uses, deleted on exit (without waiting for it to go)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    admin = Kubectl(plane.admin_kubeconfig)
    admin("create", "namespace", name)
    try:
        yield name
    finally:
        admin("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def kube_namespace(control_plane: ControlPlane) -> Iterator[str]:
    with fresh_namespace(control_plane) as name:
        yield name


@pytest.fixture
def kubectl(control_plane: ControlPlane, kube_namespace: str) -> Kubectl:
    return Kubectl(control_plane.admin_kubeconfig, kube_namespace)


@dataclass(frozen=True)
class OperatorAccount:
    namespace: str
    service_account: str
    kubeconfig: Path  # holds the ServiceAccount's token


def install_operator_account(plane: ControlPlane, namespace: str, directory: Path,
                             *values: str) -> OperatorAccount:
    """The chart's ServiceAccount and RBAC for an operator watching ``namespace`` (plus any
    helm arguments in ``values``, e.g. ``"--set", "secretAccess[0].name=key"`` for the Secrets it
    may read), applied as admin, and a kubeconfig with a token of that ServiceAccount. Called
    again in the same namespace, it applies what these values render over what is there (e.g.
    one more Secret named) and makes a new token."""
    admin = Kubectl(plane.admin_kubeconfig, namespace)
    # Filtered by source rather than with --show-only, which fails on a template rendering nothing.
    rendered = helm_template("--set", "watch.allNamespaces=false", *values, namespace=namespace)
    sources = tuple(f"# Source: {CHART.name}/templates/{name}\n" for name in ACCOUNT_TEMPLATES)
    admin.apply("---\n".join(doc for doc in re.split(r"^---\n", rendered, flags=re.MULTILINE)
                             if doc.startswith(sources)))
    token = admin("create", "token", RELEASE, "--duration", "24h").stdout.strip()
    kubeconfig = plane.kubeconfig_for_token(token, directory / f"{namespace}-operator.kubeconfig", namespace=namespace)
    return OperatorAccount(namespace=namespace, service_account=RELEASE, kubeconfig=kubeconfig)


@pytest.fixture
def operator_account(control_plane: ControlPlane, kube_namespace: str, tmp_path: Path) -> OperatorAccount:
    return install_operator_account(control_plane, kube_namespace, tmp_path)

