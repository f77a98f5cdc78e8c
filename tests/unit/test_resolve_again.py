"""Resolving the same manifests again hands back the same resolved workflow (and with it what was
derived from it); anything that could resolve differently resolves afresh."""

from __future__ import annotations

from reconciler.manifests.loader import load_text
from reconciler.manifests.resolve import ResolvedWorkflow, resolve

CLUSTER = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: SlurmCluster
metadata: {name: dev}
spec: {workdir: /w}
"""
TEMPLATE = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: WorkflowTemplate
metadata: {name: tpl}
spec:
  parameters: [{name: word}]
  tasks:
    - {name: a, script: "echo {{ params.word }}"}
"""
WORKFLOW = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  tasks:
    - {name: a, script: "true"}
    - {name: b, script: "true", dependsOn: [a]}
"""
FROM_TEMPLATE = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: made}
spec:
  templateRef: {name: tpl}
  arguments: {word: hello}
"""


def resolved(*documents: str, filename: str = "plan.yaml") -> list[ResolvedWorkflow]:
    loaded = load_text("---\n".join(documents), filename=filename)
    assert not loaded.errors, loaded.errors
    return resolve(loaded.resources).workflows


def test_the_same_manifests_read_again_resolve_to_the_same_object():
    [first] = resolved(CLUSTER, WORKFLOW)
    assert first.order == ("a", "b")
    [again] = resolved(CLUSTER, WORKFLOW)
    assert again is first


def test_a_changed_workflow_cluster_template_or_file_resolves_afresh():
    [first] = resolved(CLUSTER, WORKFLOW)
    [edited] = resolved(CLUSTER, WORKFLOW.replace('name: b, script: "true"', 'name: b, script: "false"'))
    assert edited is not first and edited.tasks["b"].script == "false"
    [moved] = resolved(CLUSTER.replace("/w}", "/elsewhere}"), WORKFLOW)
    assert moved is not first and moved.cluster is not None and moved.cluster.spec.workdir == "/elsewhere"
    [elsewhere] = resolved(CLUSTER, WORKFLOW, filename="other.yaml")
    assert elsewhere is not first and elsewhere.location is not None and elsewhere.location.file == "other.yaml"
    [made] = resolved(CLUSTER, TEMPLATE, FROM_TEMPLATE)
    [remade] = resolved(CLUSTER, TEMPLATE.replace("echo", "printf"), FROM_TEMPLATE)
    assert remade is not made and remade.tasks["a"].script.startswith("printf")
