import pytest

from reconciler.api import Task, Workflow, WorkflowTemplate
from reconciler.manifests.dag import DagError, build_graph
from reconciler.manifests.loader import load_text
from reconciler.manifests.resolve import resolve
from reconciler.manifests.templates import TemplateError, instantiate

API = "hpc.reconciler.dev/v1alpha1"


def tasks(*specs: tuple[str, list[str]]) -> list[Task]:
    return [Task(name=name, depends_on=deps, script="true") for name, deps in specs]


DIAMOND = tasks(("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"]), ("e", []))


def test_topological_order_is_stable():
    assert build_graph(DIAMOND).topological_order() == ("a", "b", "c", "d", "e")


def test_cycle_is_named():
    with pytest.raises(DagError) as excinfo:
        build_graph(tasks(("a", ["c"]), ("b", ["a"]), ("c", ["b"])))
    [problem] = excinfo.value.problems
    assert problem.startswith("dependency cycle: ")
    assert set(problem.removeprefix("dependency cycle: ").split(" -> ")) == {"a", "b", "c"}


def test_unknown_self_and_duplicate_dependencies():
    with pytest.raises(DagError) as excinfo:
        build_graph(tasks(("a", ["a"]), ("b", ["zz"]), ("b", [])))
    assert excinfo.value.problems == [
        "duplicate task name 'b'",
        "task 'a' depends on itself",
        "task 'b' depends on unknown task 'zz'",
    ]


TEMPLATE = {
    "apiVersion": API,
    "kind": "WorkflowTemplate",
    "metadata": {"name": "fan"},
    "spec": {
        "parameters": [{"name": "n"}, {"name": "label", "default": "x"}],
        "defaults": {"resources": {"partition": "debug"}},
        "tasks": [
            {"name": "split", "script": "echo {{ params.label }} {{ workflow.name }}"},
            {"name": "work", "dependsOn": ["split"], "array": {"count": "{{ params.n }}"}, "script": "echo {{x}}"},
        ],
    },
}


def workflow(arguments: dict) -> Workflow:
    return Workflow.model_validate({
        "apiVersion": API, "kind": "Workflow", "metadata": {"name": "inst"},
        "spec": {"templateRef": {"name": "fan"}, "arguments": arguments,
                 "defaults": {"resources": {"time": "00:02:00"}}},
    })


def test_instantiation_substitutes_parameters_and_keeps_other_braces():
    spec = instantiate(workflow({"n": 30000}), WorkflowTemplate.model_validate(TEMPLATE))
    split, work = spec.effective_tasks()
    assert split.script == "echo x inst"
    assert work.array is not None and work.array.count == 30000
    assert work.script == "echo {{x}}"
    # the instance's defaults merge over the template's
    assert work.resources.partition == "debug" and work.resources.time == "00:02:00"


def test_missing_and_unknown_arguments_are_all_reported():
    with pytest.raises(TemplateError) as excinfo:
        instantiate(workflow({"nn": 3}), WorkflowTemplate.model_validate(TEMPLATE))
    problems = excinfo.value.problems
    assert any("unknown argument 'nn'" in p for p in problems)
    assert any("missing argument 'n'" in p for p in problems)


def test_argument_of_the_wrong_type_is_reported_after_substitution():
    with pytest.raises(TemplateError) as excinfo:
        instantiate(workflow({"n": "many"}), WorkflowTemplate.model_validate(TEMPLATE))
    assert "array.count" in excinfo.value.problems[0]


def test_template_with_an_invalid_task_is_rejected_at_load():
    bad = {**TEMPLATE, "spec": {**TEMPLATE["spec"], "tasks": [{"name": "x", "script": "a", "bogus": 1}]}}
    with pytest.raises(ValueError, match="bogus"):
        WorkflowTemplate.model_validate(bad)


def test_resolution_reports_problems_against_the_workflow_file():
    text = f"""\
apiVersion: {API}
kind: SlurmCluster
metadata: {{name: one}}
spec: {{workdir: /tmp/w}}
---
apiVersion: {API}
kind: Workflow
metadata: {{name: loop}}
spec:
  tasks:
    - {{name: a, script: x, dependsOn: [b]}}
    - {{name: b, script: x, dependsOn: [a]}}
---
apiVersion: {API}
kind: Workflow
metadata: {{name: fine}}
spec:
  tasks: [{{name: a, script: x}}]
---
apiVersion: {API}
kind: Workflow
metadata: {{name: elsewhere}}
spec:
  cluster: two
  tasks: [{{name: a, script: x}}]
"""
    resolution = resolve(load_text(text, filename="plan.yaml").resources)
    assert [w.workflow.metadata.name for w in resolution.workflows] == ["fine"]
    assert resolution.workflows[0].cluster.metadata.name == "one"
    invalid = {w.workflow.metadata.name: w.errors for w in resolution.invalid}
    assert invalid["loop"][0].file == "plan.yaml" and invalid["loop"][0].line == 6
    assert "dependency cycle" in invalid["loop"][0].message
    assert "no SlurmCluster 'two'" in invalid["elsewhere"][0].message


def test_two_declarations_of_one_name_are_an_error():
    text = f"apiVersion: {API}\nkind: SlurmCluster\nmetadata: {{name: one}}\nspec: {{workdir: /w}}\n"
    resolution = resolve(load_text(text + "---\n" + text, filename="c.yaml").resources)
    [error] = resolution.errors
    assert error.line == 6 and "already declared at c.yaml:1" in error.message


def test_a_workflow_may_name_candidate_clusters_or_auto():
    clusters = "".join(f"""\
apiVersion: {API}
kind: SlurmCluster
metadata: {{name: {name}}}
spec: {{workdir: /tmp/{name}}}
---
""" for name in ("east", "west", "north"))
    workflows = "\n---\n".join(f"""\
apiVersion: {API}
kind: Workflow
metadata: {{name: {name}}}
spec:
  cluster: {cluster}
  tasks: [{{name: a, script: x}}]""" for name, cluster in (
        ("listed", "[west, east, west]"), ("any", "auto"), ("single", "[north]"), ("one", "east"),
        ("unknown", "[east, south]"), ("empty", "[]")))
    resolution = resolve(load_text(clusters + workflows, filename="plan.yaml").resources)
    found = {w.workflow.metadata.name: w for w in resolution.workflows}
    assert [c.metadata.name for c in found["listed"].candidates] == ["west", "east"]
    assert found["listed"].cluster is None  # chosen by the loop when the workflow starts
    assert [c.metadata.name for c in found["any"].candidates] == ["east", "north", "west"]
    assert found["single"].cluster.metadata.name == "north"
    assert found["one"].cluster.metadata.name == "east" and len(found["one"].candidates) == 1
    invalid = {w.workflow.metadata.name: [e.message for e in w.errors] for w in resolution.invalid}
    assert invalid["unknown"] == ["no SlurmCluster 'south'; declared: east, north, west"]
    assert invalid["empty"] == ["cluster: the list of candidate clusters is empty"]
