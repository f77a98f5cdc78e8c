"""``get workflows -l``, ``get tasks`` and task labels in ``describe``, run through the real CLI
against a store in a temporary state directory: one written directly, one a tick of the loop
wrote for a template instance (its tasks' labels come from the template), and one from before
task labels were kept."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.api import TaskPhase, WorkflowStatus
from reconciler.api.workflow import TaskStatus
from reconciler.cli.main import main
from reconciler.engine.controller import Controller
from reconciler.store.database import Store
from reconciler.store.schema import MIGRATIONS
from tests.fakes import FakeSlurm, LoginNodes, MemorySource

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _workflow(name: str, labels: dict[str, str], tasks: list[dict] | None = None, spec: dict | None = None) -> dict:
    return {"apiVersion": "hpc.reconciler.dev/v1alpha1", "kind": "Workflow",
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": spec if spec is not None else {"tasks": tasks or []}}


@pytest.fixture
def state(tmp_path: Path) -> Path:
    directory = tmp_path / "state"
    directory.mkdir()
    with Store(directory / "state.db") as store:
        sim = store.upsert_workflow(namespace="default", name="sim", revision=None, source_file=None, now=NOW,
                                    resource=_workflow("sim", {"team": "physics", "tier": "gpu"}, [
                                        {"name": "prep", "command": ["true"], "labels": {"stage": "pre"}},
                                        {"name": "solve", "command": ["true"], "dependsOn": ["prep"],
                                         "labels": {"stage": "main", "gpu": "a100"}},
                                    ]))
        store.save_status(sim.uid, WorkflowStatus(tasks={
            "prep": TaskStatus(phase=TaskPhase.SUCCEEDED, job_id="101", attempts=1, exit_code=0),
            "solve": TaskStatus(phase=TaskPhase.RUNNING, job_id="102", attempts=2),
        }))
        store.upsert_workflow(namespace="default", name="chem", revision=None, source_file=None, now=NOW,
                              resource=_workflow("chem", {"team": "chemistry"}, [
                                  {"name": "mix", "command": ["true"], "labels": {"stage": "main"}}]))
        store.upsert_workflow(namespace="default", name="bare", revision=None, source_file=None, now=NOW,
                              resource=_workflow("bare", {}, [{"name": "only", "command": ["true"]}]))
    return directory


def _names(out: str) -> list[str]:
    return sorted(line.split()[1] for line in out.splitlines()[1:])


@pytest.mark.parametrize(("selector", "expected"), [
    ("team=physics", ["sim"]),
    ("team==chemistry", ["chem"]),
    ("team!=physics", ["bare", "chem"]),
    ("team in (physics,chemistry)", ["chem", "sim"]),
    ("team notin (physics)", ["bare", "chem"]),
    ("team", ["chem", "sim"]),
    ("!team", ["bare"]),
    ("team=physics,tier=gpu", ["sim"]),
    ("team=physics,!tier", []),
])
def test_get_workflows_selects_by_every_operator(state: Path, capsys, selector: str, expected: list[str]):
    assert main(["get", "workflows", "-l", selector, "--state-dir", str(state)]) == 0
    assert _names(capsys.readouterr().out) == expected


@pytest.mark.parametrize("command", [["get", "workflows"], ["get", "tasks"]])
def test_a_malformed_selector_fails_naming_the_term(state: Path, capsys, command: list[str]):
    assert main([*command, "-l", "team=physics,tier in (gpu", "--state-dir", str(state)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith('error: couldn\'t parse the selector string "team=physics,tier in (gpu": ')
    assert "unclosed '('" in captured.err
    assert main([*command, "-l", "team=-x", "--state-dir", str(state)]) == 1
    assert "'team=-x'" in capsys.readouterr().err


def _task_rows(out: str) -> list[tuple[str, str]]:
    return sorted((line.split()[1], line.split()[2]) for line in out.splitlines()[1:])


@pytest.mark.parametrize(("selector", "expected"), [
    (None, [("bare", "only"), ("chem", "mix"), ("sim", "prep"), ("sim", "solve")]),
    ("stage=main", [("chem", "mix"), ("sim", "solve")]),
    ("stage!=main", [("bare", "only"), ("sim", "prep")]),
    ("stage in (pre)", [("sim", "prep")]),
    ("stage notin (pre,main)", [("bare", "only")]),
    ("gpu", [("sim", "solve")]),
    ("!stage", [("bare", "only")]),
    ("stage=main,gpu=a100", [("sim", "solve")]),
])
def test_get_tasks_selects_by_task_labels(state: Path, capsys, selector: str | None, expected: list):
    argv = ["get", "tasks", "--state-dir", str(state)] + (["-l", selector] if selector else [])
    assert main(argv) == 0
    assert _task_rows(capsys.readouterr().out) == expected


def test_get_tasks_table_shows_status_and_labels(state: Path, capsys):
    assert main(["get", "tasks", "--workflow", "sim", "--state-dir", str(state)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAMESPACE", "WORKFLOW", "TASK", "PHASE", "JOB", "ATTEMPTS", "LABELS"]
    assert lines[1].split() == ["default", "sim", "prep", "Succeeded", "101", "1", "stage=pre"]
    assert lines[2].split() == ["default", "sim", "solve", "Running", "102", "2", "gpu=a100,stage=main"]
    assert len(lines) == 3


def test_get_tasks_json_and_unknown_workflow(state: Path, capsys):
    assert main(["get", "tasks", "--workflow", "default/chem", "-o", "json", "--state-dir", str(state)]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert [(i["workflow"], i["task"], i["phase"], i["labels"]) for i in items] == [
        ("chem", "mix", "Waiting", {"stage": "main"})]
    assert main(["get", "tasks", "--workflow", "nope", "--state-dir", str(state)]) == 1
    assert 'workflow "nope" not found' in capsys.readouterr().err


def test_get_tasks_reports_none_found(state: Path, capsys):
    assert main(["get", "tasks", "-l", "stage=none", "--state-dir", str(state)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "No tasks found." in captured.err


def test_describe_shows_task_labels(state: Path, capsys):
    assert main(["describe", "workflow", "sim", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    tasks = out[out.index("Tasks:"):].splitlines()
    assert tasks[1].split()[:7] == ["TASK", "PHASE", "JOB", "ATTEMPTS", "EXIT", "CORE-HOURS", "LABELS"]
    assert tasks[2].split()[6] == "stage=pre"
    assert tasks[3].split()[6] == "gpu=a100,stage=main"


def test_describe_without_task_labels_has_no_labels_column(state: Path, capsys):
    assert main(["describe", "workflow", "bare", "--state-dir", str(state)]) == 0
    assert "LABELS" not in capsys.readouterr().out


# -- a template instance's tasks ----------------------------------------------------------------

INSTANCE = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: SlurmCluster
metadata: {name: dev}
spec: {workdir: /work/dev}
---
apiVersion: hpc.reconciler.dev/v1alpha1
kind: WorkflowTemplate
metadata: {name: mosaic}
spec:
  parameters: [{name: slide}]
  defaults: {resources: {partition: debug, time: "00:05:00"}}
  tasks:
    - {name: cut, script: "echo {{ params.slide }}", labels: {stage: pre}}
    - {name: stitch, dependsOn: [cut], script: "echo stitch", labels: {stage: main, gpu: a100}}
---
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: slide-7, labels: {team: histology}}
spec:
  templateRef: {name: mosaic}
  arguments: {slide: s7}
"""


@pytest.fixture
def instance_state(tmp_path: Path) -> Path:
    """A state directory after one tick of the real loop over a template instance."""
    directory = tmp_path / "instance"
    directory.mkdir()
    with Store(directory / "state.db") as store:
        Controller(source=MemorySource(INSTANCE), store=store, state_dir=directory, interval=30.0,
                   connect=LoginNodes({"/work/dev": FakeSlurm()})).tick()
    return directory


def test_a_template_instances_tasks_are_selected_by_their_templates_labels(instance_state: Path, capsys):
    assert main(["get", "tasks", "-l", "stage=main", "--state-dir", str(instance_state)]) == 0
    assert _task_rows(capsys.readouterr().out) == [("slide-7", "stitch")]
    assert main(["get", "tasks", "--workflow", "slide-7", "-o", "json", "--state-dir", str(instance_state)]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert [(i["task"], i["labels"]) for i in items] == [("cut", {"stage": "pre"}),
                                                         ("stitch", {"gpu": "a100", "stage": "main"})]


def test_describe_shows_a_template_instances_task_labels(instance_state: Path, capsys):
    assert main(["describe", "workflow", "slide-7", "--state-dir", str(instance_state)]) == 0
    out = capsys.readouterr().out
    tasks = out[out.index("Tasks:"):].splitlines()
    assert tasks[1].split()[6] == "LABELS"
    assert tasks[2].split()[0] == "cut" and tasks[2].split()[6] == "stage=pre"
    assert tasks[3].split()[0] == "stitch" and tasks[3].split()[6] == "gpu=a100,stage=main"


def test_a_store_from_before_task_labels_were_kept_shows_what_its_manifests_declare(tmp_path: Path, capsys):
    raw = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    for version in sorted(v for v in MIGRATIONS if v < 6):
        MIGRATIONS[version](raw)
    raw.execute("PRAGMA user_version = 5")
    resource = _workflow("old", {}, [{"name": "prep", "command": ["true"], "labels": {"stage": "pre"}},
                                     {"name": "solve", "command": ["true"]}])
    raw.execute("INSERT INTO workflows (uid, namespace, name, generation, resource, spec_hash, labels, created_at) "
                "VALUES ('u1', 'default', 'old', 1, ?, 'h', '{}', '2026-01-01T00:00:00+00:00')",
                (json.dumps(resource),))
    raw.close()
    assert main(["get", "tasks", "-l", "stage", "--state-dir", str(tmp_path)]) == 0
    assert _task_rows(capsys.readouterr().out) == [("old", "prep")]
    with Store(tmp_path / "state.db") as store:
        stored = store.workflow("default", "old")
        assert stored is not None and stored.task_labels == {"prep": {"stage": "pre"}, "solve": {}}
