"""The Helm chart (charts/slurm-reconciler) on the real API server: ``helm install`` creates every
object it renders, the server validating each (no pod runs: the control plane has no nodes, so
nothing waits for one), and ``helm uninstall`` removes them; ``helm template`` piped to
``kubectl apply --dry-run=server`` passes for the default values and with the ServiceMonitor.

The ServiceMonitor's CRD is the Prometheus Operator's own, read from its Go module at a pinned
version through the Go module proxy (the way the control plane itself is obtained) and checked
against the module's pinned hash; nothing of it is committed here. It is installed once per run
and left there: it is cluster-wide and the same for every test.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from tests.controlplane.fixtures import CHART, Kubectl, helm_template
from tests.controlplane.server import ControlPlane
from tests.controlplane.tools import helm_binary

PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator"
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
# The module's hash as go.sum would hold it: compared here because the checksum database
# (sum.golang.org) is not reachable from every machine that reaches the proxy.
PROMETHEUS_OPERATOR_SUM = "h1:M5xLCLEoaW2IJfnuCwFzzpL+jSVQu3KGT84Pye+fW8s="
SERVICE_MONITOR_CRD = "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"


def helm(*args: str, kubeconfig: Path, home: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # Helm's own config, cache and data directories in the test's, so no run reads another's.
    env = {**os.environ, "HELM_CONFIG_HOME": str(home / "config"), "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_DATA_HOME": str(home / "data")}
    return subprocess.run([str(helm_binary()), "--kubeconfig", str(kubeconfig), *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def service_monitor_crd(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The ServiceMonitor CRD, installed (idempotently) on the control plane; its name."""
    # Outside any Go module, so only the module cache and the proxy are involved; the hash check
    # below stands in for the checksum database.
    done = subprocess.run(["go", "mod", "download", "-json", f"{PROMETHEUS_OPERATOR}@{PROMETHEUS_OPERATOR_VERSION}"],
                          cwd=tmp_path_factory.mktemp("gomod"), env={**os.environ, "GOSUMDB": "off"},
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"go mod download failed: {done.stderr}{done.stdout}"
    module = json.loads(done.stdout)
    assert module["Sum"] == PROMETHEUS_OPERATOR_SUM, f"{PROMETHEUS_OPERATOR}@{PROMETHEUS_OPERATOR_VERSION}: {module}"
    admin = Kubectl(control_plane.admin_kubeconfig)
    admin("apply", "--server-side", "-f", str(Path(module["Dir"]) / SERVICE_MONITOR_CRD))
    admin("wait", "--for=condition=Established", "--timeout=60s", "crd/servicemonitors.monitoring.coreos.com")
    return "servicemonitors.monitoring.coreos.com"


def test_helm_install_creates_the_operator_and_uninstall_removes_it(control_plane: ControlPlane,
                                                                    kubectl: Kubectl, kube_namespace: str,
                                                                    tmp_path: Path):
    # A release name of its own: the ClusterRole and ClusterRoleBinding are cluster-wide.
    release = f"chart-{uuid.uuid4().hex[:8]}"
    fullname = f"{release}-slurm-reconciler"
    args = [release, str(CHART), "--namespace", kube_namespace, "--set", "secretAccess[0].name=hpc1-ssh"]
    rendered = helm("template", *args, kubeconfig=control_plane.admin_kubeconfig, home=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    objects = [(doc["kind"], doc["metadata"]["name"]) for doc in yaml.safe_load_all(rendered.stdout) if doc]
    assert {kind for kind, _ in objects} == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                                             "RoleBinding", "Service", "Deployment"}, objects

    installed = helm("install", *args, kubeconfig=control_plane.admin_kubeconfig, home=tmp_path)
    # The chart's CRDs are the session's (crds/): Helm leaves existing CRDs alone.
    assert installed.returncode == 0, installed.stderr
    assert "STATUS: deployed" in installed.stdout, installed.stdout
    missing = [(kind, name) for kind, name in objects if kubectl.get(kind, name) is None]
    assert not missing, f"rendered but not installed: {missing}"
    deployment = kubectl.get("deployment", fullname)
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == fullname
    [rule] = (kubectl.get("role", f"{fullname}-secrets") or {})["rules"]
    assert rule["resourceNames"] == ["hpc1-ssh"]
    record = ["get", "secrets", "-l", f"owner=helm,name={release}", "-o", "name"]
    assert kubectl(*record).stdout.strip(), "no Helm release record"

    removed = helm("uninstall", release, "--namespace", kube_namespace,
                   kubeconfig=control_plane.admin_kubeconfig, home=tmp_path)
    assert removed.returncode == 0, removed.stderr
    left = [(kind, name) for kind, name in objects if kubectl.get(kind, name) is not None]
    assert not left, f"left after helm uninstall: {left}"
    # Helm's record of the release went with it.
    assert not kubectl(*record).stdout.strip()


@pytest.mark.parametrize("values", [[], ["--set", "serviceMonitor.enabled=true"]],
                         ids=["defaults", "service-monitor"])
def test_rendered_chart_passes_a_server_side_dry_run(request: pytest.FixtureRequest, kubectl: Kubectl,
                                                     kube_namespace: str, values: list[str]):
    if values:
        request.getfixturevalue("service_monitor_crd")
    rendered = helm_template(*values, namespace=kube_namespace)
    done = kubectl("apply", "--dry-run=server", "-f", "-", stdin=rendered)
    applied = done.stdout.splitlines()
    assert all(line.endswith("(server dry run)") for line in applied), done.stdout
    kinds = {line.split("/")[0] for line in applied}
    expected = {"serviceaccount", "service", "deployment.apps", "clusterrole.rbac.authorization.k8s.io",
                "clusterrolebinding.rbac.authorization.k8s.io"}
    if values:
        expected.add("servicemonitor.monitoring.coreos.com")
    assert kinds == expected, done.stdout
    # A dry run: the server checked everything and kept nothing.
    assert kubectl("get", "deployments,services,serviceaccounts", "-o", "name").stdout.strip() \
        in ("", "serviceaccount/default")
