"""What a real kube-apiserver refuses when a manifest is applied: the CRDs' CEL rules
(``x-kubernetes-validations``, declared beside the model validators they mirror) and their list
bounds, and what it accepts: every example, the edge cases the models accept, and the largest
workflow the models allow (whose rules must stay within the server's cost limit per rule).

The same manifests are evaluated against the rules without a server in
tests/unit/test_crd_rules.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from reconciler.api import Workflow
from reconciler.api.workflow import MAX_DEPENDENCIES, MAX_INPUTS, MAX_PARAMETERS, MAX_TASKS
from reconciler.manifests.dag import build_graph
from tests.controlplane.fixtures import Kubectl
from tests.integration.gitops_world import wait_until

ROOT = Path(__file__).resolve().parents[2]
INVALID = sorted((ROOT / "tests" / "manifests" / "invalid").glob("*.yaml"))
VALID = [*sorted((ROOT / "examples").glob("*.yaml")), *sorted((ROOT / "tests" / "manifests" / "valid").glob("*.yaml"))]
REFUSED = re.compile(r"^# refused: (?P<field>\S+): (?P<message>.+)$", re.M)


@pytest.mark.parametrize("path", INVALID, ids=lambda path: path.stem)
def test_each_mistake_is_refused_with_the_rules_field_and_message(kubectl: Kubectl, path: Path):
    text = path.read_text()
    refused = REFUSED.search(text)
    assert refused, f"{path.name}: no '# refused: FIELD: MESSAGE' line"
    [document] = YAML(typ="safe").load_all(text)
    done = kubectl("apply", "-f", str(path), check=False)
    assert done.returncode == 1, done.stdout
    kind, name = document["kind"], document["metadata"]["name"]
    assert f'The {kind} "{name}" is invalid: {refused["field"]}: ' in done.stderr
    assert refused["message"] in done.stderr
    assert kubectl.get(kind.lower(), name) is None


@pytest.mark.parametrize("path", VALID, ids=lambda path: path.name)
def test_every_valid_manifest_is_accepted(kubectl: Kubectl, path: Path):
    done = kubectl("apply", "--dry-run=server", "-f", str(path))
    documents = [doc for doc in YAML(typ="safe").load_all(path.read_text()) if doc]
    assert done.stdout.count("(server dry run)") == len(documents), done.stdout


def largest_workflow() -> dict[str, Any]:
    """A workflow at every bound the model sets, with names of the longest length: the costliest
    object the rules meet. Task 0 is an approval task (with the most parameters); every other task
    depends on the most tasks and reads an input from each."""
    names = [f"t{i:03d}-" + "x" * 58 for i in range(MAX_TASKS)]
    tasks: list[dict[str, Any]] = [{
        "name": names[0], "type": "approval", "dependsOn": names[1:1 + MAX_DEPENDENCIES],
        "parameters": [{"name": f"p{j:02d}_" + "y" * 60} for j in range(MAX_PARAMETERS)],
    }]
    for i in range(1, MAX_TASKS):
        others = [name for name in names[1:] if name != names[i]]
        depends_on = [others[(i + j) % len(others)] for j in range(MAX_DEPENDENCIES)]
        tasks.append({"name": names[i], "script": "true", "dependsOn": depends_on,
                      "inputs": [{"task": depends_on[j % MAX_DEPENDENCIES], "path": f"out-{j}.txt"}
                                 for j in range(MAX_INPUTS)]})
    return {"apiVersion": "hpc.reconciler.dev/v1alpha1", "kind": "Workflow", "metadata": {"name": "largest"},
            "spec": {"tasks": tasks}}


def test_the_largest_workflow_is_within_the_rules_cost_and_one_more_task_is_refused(kubectl: Kubectl):
    document = largest_workflow()
    Workflow.model_validate(document)  # the model accepts it, so the server must too
    # create, not apply: apply would copy the whole object into an annotation, past its size limit.
    done = kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(document), check=False)
    assert done.returncode == 0, done.stderr
    # A dependency cycle is not the rules' to find: the model's caller reports it (Ready=False).
    with pytest.raises(ValueError, match="cycle"):
        build_graph(Workflow.model_validate(document).spec.tasks)

    document["spec"]["tasks"].append({"name": "one-more", "script": "true"})
    done = kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(document), check=False)
    assert done.returncode == 1
    assert f"spec.tasks: Too many: {MAX_TASKS + 1}: must have at most {MAX_TASKS} items" in done.stderr


def test_kubectl_explain_prints_the_models_field_descriptions(kubectl: Kubectl):
    # The API server publishes a new CRD's schema to its OpenAPI document shortly after the CRD
    # is established: wait for it.
    def explained() -> str | None:
        done = kubectl("explain", "workflow.spec.tasks", check=False)
        return done.stdout if done.returncode == 0 else None

    text = wait_until(explained, timeout=30, what="kubectl explain workflow.spec.tasks")
    assert re.search(r"^  dependsOn\s+<\[\]string>$", text, re.M), text
    assert "a note saying what was checked" in text  # approved's description
    assert "the values the reconciler may choose for the task's auto resources" in text
