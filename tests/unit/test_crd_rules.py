"""The CEL rules of the CRDs (``x-kubernetes-validations``), evaluated here with cel-python.

Each rule must refuse what the models refuse (or the DAG check, for names in ``dependsOn``) and
nothing they accept: every valid document (the examples, the test manifests) passes every rule,
and each invalid one is refused by the model and by a rule with the expected message. The real
API server's verdict on the same documents is tests/integration/test_kube_admission.py.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import pytest
from celpy import celtypes
from ruamel.yaml import YAML

from reconciler.api import KINDS, Workflow
from reconciler.api.crds import custom_resource_definitions
from reconciler.api.workflow import MAX_DEPENDENCIES, MAX_INPUTS, MAX_PARAMETERS, MAX_TASKS
from reconciler.manifests.dag import build_graph

ROOT = Path(__file__).resolve().parents[2]
VALID = ROOT / "tests" / "manifests" / "valid"
INVALID = ROOT / "tests" / "manifests" / "invalid"


@functools.cache
def schema_for(kind: str) -> dict[str, Any]:
    [crd] = [c for c in custom_resource_definitions() if c["spec"]["names"]["kind"] == kind]
    [version] = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def rule_nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if "x-kubernetes-validations" in schema:
        yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from rule_nodes(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from rule_nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from rule_nodes(schema["additionalProperties"], f"{path}.*")


# --- evaluation ------------------------------------------------------------------------------

_ENVIRONMENT = celpy.Environment()


def _sets_contains(whole: celtypes.ListType, part: celtypes.ListType) -> celtypes.BoolType:
    return celtypes.BoolType(all(item in whole for item in part))


def _sets_intersects(one: celtypes.ListType, other: celtypes.ListType) -> celtypes.BoolType:
    return celtypes.BoolType(any(item in one for item in other))


@functools.cache
def program(rule: str) -> celpy.Runner:
    """``rule`` compiled. cel-python has standard CEL only: Kubernetes' sets library
    (sets.contains, sets.intersects) is given as two functions of its own."""
    text = rule.replace("sets.contains(", "sets_contains(").replace("sets.intersects(", "sets_intersects(")
    return _ENVIRONMENT.program(_ENVIRONMENT.compile(text), functions={
        "sets_contains": _sets_contains, "sets_intersects": _sets_intersects})


def evaluate(rule: str, value: Any) -> bool:
    """``rule`` with ``self`` bound to ``value``."""
    result = program(rule).evaluate({"self": celpy.json_to_cel(value)})
    if not isinstance(result, celtypes.BoolType):
        raise AssertionError(f"{rule!r} gave {result!r}, not a boolean")
    return bool(result)


def without_nulls(value: Any) -> Any:
    """The value as the API server's rules see it: a field set to null is an absent field."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


def refusals(schema: dict[str, Any], value: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """``(path, rule)`` for every rule of ``schema``'s nodes that ``value`` breaks, walking the
    value along the schema as the API server does (nodes absent from the value are not checked)."""
    if value is None:
        return
    for rule in schema.get("x-kubernetes-validations", []):
        if not evaluate(rule["rule"], value):
            yield path, rule
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name in value:
                yield from refusals(child, value[name], f"{path}.{name}")
        if isinstance(schema.get("additionalProperties"), dict):
            for key, item in value.items():
                yield from refusals(schema["additionalProperties"], item, f"{path}.{key}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from refusals(schema["items"], item, f"{path}[{index}]")


def broken_rules(document: dict[str, Any]) -> list[tuple[str, str]]:
    """``(field, message)`` of every rule the document breaks, the field named as the API server
    names it (``spec.tasks[1].dependsOn``: the rule's node, then its fieldPath)."""
    schema = schema_for(document["kind"])
    return [(path.lstrip(".") + rule.get("fieldPath", ""), rule["message"])
            for path, rule in refusals(schema, without_nulls(document))]


def model_refuses(document: dict[str, Any]) -> bool:
    """Whether the model refuses the document; a Workflow's task graph is checked too."""
    try:
        resource = KINDS[document["kind"]].model_validate(document)
        if isinstance(resource, Workflow):
            build_graph(resource.spec.tasks)
    except ValueError:
        return True
    return False


# --- the documents ---------------------------------------------------------------------------


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in YAML(typ="safe").load_all(path.read_text()) if doc]


def valid_documents() -> list[dict[str, Any]]:
    paths = [*sorted((ROOT / "examples").glob("*.yaml")), *sorted(VALID.glob("*.yaml"))]
    return [doc for path in paths for doc in yaml_documents(path)]


def document_id(document: dict[str, Any]) -> str:
    return f"{document['kind']}/{document['metadata']['name']}"


def workflow(*tasks: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "hpc.reconciler.dev/v1alpha1", "kind": "Workflow", "metadata": {"name": "w"},
            "spec": {"tasks": list(tasks)}}


def job(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "script": "true", **fields}


REFUSED = re.compile(r"^# refused: (?P<field>\S+): (?P<message>.+)$", re.M)


def invalid_manifests() -> list[tuple[str, dict[str, Any], str, str]]:
    """``(file name, document, field, message)`` of each manifest under tests/manifests/invalid:
    one mistake each, and the field and message of the refusal in its ``# refused:`` line."""
    found = []
    for path in sorted(INVALID.glob("*.yaml")):
        text = path.read_text()
        refused = REFUSED.search(text)
        assert refused, f"{path.name}: no '# refused: FIELD: MESSAGE' line"
        [document] = yaml_documents(path)
        found.append((path.stem, document, refused["field"], refused["message"]))
    return found


# --- the tests -------------------------------------------------------------------------------


def test_the_rules_sit_on_the_nodes_of_the_models_that_declare_them():
    paths = {kind: [path for path, _ in rule_nodes(schema_for(kind))] for kind in KINDS}
    assert paths == {
        "Workflow": [".spec", ".spec.tasks[]", ".spec.tasks[].array", ".spec.tasks[].array.countFrom",
                     ".spec.tasks[].array.itemsFrom", ".spec.tasks[].inputs[]"],
        "WorkflowTemplate": [".spec"],
        "SlurmCluster": [".spec"],
    }
    for kind in KINDS:
        for path, node in rule_nodes(schema_for(kind)):
            for rule in node["x-kubernetes-validations"]:
                assert set(rule) <= {"rule", "message", "fieldPath", "reason"}, (path, rule)
                assert rule["message"] and rule["rule"], (path, rule)
                if "fieldPath" in rule:
                    assert rule["fieldPath"].lstrip(".") in node["properties"], (path, rule)


def test_every_list_a_rule_iterates_is_bounded_in_the_schema_and_only_there():
    spec = schema_for("Workflow")["properties"]["spec"]
    task = spec["properties"]["tasks"]["items"]["properties"]
    assert spec["properties"]["tasks"]["maxItems"] == MAX_TASKS
    assert task["dependsOn"]["maxItems"] == MAX_DEPENDENCIES
    assert task["inputs"]["maxItems"] == MAX_INPUTS
    assert task["parameters"]["maxItems"] == MAX_PARAMETERS
    template = schema_for("WorkflowTemplate")["properties"]["spec"]["properties"]
    assert template["parameters"]["maxItems"] == MAX_PARAMETERS
    # The bounds are the API server's (its CEL cost budget); a Git-mode workflow may be larger.
    assert not model_refuses(workflow(*[job(f"t{i}") for i in range(MAX_TASKS + 1)]))
    names = [f"t{i}" for i in range(MAX_DEPENDENCIES + 1)]
    assert not model_refuses(workflow(*[job(name) for name in names], job("last", dependsOn=names)))


@pytest.mark.parametrize("document", valid_documents(), ids=document_id)
def test_every_valid_manifest_passes_the_model_and_every_rule(document):
    assert not model_refuses(document)
    assert broken_rules(document) == []


def test_the_valid_manifests_cover_every_kind():
    assert {document["kind"] for document in valid_documents()} == set(KINDS)


@pytest.mark.parametrize(("document", "field", "message"), [m[1:] for m in invalid_manifests()],
                         ids=[m[0] for m in invalid_manifests()])
def test_each_mistake_is_refused_by_the_model_and_by_its_rule(document, field, message):
    assert model_refuses(document)
    assert broken_rules(document) == [(field, message)]
    # The API server fills in type: job and transport: local before the rules run: no change.
    filled = copy.deepcopy(document)
    for task in filled["spec"].get("tasks", []):
        task.setdefault("type", "job")
    if filled["kind"] == "SlurmCluster":
        filled["spec"].setdefault("transport", "local")
    assert broken_rules(filled) == [(field, message)]

