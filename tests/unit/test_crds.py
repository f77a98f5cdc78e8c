import copy
import re
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from pydantic import BaseModel
from ruamel.yaml import YAML

from reconciler.api import KINDS, SlurmCluster, Workflow, WorkflowTemplate
from reconciler.api.crds import custom_resource_definitions, openapi_schema, render_crds_yaml, write_crds

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
EXAMPLES = ROOT / "examples"
SCALARS = (str, int, float, bool)


def crd_for(kind: str) -> dict:
    [crd] = [c for c in custom_resource_definitions() if c["spec"]["names"]["kind"] == kind]
    return crd


def schema_for(kind: str) -> dict:
    [version] = crd_for(kind)["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def nodes(schema: dict, path: str = "") -> Iterator[tuple[str, dict]]:
    """Every schema node, with a readable path; property *names* are never mistaken for keywords."""
    yield path or "<root>", schema
    for name, child in schema.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}.*")
    for keyword in ("anyOf", "oneOf", "allOf"):
        for i, branch in enumerate(schema.get(keyword, [])):
            yield from nodes(branch, f"{path}/{keyword}[{i}]")


def validator(kind: str) -> jsonschema.Draft4Validator:
    # A CRD schema is OpenAPI v3.0, whose validation keywords are JSON Schema draft 4's.
    return jsonschema.Draft4Validator(schema_for(kind))


def load_yaml_documents(path: Path) -> list[dict]:
    return [doc for doc in YAML(typ="safe").load_all(path.read_text()) if doc]


def valid_workflow() -> dict:
    return {
        "apiVersion": "hpc.reconciler.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "plan", "namespace": "team-a", "labels": {"project": "x"}},
        "spec": {
            "cluster": "dev",
            "defaults": {"env": {"PLAN": "p1"}, "resources": {"partition": "debug", "memory": "4G"}},
            "tasks": [
                {"name": "prep", "script": "echo prep", "resources": {"time": "00:10:00", "cpus": 2}},
                {
                    "name": "sim",
                    "dependsOn": ["prep"],
                    "command": ["sim", "--fast"],
                    "array": {"count": 10, "parallelism": 2},
                    "retry": {"limit": 2, "onFailures": ["TIMEOUT", "NODE_FAIL"], "escalate": {"time": 1.5}},
                    "outputs": ["out.h5"],
                },
                {"name": "review", "type": "approval", "dependsOn": ["sim"], "approved": True},
            ],
        },
    }


def workflow_with_status() -> dict:
    wire = valid_workflow()
    wire["status"] = {
        "observedGeneration": 3,
        "phase": "Running",
        "progress": "1/3",
        "coreHours": 0.25,
        "startedAt": "2024-05-01T10:00:00Z",
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "TasksRunning",
                "message": "sim is running",
                "lastTransitionTime": "2024-05-01T10:00:00Z",
                "observedGeneration": 3,
            }
        ],
        "tasks": {
            "prep": {"phase": "Succeeded", "jobId": "17", "attempts": 1, "exitCode": 0, "coreHours": 0.1},
            "sim": {
                "phase": "Running",
                "jobId": "18",
                "array": {"total": 10, "counts": {"Running": 2, "Queued": 8}, "indices": {"Running": "0-1"}},
            },
        },
    }
    return wire


# --- the checked-in files -------------------------------------------------------------------


def test_checked_in_crds_match_the_models(tmp_path):
    expected = {path.name: path.read_text() for path in write_crds(tmp_path)}
    actual = {path.name: path.read_text() for path in CRD_DIR.glob("*.yaml")}
    hint = "crds/ is out of date with the models: run `reconciler crds --write crds/`"
    assert sorted(actual) == sorted(expected), hint
    for name, text in expected.items():
        assert actual[name] == text, f"{name}: {hint}"


def test_file_names_follow_group_and_plural(tmp_path):
    names = [path.name for path in write_crds(tmp_path / "new")]
    assert names == [
        "hpc.reconciler.dev_workflows.yaml",
        "hpc.reconciler.dev_workflowtemplates.yaml",
        "hpc.reconciler.dev_slurmclusters.yaml",
    ]


def test_rendered_stream_is_the_definitions_and_reads_the_same_as_yaml_1_1():
    text = render_crds_yaml()
    assert text.count("\n---\n") == 2
    assert list(YAML(typ="safe").load_all(text)) == custom_resource_definitions()
    # Kubernetes tooling reads YAML 1.1, where a bare `on` key would become the boolean true.
    as_yaml_11 = list(YAML(typ="safe").load_all("%YAML 1.1\n---\n" + text))
    assert as_yaml_11 == custom_resource_definitions()
    assert not re.search(r'^\s*"?(on|yes|no|off)"?:', text, re.M)  # no key YAML 1.1 reads as a boolean


def test_generation_is_deterministic():
    assert render_crds_yaml() == render_crds_yaml()


# --- names, scope, versions, columns --------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "plural", "short"),
    [("Workflow", "workflows", "swf"), ("WorkflowTemplate", "workflowtemplates", "swft"),
     ("SlurmCluster", "slurmclusters", "scl")],
)
def test_names_scope_and_version(kind, plural, short):
    crd = crd_for(kind)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{plural}.hpc.reconciler.dev"
    spec = crd["spec"]
    assert spec["group"] == "hpc.reconciler.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
        "shortNames": [short],
        "categories": ["slurm-reconciler"],
    }
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)


def test_only_kinds_with_a_status_get_the_status_subresource():
    for kind, model in KINDS.items():
        [version] = crd_for(kind)["spec"]["versions"]
        if "status" in model.model_fields:
            assert version["subresources"] == {"status": {}}
        else:
            assert "subresources" not in version
    for kind in ("Workflow", "SlurmCluster"):
        [version] = crd_for(kind)["spec"]["versions"]
        assert "subresources" in version


def columns(kind: str) -> list[tuple]:
    [version] = crd_for(kind)["spec"]["versions"]
    return [(c["name"], c["type"], c["jsonPath"], c.get("priority", 0)) for c in version["additionalPrinterColumns"]]


def test_workflow_printer_columns():
    assert columns("Workflow") == [
        ("Phase", "string", ".status.phase", 0),
        ("Progress", "string", ".status.progress", 0),
        ("Attention", "string", '.status.conditions[?(@.type=="NeedsAttention")].reason', 0),
        ("Core-hours", "number", ".status.coreHours", 0),
        ("Age", "date", ".metadata.creationTimestamp", 0),
        ("Cluster", "string", ".status.cluster", 1),
        ("Message", "string", '.status.conditions[?(@.type=="Ready")].message', 1),
    ]


def test_template_and_cluster_printer_columns():
    assert columns("WorkflowTemplate") == [("Age", "date", ".metadata.creationTimestamp", 0)]
    assert columns("SlurmCluster") == [
        ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status', 0),
        ("Version", "string", ".status.slurmVersion", 0),
        ("Queued", "integer", ".status.queuedJobs", 0),
        ("Running", "integer", ".status.runningJobs", 0),
        ("Transport", "string", ".spec.transport", 0),
        ("Age", "date", ".metadata.creationTimestamp", 0),
        ("Workdir", "string", ".spec.workdir", 1),
        ("Message", "string", '.status.conditions[?(@.type=="Ready")].message', 1),
    ]


@pytest.mark.parametrize("kind", list(KINDS))
def test_printer_columns_point_at_fields_of_the_schema(kind):
    schema = schema_for(kind)
    for name, _, json_path, _ in columns(kind):
        if json_path.startswith(".metadata."):
            continue
        node = schema
        for part in re.sub(r"\[\?\(.*?\)\]", "[]", json_path).strip(".").split("."):
            field, brackets, _ = part.partition("[]")
            node = node["properties"][field]
            if brackets:
                node = node["items"]
        assert "type" in node, name


# --- structural schema ----------------------------------------------------------------------

RE2_UNSUPPORTED = re.compile(r"\(\?[=!<]|\\[1-9]")


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_node_is_structural(kind):
    schema = schema_for(kind)
    assert schema["type"] == "object"
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert schema["properties"]["apiVersion"] == {"type": "string"}
    assert schema["properties"]["kind"] == {"type": "string"}
    for path, node in nodes(schema):
        assert "type" in node or node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields"
        ), f"{path}: no type"
        assert node.get("type") != "null", path
        for forbidden in ("$ref", "$defs", "definitions", "title", "patternProperties", "const", "uniqueItems"):
            assert forbidden not in node, f"{path}: {forbidden}"
        for keyword in ("anyOf", "oneOf", "allOf"):
            for branch in node.get(keyword, []):
                for key in ("type", "description", "default", "additionalProperties", "nullable"):
                    assert key not in branch, f"{path}: {key} inside {keyword}"
        if "nullable" in node:
            assert "type" in node, f"{path}: nullable without a type"
        if "default" in node:
            assert isinstance(node["default"], SCALARS), f"{path}: non-scalar default"
        assert node.get("additionalProperties", True) is not False, f"{path}: additionalProperties: false"
        assert not ("properties" in node and "additionalProperties" in node), f"{path}: both property kinds"
        # metadata is the API server's own: its schema there is built in, not pruned empty.
        if node.get("type") == "object" and path != ".metadata":
            assert "properties" in node or "additionalProperties" in node or node.get(
                "x-kubernetes-preserve-unknown-fields"
            ), f"{path}: an object without a schema would be pruned empty"
        for name in node.get("required", []):
            assert name in node.get("properties", {}), f"{path}: required {name} is not a property"
        if "pattern" in node:
            assert not RE2_UNSUPPORTED.search(node["pattern"]), f"{path}: pattern beyond RE2"
        if node.get("format") is not None:
            assert node["format"] == "date-time" and node["type"] == "string", path


@pytest.mark.parametrize("kind", list(KINDS))
def test_defaults_validate_against_their_own_node(kind):
    # The API server rejects a CRD whose default does not pass the schema it sits in.
    for path, node in nodes(schema_for(kind)):
        if "default" in node:
            without = {k: v for k, v in node.items() if k != "default"}
            errors = list(jsonschema.Draft4Validator(without).iter_errors(node["default"]))
            assert not errors, f"{path}: {errors}"


def test_schemas_keep_the_models_validation():
    spec = schema_for("Workflow")["properties"]["spec"]
    task = spec["properties"]["tasks"]["items"]
    assert task["required"] == ["name"]
    assert task["properties"]["name"]["pattern"] == r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    assert task["properties"]["name"]["maxLength"] == 63
    assert task["properties"]["type"] == {"type": "string", "enum": ["job", "approval"], "default": "job"}
    assert task["properties"]["resources"]["properties"]["cpus"]["minimum"] == 1
    assert task["properties"]["resources"]["properties"]["cpus"]["pattern"] == "^auto$"
    assert task["properties"]["resources"]["properties"]["cpus"]["x-kubernetes-int-or-string"] is True
    assert task["properties"]["retry"]["properties"]["limit"]["maximum"] == 100
    assert task["properties"]["env"]["additionalProperties"] == {"type": "string"}
    status = schema_for("Workflow")["properties"]["status"]
    assert "nullable" not in status
    assert status["properties"]["startedAt"]["format"] == "date-time"
    assert status["properties"]["tasks"]["additionalProperties"]["properties"]["phase"]["default"] == "Waiting"
    template = schema_for("WorkflowTemplate")["properties"]["spec"]
    assert template["properties"]["tasks"]["minItems"] == 1
    assert template["properties"]["tasks"]["items"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    ssh = schema_for("SlurmCluster")["properties"]["spec"]["properties"]["ssh"]
    assert ssh["properties"]["port"]["maximum"] == 65535


def test_scalar_unions_accept_any_value_and_the_model_narrows_them():
    arguments = schema_for("Workflow")["properties"]["spec"]["properties"]["arguments"]
    assert arguments["additionalProperties"] == {"x-kubernetes-preserve-unknown-fields": True}
    parameter = schema_for("WorkflowTemplate")["properties"]["spec"]["properties"]["parameters"]["items"]
    assert parameter["properties"]["default"] == {"x-kubernetes-preserve-unknown-fields": True}


# --- validation of real objects -------------------------------------------------------------


def test_valid_workflow_passes_schema_and_model():
    wire = valid_workflow()
    Workflow.model_validate(wire)
    validator("Workflow").validate(wire)


def test_status_the_model_writes_passes_the_schema():
    workflow = Workflow.model_validate(workflow_with_status())
    validator("Workflow").validate(workflow.to_wire())


@pytest.mark.parametrize("value", ["text", 3, 2.5, True, False])
def test_every_argument_scalar_passes_schema_and_model(value):
    wire = {
        "apiVersion": "hpc.reconciler.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "from-template"},
        "spec": {"templateRef": {"name": "tpl"}, "arguments": {"x": value}},
    }
    assert Workflow.model_validate(wire).spec.arguments["x"] == value
    validator("Workflow").validate(wire)


def example_documents() -> list[dict]:
    return [doc for path in sorted(EXAMPLES.glob("*.yaml")) for doc in load_yaml_documents(path)]


@pytest.mark.parametrize("document", example_documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_examples_pass_schema_and_model(document):
    model = KINDS[document["kind"]]
    model.model_validate(document)
    validator(document["kind"]).validate(document)
    validator(document["kind"]).validate(model.model_validate(document).to_wire())


def test_a_slurm_cluster_passes_schema_and_model():
    wire = {
        "apiVersion": "hpc.reconciler.dev/v1alpha1",
        "kind": "SlurmCluster",
        "metadata": {"name": "hpc1"},
        "spec": {
            "transport": "ssh",
            "ssh": {"host": "login.example.org", "user": "svc_hpc", "port": 2222},
            "workdir": "/scratch/reconciler",
            "capacity": {"maxSubmittedJobs": 100},
            "partitions": [{"name": "gpu", "costPerCoreHour": 0.5}],
        },
    }
    SlurmCluster.model_validate(wire)
    validator("SlurmCluster").validate(wire)


def mutated(change) -> dict:
    wire = copy.deepcopy(valid_workflow())
    change(wire)
    return wire


INVALID_WORKFLOWS = {
    "task type not in the enum": lambda w: w["spec"]["tasks"][0].update(type="jobb"),
    "retry.onFailures not in the enum": lambda w: w["spec"]["tasks"][1]["retry"].update(onFailures=["SEGFAULT"]),
    "task name breaks the pattern": lambda w: w["spec"]["tasks"][0].update(name="Prep_1"),
    "dependsOn entry breaks the pattern": lambda w: w["spec"]["tasks"][1].update(dependsOn=["Prep"]),
    "cpus is a word other than auto": lambda w: w["spec"]["tasks"][0]["resources"].update(cpus="many"),
    "time breaks the pattern": lambda w: w["spec"]["tasks"][0]["resources"].update(time="soon"),
    "memory breaks the pattern": lambda w: w["spec"]["defaults"]["resources"].update(memory="4GB"),
    "cpus below the minimum": lambda w: w["spec"]["tasks"][0]["resources"].update(cpus=0),
    "retry limit above the maximum": lambda w: w["spec"]["tasks"][1]["retry"].update(limit=101),
    "task without a name": lambda w: w["spec"]["tasks"][0].pop("name"),
    "no spec": lambda w: w.pop("spec"),
    "cpus of the wrong type": lambda w: w["spec"]["tasks"][0]["resources"].update(cpus="two"),
}


@pytest.mark.parametrize("change", list(INVALID_WORKFLOWS.values()), ids=list(INVALID_WORKFLOWS))
def test_invalid_workflows_fail_schema_and_model(change):
    wire = mutated(change)
    with pytest.raises(jsonschema.ValidationError):
        validator("Workflow").validate(wire)
    with pytest.raises(ValueError):
        Workflow.model_validate(wire)


def test_cluster_is_a_name_or_a_list_the_model_checks():
    """A name or a list of names has no structural form: the schema takes any value there, and
    the model is the check."""
    for good in ("dev", ["dev", "other"], "auto"):
        wire = mutated(lambda w, value=good: w["spec"].update(cluster=value))
        validator("Workflow").validate(wire)
        Workflow.model_validate(wire)
    for bad in ("Dev Cluster", ["dev", "Other Cluster"], {"name": "dev"}):
        wire = mutated(lambda w, value=bad: w["spec"].update(cluster=value))
        validator("Workflow").validate(wire)
        with pytest.raises(ValueError):
            Workflow.model_validate(wire)


def test_invalid_status_fails_the_schema():
    wire = workflow_with_status()
    wire["status"]["phase"] = "Exploded"
    with pytest.raises(jsonschema.ValidationError):
        validator("Workflow").validate(wire)
    wire = workflow_with_status()
    del wire["status"]["conditions"][0]["reason"]
    with pytest.raises(jsonschema.ValidationError):
        validator("Workflow").validate(wire)


def test_invalid_template_and_cluster_fail_the_schema():
    template = {"metadata": {"name": "t"}, "spec": {"tasks": []}}
    with pytest.raises(jsonschema.ValidationError):
        validator("WorkflowTemplate").validate(template)
    template["spec"] = {"parameters": [{"name": "1bad"}], "tasks": [{"name": "a", "script": "x"}]}
    with pytest.raises(jsonschema.ValidationError):
        validator("WorkflowTemplate").validate(template)
    cluster = {"metadata": {"name": "c"}, "spec": {"transport": "rsh", "workdir": "/w"}}
    with pytest.raises(jsonschema.ValidationError):
        validator("SlurmCluster").validate(cluster)
    cluster["spec"] = {"transport": "local"}
    with pytest.raises(jsonschema.ValidationError):
        validator("SlurmCluster").validate(cluster)


# --- the translation itself -----------------------------------------------------------------


class _Inner(BaseModel):
    a: int


class _Other(BaseModel):
    b: str


class _ObjectUnion(BaseModel):
    kind: str = "X"
    spec: _Inner | _Other


class _Limits(BaseModel):
    limit: int | None = None


class _IntOrString(BaseModel):
    kind: str = "X"
    spec: int | str
    ratio: int | float = 1
    limits: _Limits


def test_a_union_of_objects_is_refused_not_guessed():
    with pytest.raises(ValueError, match="scalar"):
        openapi_schema(_ObjectUnion)


def test_narrower_scalar_unions_keep_their_structural_forms():
    schema = openapi_schema(_IntOrString)
    assert schema["properties"]["spec"] == {"x-kubernetes-int-or-string": True}
    assert schema["properties"]["ratio"] == {"type": "number", "default": 1}
    assert schema["properties"]["limits"]["properties"]["limit"] == {"type": "integer", "nullable": True}
    assert schema["required"] == ["spec", "limits"]


@pytest.mark.parametrize("model", [Workflow, WorkflowTemplate, SlurmCluster])
def test_every_model_field_is_in_the_schema(model: type[BaseModel]):
    schema = openapi_schema(model)
    source = model.model_json_schema(by_alias=True, mode="validation")
    assert list(schema["properties"]) == list(source["properties"])
