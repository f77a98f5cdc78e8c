"""Values the job script, sbatch or the output fetch would refuse are refused when the manifest is
loaded, with file, line and field; the run-time checks stay as a safety net and agree."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reconciler.api import Task
from reconciler.api.workflow import Resources
from reconciler.manifests.loader import load_text
from reconciler.manifests.resolve import resolve
from reconciler.slurm.script import render_script
from reconciler.slurm.tags import JobTag
from reconciler.slurm.transport.local import LocalTransport

HEAD = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata:
  name: {name}
spec:
  tasks:
"""


def _errors(text: str) -> list[str]:
    result = load_text(textwrap.dedent(text), filename="plans/w.yaml")
    assert not result.resources
    return [str(error) for error in result.errors]


@pytest.mark.parametrize(("task", "line", "path", "words"), [
    ('- name: a\n    command: [echo]\n    outputs: [ok.txt, /etc/passwd]', 9, "spec.tasks[0].outputs[1]",
     "is absolute"),
    ('- name: a\n    command: [echo]\n    outputs:\n      - ../../x', 10, "spec.tasks[0].outputs[0]", "('..')"),
    ('- name: a\n    command: [echo]\n    outputs: ["./"]', 9, "spec.tasks[0].outputs[0]", "names no file"),
    ('- name: a\n    script: "echo \\0"', 8, "spec.tasks[0].script", "NUL"),
    ('- name: a\n    command: [echo, "a\\0b"]', 8, "spec.tasks[0].command[1]", "NUL"),
    ('- name: a\n    command: [echo]\n    env: {X: "\\0"}', 9, "spec.tasks[0].env", "X must not contain a NUL"),
    ('- name: a\n    command: [echo]\n    array: {items: [a, "\\0"]}', 9, "spec.tasks[0].array.items[1]", "NUL"),
    ('- name: a\n    command: [echo]\n    workdir: "x\\ny"', 9, "spec.tasks[0].workdir", "line break"),
    ('- name: a\n    command: [echo]\n    workdir: my-packjob', 9, "spec.tasks[0].workdir", "'packjob'"),
    ('- name: packjob\n    command: [echo]', 7, "spec.tasks[0].name", "'packjob'"),
    ('- name: a\n    command: [echo]\n    resources: {account: PackJob}', 9, "spec.tasks[0].resources.account",
     "'packjob'"),
])
def test_a_task_value_that_could_never_run_is_refused_at_its_line(task: str, line: int, path: str,
                                                                    words: str) -> None:
    errors = _errors(HEAD.format(name="w") + "  " + task + "\n")
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"plans/w.yaml:{line}: {path}: ")
    assert words in errors[0]


def test_a_workflow_name_sbatch_would_mangle_is_refused() -> None:
    errors = _errors(HEAD.format(name="packjob-nightly") + "  - name: a\n    command: [echo]\n")
    assert errors == ["plans/w.yaml:3: metadata: name must not contain 'packjob': sbatch erases that word from "
                      "#SBATCH lines"]


@pytest.mark.parametrize(("workdir", "words"), [
    ("scratch/runs", "must be an absolute path"),
    ("/scratch/a\\\\b", "backslash"),
    ("/scratch/packjob", "'packjob'"),
])
def test_a_cluster_workdir_that_cannot_hold_runs_is_refused(workdir: str, words: str) -> None:
    errors = _errors(f"""\
        apiVersion: hpc.reconciler.dev/v1alpha1
        kind: SlurmCluster
        metadata:
          name: c
        spec:
          workdir: "{workdir}"
        """)
    assert len(errors) == 1 and errors[0].startswith("plans/w.yaml:6: spec.workdir: ") and words in errors[0], errors


def test_a_template_value_is_checked_after_substitution() -> None:
    text = textwrap.dedent("""\
        apiVersion: hpc.reconciler.dev/v1alpha1
        kind: WorkflowTemplate
        metadata:
          name: t
        spec:
          parameters: [{name: out}]
          tasks:
            - name: a
              command: [echo]
              outputs: ["{{ params.out }}"]
        ---
        apiVersion: hpc.reconciler.dev/v1alpha1
        kind: Workflow
        metadata:
          name: w
        spec:
          templateRef: {name: t}
          arguments: {out: /etc/shadow}
        """)
    loaded = load_text(text, filename="plans/w.yaml")
    assert not loaded.errors
    resolution = resolve(loaded.resources, require_cluster=False)
    [invalid] = resolution.invalid
    [error] = invalid.errors
    assert str(error).startswith("plans/w.yaml:12: spec.arguments: after substitution: tasks.0.outputs.0: ")
    assert "is absolute" in error.message


def test_the_run_time_checks_still_refuse_what_slipped_past(tmp_path: Path) -> None:
    """A value built without validation (model_construct) still never reaches sbatch or the fetch."""
    task = Task.model_construct(name="a", command=["echo", "a\0b"], script=None, env={}, inputs=[], array=None,
                                workdir=None, type=Task.model_fields["type"].default, depends_on=[])
    with pytest.raises(ValueError, match="NUL"):
        render_script(workflow="w", namespace="default", task=task,
                      tag=JobTag(uid="u", task="a", attempt=0, part=0, fingerprint="f"), resources=Resources(),
                      run_dir="/tmp/r", log_dir="/tmp/l", indices=None, parallelism=None)
    with pytest.raises(ValueError, match="absolute"):
        LocalTransport().fetch(str(tmp_path), ["/etc/passwd"], tmp_path / "out")
