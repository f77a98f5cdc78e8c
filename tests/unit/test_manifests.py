from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.manifests.loader import MAX_FILE_BYTES, load_file, load_paths, load_text

CHAIN = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata:
  name: chain
spec:
  tasks:
    - name: a
      script: echo a
    - name: b
      dependsOn: [a]
      command: [echo, b]
"""


def test_valid_workflow_loads_with_its_location():
    result = load_text(CHAIN, filename="plans/chain.yaml")
    assert result.errors == []
    [loaded] = result.resources
    assert loaded.key == ("Workflow", "default", "chain")
    assert loaded.location.file == "plans/chain.yaml"
    assert [t.name for t in loaded.resource.spec.tasks] == ["a", "b"]


def test_errors_name_file_line_and_field_path():
    text = CHAIN.replace("      script: echo a\n", "      script: echo a\n      resources:\n        time: soon\n")
    [error] = load_text(text, filename="c.yaml").errors
    assert (error.file, error.line, error.path) == ("c.yaml", 10, "spec.tasks[0].resources.time")
    assert "01:30:00" in error.message
    assert str(error).startswith("c.yaml:10: spec.tasks[0].resources.time: ")


def test_unknown_field_is_an_error_not_dropped():
    text = CHAIN.replace("      command: [echo, b]\n", "      command: [echo, b]\n      dependson: [a]\n")
    [error] = load_text(text, filename="c.yaml").errors
    assert error.path == "spec.tasks[1].dependson" and error.message == "unknown field" and error.line == 12


def test_a_broken_document_does_not_stop_the_others():
    broken = CHAIN.replace("name: chain", "name: Not_Valid")
    result = load_text(broken + "---\n" + CHAIN, filename="two.yaml")
    assert [r.resource.metadata.name for r in result.resources] == ["chain"]
    assert [(b.kind, b.name) for b in result.broken] == [("Workflow", "Not_Valid")]
    assert result.errors[0].line == 4


def test_a_broken_file_does_not_stop_other_files(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("key: [unclosed\n")
    (tmp_path / "b.yaml").write_text(CHAIN)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "c.yaml").write_text("not: loaded")
    result = load_paths([tmp_path], relative_to=tmp_path)
    assert [r.resource.metadata.name for r in result.resources] == ["chain"]
    [error] = result.errors
    assert error.file == "a.yaml" and "invalid YAML" in error.message and error.line == 2


def test_wrong_api_version_and_unknown_kind():
    text = CHAIN.replace("hpc.reconciler.dev/v1alpha1", "argoproj.io/v1alpha1")
    [error] = load_text(text, filename="x.yaml").errors
    assert error.path == "apiVersion" and error.line == 1
    text = CHAIN.replace("kind: Workflow", "kind: CronWorkflow")
    [error] = load_text(text, filename="x.yaml").errors
    assert error.path == "kind" and "CronWorkflow" in error.message


def test_alias_bomb_is_rejected_quickly():
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]")
    [error] = load_text("\n".join(lines), filename="bomb.yaml").errors
    assert "alias bomb" in error.message


def test_python_tags_are_never_constructed():
    result = load_text("!!python/object/apply:os.system ['touch /tmp/pwned']\n", filename="evil.yaml")
    assert result.resources == [] and result.errors


def test_oversized_file_is_refused(tmp_path: Path):
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * MAX_FILE_BYTES)
    [error] = load_file(path).errors
    assert "limited to" in error.message


def test_duplicate_keys_are_an_error():
    text = CHAIN.replace("  name: chain\n", "  name: chain\n  name: other\n")
    assert load_text(text, filename="d.yaml").errors


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20))
yaml_values = st.recursive(
    yaml_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_text_gives_errors_never_tracebacks(text: str):
    result = load_text(text, filename="fuzz.yaml")
    for error in result.errors:
        assert error.file == "fuzz.yaml" and error.message


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["name", "script", "dependsOn", "array", "retry", "resources", "type", "x"]),
                       yaml_values, max_size=6))
def test_random_task_documents_give_errors_never_tracebacks(task: dict):
    import json

    document = {
        "apiVersion": "hpc.reconciler.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "fuzz"},
        "spec": {"tasks": [task]},
    }
    # JSON is YAML: this feeds the loader structured garbage through the real parser.
    result = load_text(json.dumps(document), filename="fuzz.yaml")
    assert len(result.resources) + len(result.broken) == 1
    for error in result.errors:
        assert error.line is not None and error.path


@pytest.mark.parametrize("bad", ["- a\n- b\n", "just a string\n", "42\n"])
def test_non_mapping_documents(bad: str):
    [error] = load_text(bad, filename="n.yaml").errors
    assert "expected a mapping" in error.message


def test_an_object_read_back_from_kubernetes_validates_like_its_manifest():
    from reconciler.manifests.loader import BrokenDocument, LoadedResource, load_object

    obj = {
        "apiVersion": "hpc.reconciler.dev/v1alpha1", "kind": "Workflow",
        "metadata": {"name": "plan", "namespace": "lab", "uid": "6c1f", "generation": 3, "resourceVersion": "812",
                     "creationTimestamp": "2026-11-23T06:00:00Z", "finalizers": ["hpc.reconciler.dev/slurm-jobs"],
                     "managedFields": [{"manager": "kubectl"}], "annotations": {"a": "b"}},
        "spec": {"tasks": [{"name": "one", "script": "echo 1"}]},
        "status": {"phase": "Running", "somethingNew": True},
    }
    loaded = load_object(obj, origin="workflow lab/plan")
    assert isinstance(loaded, LoadedResource)
    assert loaded.resource.metadata.uid == "6c1f" and loaded.resource.metadata.generation == 3
    assert loaded.location.file == "workflow lab/plan" and loaded.location.line is None

    obj["spec"]["tasks"][0]["name"] = "Not_Valid"
    broken = load_object(obj, origin="workflow lab/plan")
    assert isinstance(broken, BrokenDocument) and (broken.namespace, broken.name) == ("lab", "plan")
    [error] = broken.errors
    assert str(error).startswith("workflow lab/plan: spec.tasks[0].name: 'Not_Valid' is not valid")


def test_a_retry_on_key_points_to_on_failures():
    """kubectl reads an "on" key as true (YAML 1.1), so the field is onFailures; say so."""
    from reconciler.manifests.loader import load_text

    text = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: plan}
spec:
  tasks:
    - name: one
      script: echo 1
      retry: {limit: 1, on: [TIMEOUT]}
"""
    [error] = load_text(text, filename="plan.yaml").errors
    assert str(error) == ("plan.yaml:8: spec.tasks[0].retry.on: unknown field; the failures a retry reacts to are "
                          "listed in onFailures")


@pytest.mark.parametrize(("expression", "says"), [
    ("time 0.7 * costs 0.3 * +", "token 4 ('costs'): unknown name; did you mean 'cost'?"),
    ("time *", "token 2 ('*'): needs two operands, has one"),
    ("time cost", "2 values left on the stack"),
    ("time 1 1 - /", "token 5 ('/'): divides by a constant zero"),
])
def test_a_broken_scoring_expression_is_an_error_with_file_and_line(expression, says):
    text = CHAIN.replace("spec:\n", f"spec:\n  scoring:\n    expression: '{expression}'\n")
    [error] = load_text(text, filename="s.yaml").errors
    assert (error.file, error.line, error.path) == ("s.yaml", 7, "spec.scoring.expression")
    assert says in error.message


def test_a_scoring_expression_is_kept_normalised_and_its_strategy_known():
    from typing import get_args

    from reconciler.api.orchestration import Scoring
    from reconciler.core.optimizer import STRATEGIES

    text = CHAIN.replace("spec:\n", "spec:\n  scoring: {expression: 'time  0.70 *  cost 0.3 * +'}\n")
    [loaded] = load_text(text, filename="s.yaml").resources
    assert loaded.resource.spec.scoring.expression == "time 0.7 * cost 0.3 * +"
    assert set(get_args(Scoring.model_fields["strategy"].annotation)) == set(STRATEGIES)
