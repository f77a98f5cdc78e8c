"""The Helm chart (charts/slurm-reconciler) and the operator image's Dockerfile.

The chart is linted and rendered by a real helm binary; every rendered object is validated
against the Kubernetes 1.32 API schemas (kubernetes-validate), or, for the custom resources,
against the chart's own CRDs and the project's models. The RBAC rules it grants are compared
with reconciler.kube.permissions.RULES, the list the operator's API calls are held to: the
Role or ClusterRole grants them all but the Secrets rule, which per-namespace Roles grant for
named Secrets only. (tests/integration/test_kube_chart.py installs the chart on a real API
server.)

No Docker engine is needed: the Dockerfile is checked statically (base image, user, entrypoint,
and that everything it copies exists and is inside the build context).
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from reconciler.api import SlurmCluster
from reconciler.kube.permissions import RULES
from tests.controlplane.tools import helm_binary

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "slurm-reconciler"
DOCKERFILE = ROOT / "Dockerfile"
KUBERNETES_VERSION = "1.32.0"
RELEASE = "hpc"
RELEASE_NAMESPACE = "ops"
FULLNAME = "hpc-slurm-reconciler"


@functools.cache
def helm() -> str:
    # The pinned helm v3.17.2 that the Kubernetes-mode tests use too (tests/controlplane/tools.py).
    return str(helm_binary())


def run_helm(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm(), *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


# --- rendering --------------------------------------------------------------------------------

SSH_CLUSTER = {
    "name": "hpc1",
    "labels": {"site": "north"},
    "spec": {
        "transport": "ssh",
        "ssh": {"host": "login.hpc.example.org", "user": "svc_reconciler", "keySecretRef": "hpc1-ssh"},
        "workdir": "/scratch/svc_reconciler/reconciler",
        "capacity": {"maxSubmittedJobs": 200, "maxCores": 4096},
        "partitions": [{"name": "gpu", "costPerCoreHour": 0.5}],
    },
}
LOCAL_CLUSTER = {"name": "dev", "namespace": "sandbox", "spec": {"transport": "local", "workdir": "/work"}}
PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
KNOWN_HOSTS = "login.hpc.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample\n"

SCENARIOS: dict[str, dict] = {
    "defaults": {},
    "one-namespace": {"watch": {"allNamespaces": False, "namespace": "x"}},
    "release-namespace": {"watch": {"allNamespaces": False}},
    "service-monitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "kept-state": {"state": {"existingClaim": "reconciler-state"}},
    "grafana-dashboard": {"grafanaDashboard": {"enabled": True, "namespace": "monitoring",
                                               "annotations": {"grafana_folder": "HPC"}},
                          "metrics": {"groupLabel": "team"}},
    "clusters": {
        "watch": {"allNamespaces": False, "namespace": "hpc-team"},
        "slurmClusters": [SSH_CLUSTER, LOCAL_CLUSTER],
        "sshSecrets": [{"name": "hpc1-ssh", "privateKey": PRIVATE_KEY, "knownHosts": KNOWN_HOSTS}],
    },
    # Every namespace watched, the keys named three ways: by a SlurmCluster from values (in the
    # release namespace), by an sshSecrets entry of its own namespace, and in secretAccess.
    "secrets-all-namespaces": {
        "slurmClusters": [SSH_CLUSTER, LOCAL_CLUSTER],
        "sshSecrets": [{"name": "north-ssh", "namespace": "north", "privateKey": PRIVATE_KEY}],
        "secretAccess": [{"name": "hpc1-ssh"}, {"name": "south-ssh", "namespace": "south"},
                         {"name": "hpc2-ssh"}],
    },
}


@functools.cache
def _render(values_json: str) -> tuple[dict, ...]:
    result = run_helm("template", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE, "-f", "-",
                      stdin=values_json)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(values: dict) -> list[dict]:
    """The chart's manifests for these values, as fresh dicts (a test may change its copy)."""
    return copy.deepcopy(list(_render(json.dumps(values, sort_keys=True))))


def the(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


# --- lint and render --------------------------------------------------------------------------


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
@pytest.mark.parametrize("scenario", ["defaults", "one-namespace", "clusters", "grafana-dashboard",
                                      "secrets-all-namespaces"])
def test_helm_lint_passes(strict: bool, scenario: str):
    args = ["lint", str(CHART), "--namespace", RELEASE_NAMESPACE, "-f", "-"] + (["--strict"] if strict else [])
    result = run_helm(*args, stdin=json.dumps(SCENARIOS[scenario]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_renders_the_operator_and_its_access(scenario: str):
    docs = render(SCENARIOS[scenario])
    kinds = sorted(d["kind"] for d in docs)
    assert kinds.count("Deployment") == 1
    assert kinds.count("ServiceAccount") == 1
    assert kinds.count("Service") == 1
    operator_roles = [d for d in docs if d["kind"] in ("Role", "ClusterRole") and d["metadata"]["name"] == FULLNAME]
    assert len(operator_roles) == 1
    for doc in docs:
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"].get("namespace"), f"{doc['kind']} {doc['metadata']['name']} has no namespace"


def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the OpenAPI schema of the chart's CRDs."""
    schemas = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_manifest_validates_against_kubernetes_1_32(scenario: str):
    custom = crd_schemas()
    for doc in render(SCENARIOS[scenario]):
        key = (doc["apiVersion"], doc["kind"])
        if key in custom:
            # A CRD schema is OpenAPI v3.0, whose validation keywords are JSON Schema draft 4's.
            jsonschema.Draft4Validator(custom[key]).validate(doc)
        elif doc["apiVersion"] == "monitoring.coreos.com/v1":
            continue  # the Prometheus Operator's kind; its shape is checked in its own test
        else:
            # strict: an unknown field (a typo in a template) fails too.
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_chart_crds_are_valid_custom_resource_definitions():
    for path in sorted((CHART / "crds").glob("*.yaml")):
        kubernetes_validate.validate(yaml.safe_load(path.read_text()), KUBERNETES_VERSION, strict=True)


def test_the_store_is_kept_on_a_named_claim_else_on_an_empty_dir():
    def state_volume(values: dict) -> dict:
        pod = the(render(values), "Deployment")["spec"]["template"]["spec"]
        [volume] = [v for v in pod["volumes"] if v["name"] == "state"]
        return volume

    assert state_volume(SCENARIOS["defaults"]) == {"name": "state", "emptyDir": {}}
    assert state_volume(SCENARIOS["kept-state"]) == {"name": "state",
                                                     "persistentVolumeClaim": {"claimName": "reconciler-state"}}


def test_values_schema_rejects_a_misspelt_key_and_a_contradiction():
    typo = run_helm("template", RELEASE, str(CHART), "--set", "watch.allNamespace=false")
    assert typo.returncode != 0 and "allNamespace" in typo.stderr
    both = run_helm("template", RELEASE, str(CHART), "--set", "watch.namespace=x")
    assert both.returncode != 0 and "watch.allNamespaces" in both.stderr
    no_key = run_helm("template", RELEASE, str(CHART), "-f", "-", stdin=json.dumps({"sshSecrets": [{"name": "k"}]}))
    assert no_key.returncode != 0 and "privateKey" in no_key.stderr


# --- the CRDs ---------------------------------------------------------------------------------


def test_chart_crds_are_the_repository_crds_byte_for_byte():
    # tests/unit/test_crds.py keeps crds/ equal to the models; this keeps the chart's copy equal
    # to crds/ (Helm installs a chart's crds/ before its templates, and never upgrades them).
    repository = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").iterdir()}
    hint = "charts/slurm-reconciler/crds/ is out of date: cp crds/*.yaml charts/slurm-reconciler/crds/"
    assert sorted(chart) == sorted(repository), hint
    for name, content in repository.items():
        assert chart[name] == content, f"{name}: {hint}"


# --- RBAC ---------------------------------------------------------------------------------------


def expanded(rules: list[dict], *, by_name: bool = False) -> list[tuple[str, str, tuple[str, ...]]]:
    """Rendered policy rules as (group, resource, verbs), refusing anything RULES cannot say;
    ``by_name``: each rule must name its objects (resourceNames), and names only."""
    out = []
    for rule in rules:
        keys = {"apiGroups", "resources", "verbs"} | ({"resourceNames"} if by_name else set())
        assert set(rule) == keys, f"unexpected keys in {rule}"
        if by_name:
            assert rule["resourceNames"] and "" not in rule["resourceNames"], rule
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {rule}"
        out += [(group, resource, tuple(rule["verbs"]))
                for group in rule["apiGroups"] for resource in rule["resources"]]
    return out


EXPECTED_RULES = [(rule.api_group, rule.resource, rule.verbs) for rule in RULES]
# What the operator reads only by name, in the object's namespace: granted per namespace with
# resourceNames (templates/secret-access.yaml), never by the operator's Role or ClusterRole.
BY_NAME = {("", "secrets")}
EXPECTED_BY_NAME = [r for r in EXPECTED_RULES if r[:2] in BY_NAME]
EXPECTED_OPERATOR_ROLE = [r for r in EXPECTED_RULES if r[:2] not in BY_NAME]


def test_rules_read_by_name_are_rules_of_the_operator():
    # Otherwise BY_NAME would silently split nothing off and the comparisons below would be weaker.
    assert sorted(r[:2] for r in EXPECTED_BY_NAME) == sorted(BY_NAME)


def secret_roles(docs: list[dict]) -> dict[str, list[str]]:
    """Namespace -> the Secret names the per-namespace Role there grants, checking that each such
    Role is bound to the operator's ServiceAccount and grants RULES' secrets rule and no more."""
    granted = {}
    for role in of_kind(docs, "Role"):
        if role["metadata"]["name"] != f"{FULLNAME}-secrets":
            continue
        namespace = role["metadata"]["namespace"]
        assert expanded(role["rules"], by_name=True) == EXPECTED_BY_NAME
        [rule] = role["rules"]
        granted[namespace] = rule["resourceNames"]
        [binding] = [b for b in of_kind(docs, "RoleBinding")
                     if b["metadata"]["name"] == role["metadata"]["name"] and b["metadata"]["namespace"] == namespace]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": role["metadata"]["name"]}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": RELEASE_NAMESPACE}]
    return granted


def test_cluster_role_grants_exactly_the_operator_rules():
    docs = render(SCENARIOS["defaults"])
    assert not of_kind(docs, "Role") and not of_kind(docs, "RoleBinding")
    role = the(docs, "ClusterRole")
    assert expanded(role["rules"]) == EXPECTED_OPERATOR_ROLE
    binding = the(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    account = the(docs, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": RELEASE_NAMESPACE}]


@pytest.mark.parametrize(("scenario", "watched"), [("one-namespace", "x"), ("release-namespace", RELEASE_NAMESPACE)])
def test_role_grants_exactly_the_operator_rules_in_the_watched_namespace(scenario: str, watched: str):
    docs = render(SCENARIOS[scenario])
    assert not of_kind(docs, "ClusterRole") and not of_kind(docs, "ClusterRoleBinding")
    role = the(docs, "Role", FULLNAME)
    assert role["metadata"]["namespace"] == watched
    assert expanded(role["rules"]) == EXPECTED_OPERATOR_ROLE
    binding = the(docs, "RoleBinding", FULLNAME)
    assert binding["metadata"]["namespace"] == watched
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": FULLNAME}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": RELEASE_NAMESPACE}]
    # The leader-election Lease is kept in the pods' own namespace: when that is not the watched
    # one, a second Role there grants the lease rule (one of RULES) and nothing else.
    others = [r for r in of_kind(docs, "Role") if r is not role]
    if watched == RELEASE_NAMESPACE:
        assert not others
    else:
        [lease_role] = others
        assert lease_role["metadata"]["namespace"] == RELEASE_NAMESPACE
        assert expanded(lease_role["rules"]) == [r for r in EXPECTED_RULES if r[1] == "leases"]
        lease_binding = the(docs, "RoleBinding", lease_role["metadata"]["name"])
        assert lease_binding["metadata"]["namespace"] == RELEASE_NAMESPACE
        assert lease_binding["roleRef"]["name"] == lease_role["metadata"]["name"]


@pytest.mark.parametrize("scenario", ["defaults", "one-namespace", "release-namespace"])
def test_no_secret_is_readable_unless_named(scenario: str):
    assert secret_roles(render(SCENARIOS[scenario])) == {}


def test_secrets_are_readable_by_name_in_their_own_namespace_only():
    granted = secret_roles(render(SCENARIOS["clusters"]))
    # hpc1's keySecretRef and the sshSecrets entry name the same Secret in the watched namespace;
    # the local cluster in sandbox names none.
    assert granted == {"hpc-team": ["hpc1-ssh"]}


def test_named_secrets_get_roles_per_namespace_even_when_every_namespace_is_watched():
    docs = render(SCENARIOS["secrets-all-namespaces"])
    # A ClusterRole naming a Secret would grant that name in every namespace.
    assert expanded(the(docs, "ClusterRole")["rules"]) == EXPECTED_OPERATOR_ROLE
    assert secret_roles(docs) == {RELEASE_NAMESPACE: ["hpc1-ssh", "hpc2-ssh"], "north": ["north-ssh"],
                                  "south": ["south-ssh"]}


def test_the_roles_together_grant_exactly_the_operator_rules():
    docs = render(SCENARIOS["secrets-all-namespaces"])
    granted = {rule for role in of_kind(docs, "ClusterRole") + of_kind(docs, "Role")
               for rule in expanded([{k: v for k, v in r.items() if k != "resourceNames"} for r in role["rules"]])}
    assert granted == set(EXPECTED_RULES)


def test_secret_access_names_must_be_object_names():
    refused = run_helm("template", RELEASE, str(CHART), "-f", "-",
                       stdin=json.dumps({"secretAccess": [{"name": "Not A Name"}]}))
    assert refused.returncode != 0 and "secretAccess" in refused.stderr


# --- the Deployment -----------------------------------------------------------------------------


def operator_container(docs: list[dict]) -> dict:
    [container] = the(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize(
    ("scenario", "scope_args"),
    [("defaults", ["--all-namespaces"]), ("one-namespace", ["--namespace", "x"]),
     ("release-namespace", ["--namespace", RELEASE_NAMESPACE])],
)
def test_deployment_runs_the_operator_with_the_namespace_flag(scenario: str, scope_args: list[str]):
    docs = render(SCENARIOS[scenario])
    deployment = the(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    container = operator_container(docs)
    assert container["command"] == ["reconciler", "operator"]
    assert container["args"] == [*scope_args, "--metrics-port", "8080"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == FULLNAME


def test_deployment_is_non_root_with_a_read_only_root_filesystem():
    docs = render(SCENARIOS["defaults"])
    pod = the(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == dockerfile_uid() != 0
    container = operator_container(docs)
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    # With the root filesystem read-only, whatever the operator writes needs a volume.
    env = {e["name"]: e for e in container["env"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path in ("/tmp", env["RECONCILER_STATE_DIR"]["value"]):
        assert path in mounts, path
        assert volumes[mounts[path]] == {"name": mounts[path], "emptyDir": {}}


def test_deployment_passes_the_leader_election_identity_from_the_downward_api():
    env = {e["name"]: e for e in operator_container(render(SCENARIOS["defaults"]))["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["RECONCILER_LOG_LEVEL"]["value"] == "INFO"


@pytest.mark.parametrize("port", [8080, 9102])
def test_metrics_port_reaches_the_container_probes_and_service(port: int):
    docs = render({"metrics": {"port": port}})
    container = operator_container(docs)
    assert container["args"][-2:] == ["--metrics-port", str(port)]
    assert container["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    service = the(docs, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}]
    pod_labels = the(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_scheduling_values_reach_the_pod():
    values = {
        "nodeSelector": {"node-role/ops": "true"},
        "tolerations": [{"key": "ops", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
        "image": {"repository": "registry.example.org/hpc/slurm-reconciler", "tag": "0.1.0-rc1",
                  "pullPolicy": "Always"},
        "replicas": 3,
        "logLevel": "DEBUG",
    }
    docs = render(values)
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    deployment = the(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 3
    assert pod["nodeSelector"] == values["nodeSelector"]
    assert pod["tolerations"] == values["tolerations"]
    assert pod["affinity"] == values["affinity"]
    container = operator_container(docs)
    # Helm merges maps with the defaults: the requests stay, the limits are the ones given.
    assert container["resources"]["limits"] == values["resources"]["limits"]
    assert container["image"] == "registry.example.org/hpc/slurm-reconciler:0.1.0-rc1"
    assert container["imagePullPolicy"] == "Always"
    assert {"name": "RECONCILER_LOG_LEVEL", "value": "DEBUG"} in container["env"]


def test_replicas_spread_across_nodes_by_default():
    docs = render(SCENARIOS["defaults"])
    pod = the(docs, "Deployment")["spec"]["template"]["spec"]
    [term] = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    selector = the(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
    assert operator_container(docs)["image"] == f"slurm-reconciler:{pyproject_version()}"


# --- ServiceMonitor -----------------------------------------------------------------------------


def test_service_monitor_only_when_enabled():
    assert not of_kind(render(SCENARIOS["defaults"]), "ServiceMonitor")
    docs = render(SCENARIOS["service-monitor"])
    monitor = the(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    service = the(docs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}
    assert monitor["spec"]["endpoints"] == [
        {"port": service["spec"]["ports"][0]["name"], "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]


# --- the Grafana dashboard ----------------------------------------------------------------------


def test_grafana_dashboard_only_when_enabled_labelled_for_the_sidecar():
    assert not of_kind(render(SCENARIOS["defaults"]), "ConfigMap")
    dashboard = the(render(SCENARIOS["grafana-dashboard"]), "ConfigMap")
    assert dashboard["metadata"]["name"] == f"{FULLNAME}-dashboard"
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "HPC"}
    shipped = json.loads((CHART / "dashboards" / "slurm-reconciler.json").read_text())
    assert json.loads(dashboard["data"]["slurm-reconciler.json"]) == shipped
    released = the(render({"grafanaDashboard": {"enabled": True}}), "ConfigMap")
    assert released["metadata"]["namespace"] == RELEASE_NAMESPACE


def test_the_group_label_reaches_the_operator_before_the_metrics_port():
    args = operator_container(render(SCENARIOS["grafana-dashboard"]))["args"]
    assert args[-4:] == ["--metrics-group-label", "team", "--metrics-port", "8080"]
    assert "--metrics-group-label" not in operator_container(render(SCENARIOS["defaults"]))["args"]


# --- SlurmClusters and SSH Secrets from values --------------------------------------------------


def test_slurm_clusters_from_values_pass_the_project_model():
    docs = render(SCENARIOS["clusters"])
    clusters = {c["metadata"]["name"]: c for c in of_kind(docs, "SlurmCluster")}
    assert sorted(clusters) == ["dev", "hpc1"]
    for cluster in clusters.values():
        SlurmCluster.model_validate(cluster)
    assert clusters["hpc1"]["spec"] == SSH_CLUSTER["spec"]
    # Into the watched namespace unless the entry names its own.
    assert clusters["hpc1"]["metadata"]["namespace"] == "hpc-team"
    assert clusters["dev"]["metadata"]["namespace"] == "sandbox"
    assert clusters["hpc1"]["metadata"]["labels"]["site"] == "north"


def test_ssh_secret_holds_the_key_a_cluster_refers_to():
    docs = render(SCENARIOS["clusters"])
    cluster = the(docs, "SlurmCluster", "hpc1")
    secret = the(docs, "Secret", cluster["spec"]["ssh"]["keySecretRef"])
    assert secret["metadata"]["namespace"] == cluster["metadata"]["namespace"]
    assert secret["type"] == "kubernetes.io/ssh-auth"
    decoded = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert decoded == {"ssh-privatekey": PRIVATE_KEY, "known_hosts": KNOWN_HOSTS}


def test_no_clusters_or_secrets_by_default():
    docs = render(SCENARIOS["defaults"])
    assert not of_kind(docs, "SlurmCluster") and not of_kind(docs, "Secret")


def test_notes_show_how_to_apply_and_list_workflows(tmp_path: Path):
    # `helm template` renders NOTES.txt but does not print it; a copy of the chart with one more
    # template that includes it (templates are addressable by path) shows the text.
    chart = shutil.copytree(CHART, tmp_path / "slurm-reconciler")
    (chart / "templates" / "zz-notes.yaml").write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n'
        'data: {notes: {{ include "slurm-reconciler/templates/NOTES.txt" . | quote }}}\n'
    )
    result = run_helm("template", RELEASE, str(chart), "--namespace", RELEASE_NAMESPACE, "-f", "-",
                      "--show-only", "templates/zz-notes.yaml", stdin=json.dumps(SCENARIOS["one-namespace"]))
    assert result.returncode == 0, result.stderr
    notes = yaml.safe_load(result.stdout)["data"]["notes"]
    assert "kubectl -n x apply -f examples/ultrasound-plan.yaml" in notes
    assert "kubectl -n x get workflows" in notes
    assert "in namespace x only" in notes


# --- versions -----------------------------------------------------------------------------------


def pyproject_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_chart_app_version_is_the_package_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == pyproject_version()


# --- the Dockerfile -----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, rest = pending.strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def dockerfile_uid() -> int:
    users = [args for keyword, args in final_stage() if keyword == "USER"]
    assert users, "the final stage sets no USER: the container would run as root"
    return int(users[-1].split(":")[0])


def test_dockerfile_bases_every_stage_on_python_3_11_slim():
    bases = [args.split()[0] for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert bases and all(base == "python:3.11-slim" for base in bases), bases


def test_dockerfile_runs_as_a_fixed_non_root_uid():
    # Numeric, so the kubelet can check runAsNonRoot against it.
    assert dockerfile_uid() == 10001


def test_dockerfile_entrypoint_is_the_operator():
    entrypoints = [args for keyword, args in final_stage() if keyword == "ENTRYPOINT"]
    assert entrypoints and json.loads(entrypoints[-1]) == ["reconciler", "operator"]


def test_dockerfile_installs_the_package_from_the_source_tree():
    runs = [args for keyword, args in dockerfile_instructions() if keyword == "RUN"]
    assert any(re.search(r"\bpip install \.(\s|$)", run) for run in runs), runs
    # The state directory the image points the operator at is the one the chart mounts.
    env = " ".join(args for keyword, args in final_stage() if keyword == "ENV")
    container = operator_container(render(SCENARIOS["defaults"]))
    state_dir = {e["name"]: e.get("value") for e in container["env"]}["RECONCILER_STATE_DIR"]
    assert f"RECONCILER_STATE_DIR={state_dir}" in env


def dockerignore_excludes(path: str) -> bool:
    """Whether .dockerignore keeps PATH out of the build context, by Docker's rules: patterns in
    order, the last one matching the path or one of its parent directories wins, `!` re-includes,
    `*` stays within one path segment and `**` spans any number."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    candidates = [path] + ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
    excluded = False
    for pattern in (p for p in patterns if p and not p.startswith("#")):
        negated = pattern.startswith("!")
        body = pattern.lstrip("!").strip("/")
        regex = re.escape(body).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def test_dockerignore_matcher_reads_the_allow_list():
    assert dockerignore_excludes(".venv/bin/python")
    assert dockerignore_excludes("tests/unit/test_chart.py")
    assert not dockerignore_excludes("reconciler/api/crds.py")
    assert dockerignore_excludes("reconciler/api/__pycache__/crds.cpython-311.pyc")


def test_every_copied_source_exists_in_the_build_context():
    copies = [args for keyword, args in dockerfile_instructions() if keyword in ("COPY", "ADD")]
    assert copies
    for args in copies:
        words = args.split()
        if any(word.startswith("--from=") for word in words):
            continue  # from another stage, not from the context
        sources = [w for w in words if not w.startswith("--")][:-1]
        assert sources, args
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: no such file in the repository"
            files = [path] if path.is_file() else list(path.rglob("*.py"))
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                assert not dockerignore_excludes(relative), f"COPY {source}: .dockerignore excludes {relative}"
