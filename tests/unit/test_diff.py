"""``reconciler diff``: the pure comparison (core/diff.py) and the command's output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.api import TaskPhase, TaskStatus, WorkflowStatus
from reconciler.cli.main import main
from reconciler.core.desired import classify_desired
from reconciler.core.diff import DiffReport, StoredRun, TaskChange, WorkflowChange, diff
from reconciler.core.fingerprint import fingerprints
from reconciler.manifests.loader import load_text
from reconciler.store.database import Store
from tests.unit.reconcile_world import CLUSTER, T0, resolved

DOSE = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: dose, labels: {team: physics}}
spec:
  defaults: {resources: {time: "00:10:00"}}
  tasks:
    - {name: prepare, script: "true"}
    - {name: simulate, script: "run", dependsOn: [prepare], env: {DOSE: "1", MODE: fast},
       retry: {limit: 1}}
    - {name: report, script: "report", dependsOn: [simulate]}
    - {name: side, script: "true", dependsOn: [prepare]}
"""


def stored_run(workflow_yaml: str, *, phases: dict[str, TaskPhase] | None = None, job_ids=None,
               inputs=None) -> StoredRun:
    """A run as the loop leaves it: the resource, and each task's fingerprint in its status."""
    wf = resolved(workflow_yaml)
    fps = fingerprints(wf.graph, inputs) if inputs else fingerprints(wf.graph)
    phases = phases or {}
    tasks = {name: TaskStatus(phase=phases.get(name, TaskPhase.SUCCEEDED), fingerprint=fps[name],
                              job_id=(job_ids or {}).get(name)) for name in wf.order}
    meta = wf.workflow.metadata
    return StoredRun(namespace=meta.namespace, name=meta.name, resource=wf.workflow.to_wire(),
                     status=WorkflowStatus(tasks=tasks))


def compare(workflows_yaml: str, stored: list[StoredRun], *, inputs=None) -> DiffReport:
    load = load_text(CLUSTER + "---\n" + workflows_yaml, filename="plan.yaml")
    desired = classify_desired(load, active={(r.namespace, r.name): "plan.yaml" for r in stored})
    return diff(desired=desired, stored=stored, resources=load.resources, inputs=inputs)


def tasks(report: DiffReport, workflow: str = "dose") -> dict[str, TaskChange]:
    [found] = [w for w in report.workflows if w.name == workflow]
    return {t.name: t.change for t in found.tasks}


def test_the_same_manifests_change_nothing():
    report = compare(DOSE, [stored_run(DOSE)])
    assert not report.changed
    assert [w.change for w in report.workflows] == [WorkflowChange.UNCHANGED]
    assert set(tasks(report).values()) == {TaskChange.KEEPS}


def test_a_changed_env_reruns_the_task_and_what_follows_it_and_names_the_field():
    report = compare(DOSE.replace('DOSE: "1"', 'DOSE: "2"'), [stored_run(DOSE)])
    assert report.changed
    assert tasks(report) == {"prepare": TaskChange.KEEPS, "simulate": TaskChange.RERUNS,
                             "report": TaskChange.RERUNS, "side": TaskChange.KEEPS}
    [w] = report.workflows
    by_name = {t.name: t for t in w.tasks}
    assert [(f.path, f.old, f.new) for f in by_name["simulate"].fields] == [("env.DOSE", "1", "2")]
    assert by_name["simulate"].why == ["env.DOSE: '1' -> '2'"]
    assert by_name["report"].upstream == ("simulate",) and by_name["report"].why == ["upstream simulate reruns"]
    assert w.fields == ()


def test_resources_and_script_are_named_and_edits_that_rerun_nothing_are_not():
    changed = DOSE.replace('script: "run"', 'script: "run --fast", resources: {time: "01:00:00"}')
    report = compare(changed.replace("retry: {limit: 1}", "retry: {limit: 5}"), [stored_run(DOSE)])
    [w] = report.workflows
    simulate = next(t for t in w.tasks if t.name == "simulate")
    assert [f.path for f in simulate.fields] == ["resources.time", "script"]
    # Only the retry policy changes: nothing reruns, and the workflow is unchanged.
    assert not compare(DOSE.replace("retry: {limit: 1}", "retry: {limit: 5}"), [stored_run(DOSE)]).changed


def test_a_changed_default_reaches_every_task_and_a_changed_label_is_a_workflow_field():
    report = compare(DOSE.replace('time: "00:10:00"', 'time: "00:20:00"').replace("physics", "chemistry"),
                     [stored_run(DOSE)])
    [w] = report.workflows
    assert set(tasks(report).values()) == {TaskChange.RERUNS}
    assert all(t.fields[0].path == "resources.time" for t in w.tasks)
    assert [(f.path, f.old, f.new) for f in w.fields] == [
        ("spec.defaults.resources.time", "00:10:00", "00:20:00"), ("metadata.labels.team", "physics", "chemistry")]


def test_changed_input_content_is_the_reason_when_nothing_else_changed():
    report = compare(DOSE, [stored_run(DOSE, inputs={"simulate": "a" * 64})], inputs={("default", "dose"): {
        "simulate": "b" * 64}})
    [w] = report.workflows
    simulate = next(t for t in w.tasks if t.name == "simulate")
    assert simulate.change is TaskChange.RERUNS and simulate.inputs and simulate.fields == ()
    assert simulate.why == ["the content of its inputs changed"]


def test_added_and_removed_tasks_and_the_live_jobs_of_tasks_that_rerun():
    new = DOSE.replace('    - {name: side, script: "true", dependsOn: [prepare]}\n',
                       '    - {name: extra, script: "true"}\n').replace('DOSE: "1"', 'DOSE: "3"')
    run = stored_run(DOSE, phases={"simulate": TaskPhase.RUNNING, "side": TaskPhase.RUNNING},
                     job_ids={"simulate": "41", "side": "42"})
    report = compare(new, [run])
    assert tasks(report) == {"prepare": TaskChange.KEEPS, "simulate": TaskChange.RERUNS,
                             "report": TaskChange.RERUNS, "extra": TaskChange.ADDED, "side": TaskChange.REMOVED}
    [w] = report.workflows
    assert w.cancelled_jobs == ("41",)


def test_created_pruned_and_invalid_workflows():
    other = DOSE.replace("{name: dose, labels: {team: physics}}", "{name: gone}")
    broken = DOSE.replace("{name: dose, labels: {team: physics}}", "{name: broken}").replace(
        "dependsOn: [simulate]", "dependsOn: [nowhere]")
    gone = stored_run(other, phases={"simulate": TaskPhase.RUNNING, "report": TaskPhase.SUBMITTED},
                      job_ids={"simulate": "7", "report": "8"})
    report = compare(DOSE + "---\n" + broken, [gone])
    changes = {w.name: w for w in report.workflows}
    assert {name: w.change for name, w in changes.items()} == {
        "dose": WorkflowChange.CREATED, "gone": WorkflowChange.PRUNED, "broken": WorkflowChange.INVALID}
    assert changes["gone"].cancelled_jobs == ("7", "8")
    assert "nowhere" in changes["broken"].errors[0]
    data = report.as_dict()
    assert data["changed"] is True and [w["change"] for w in data["workflows"]] == ["invalid", "created", "pruned"]


def test_a_run_never_ticked_has_every_task_new():
    run = stored_run(DOSE)
    report = compare(DOSE, [StoredRun(namespace=run.namespace, name=run.name, resource=run.resource, status=None)])
    assert set(tasks(report).values()) == {TaskChange.ADDED} and report.changed


# -- the command ---------------------------------------------------------------------------------

@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "plans"
    folder.mkdir()
    (folder / "cluster.yaml").write_text(CLUSTER)
    (folder / "dose.yaml").write_text(DOSE)
    return folder


@pytest.fixture
def state(tmp_path: Path, source: Path) -> Path:
    directory = tmp_path / "state"
    run = stored_run(DOSE)
    with Store(directory / "state.db") as store:
        uid = store.upsert_workflow(namespace="default", name="dose", resource=run.resource, revision=None,
                                    source_file="dose.yaml", now=T0).uid
        assert run.status is not None
        store.save_status(uid, run.status)
    return directory


def test_diff_exits_0_when_nothing_changes(source: Path, state: Path, capsys):
    assert main(["diff", "--source", str(source), "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "= workflow.hpc.reconciler.dev/default/dose unchanged"
    assert out.splitlines()[-1] == "no changes"


def test_diff_exits_1_and_says_what_reruns_and_why(source: Path, state: Path, capsys):
    (source / "dose.yaml").write_text(DOSE.replace('DOSE: "1"', 'DOSE: "2"'))
    assert main(["diff", "--source", str(source), "--state-dir", str(state)]) == 1
    assert capsys.readouterr().out == (
        "~ workflow.hpc.reconciler.dev/default/dose changed (2 of 4 tasks rerun)\n"
        "  = task prepare keeps its result (Succeeded)\n"
        "  = task side keeps its result (Succeeded)\n"
        "  ~ task simulate reruns: env.DOSE: '1' -> '2'\n"
        "  ~ task report reruns: upstream simulate reruns\n"
    )
    assert main(["diff", "--source", str(source), "--state-dir", str(state), "-o", "json"]) == 1
    [workflow] = json.loads(capsys.readouterr().out)["workflows"]
    assert [(t["name"], t["change"]) for t in workflow["tasks"] if t["change"] != "keeps"] == [
        ("simulate", "reruns"), ("report", "reruns")]


def test_diff_without_a_store_creates_everything_and_writes_nothing(source: Path, tmp_path: Path, capsys):
    empty = tmp_path / "nothing"
    assert main(["diff", "--source", str(source), "--state-dir", str(empty)]) == 1
    assert "+ workflow.hpc.reconciler.dev/default/dose created (4 tasks)" in capsys.readouterr().out
    assert not empty.exists()


def test_diff_exits_2_when_the_source_cannot_be_read(tmp_path: Path, state: Path, capsys):
    assert main(["diff", "--source", str(tmp_path / "plans"), "--revision", "main", "--state-dir", str(state)]) == 2
    assert "is not a Git repository" in capsys.readouterr().err
    assert main(["diff", "--source", f"file://{tmp_path}/missing.git", "--state-dir", str(state)]) == 2
    assert "diff: cannot read" in capsys.readouterr().err
