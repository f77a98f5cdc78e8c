"""Task inputs without a cluster: the model, the digests in the fingerprint, the missing-input
condition from plain data, finding files in a folder source, the job's own copy of upstream
outputs (run by bash) and staging through the local transport."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from reconciler.api import Capacity, Task, TaskPhase, WorkflowPhase, WorkflowSpec
from reconciler.core.fingerprint import fingerprints
from reconciler.core.inputs import TaskInputs, combined_digest, expand, fixed_prefix
from reconciler.core.observed import JobKey, JobOutcome, ObservedJob
from reconciler.core.plan import Cancel, Submit
from reconciler.core.planner import DesiredWorkflow, plan_cluster
from reconciler.engine.staging import blob_dir, find_inputs, stage
from reconciler.slurm.script import render_script, upstream_files
from reconciler.slurm.tags import JobTag
from reconciler.slurm.transport import LocalTransport
from reconciler.sources.base import FileContent, SourceError
from reconciler.sources.directory import DirectoryFiles
from reconciler.sources.git import GitFiles
from tests.unit.reconcile_world import T0, resolved, view

PIPELINE = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: slide}
spec:
  tasks:
    - {name: tile, script: "true"}
    - name: segment
      script: ./segment.sh
      dependsOn: [tile]
      inputs: [segment.sh, "params/*.json", {task: tile, path: "tiles/*.tif"}]
    - {name: report, script: "true", dependsOn: [segment]}
    - {name: other, script: "true"}
"""


def task(**fields) -> Task:
    return Task.model_validate({"name": "t", "script": "true", **fields})


# -- the model ---------------------------------------------------------------------------------


def test_inputs_take_bare_paths_upstream_outputs_and_config_maps():
    t = task(dependsOn=["tile"], inputs=["./segment.sh", {"task": "tile", "path": "tiles/*.tif"},
                                         {"configMap": "params", "key": "a.json"}])
    assert [(i.path, i.task, i.config_map, i.key) for i in t.inputs] == [
        ("segment.sh", None, None, None), ("tiles/*.tif", "tile", None, None), (None, None, "params", "a.json")]
    assert t.to_wire()["inputs"][0] == {"path": "segment.sh"}


@pytest.mark.parametrize(("inputs", "words"), [
    (["/etc/passwd"], "should match pattern"),
    (["../secret"], "must not leave its folder"),
    (["a/../../b"], "must not leave its folder"),
    (["a b"], "should match pattern"),
    (["$(reboot)"], "should match pattern"),
    ([{"task": "tile", "path": "x"}], "add 'tile' to dependsOn"),
    ([{"configMap": "p", "path": "x"}], "takes no path or task"),
    ([{"key": "x"}], "key applies only to a configMap"),
    ([{"task": "tile"}], "needs a path"),
])
def test_bad_inputs_are_refused_with_the_reason(inputs, words):
    with pytest.raises(ValidationError, match=words.replace("(", r"\(").replace("$", r"\$")):
        task(inputs=inputs)


def test_an_approval_task_takes_no_inputs():
    with pytest.raises(ValidationError, match="takes no inputs"):
        Task.model_validate({"name": "ok", "type": "approval", "inputs": ["a.txt"]})


def test_globs_match_one_segment_at_a_time():
    names = ["p/a.json", "p/b.json", "p/sub/c.json", "p/a.txt", "q.json"]
    assert expand("p/*.json", names) == ["p/a.json", "p/b.json"]
    assert expand("p/*/*.json", names) == ["p/sub/c.json"]
    assert expand("*.json", names) == ["q.json"]
    assert fixed_prefix("plans/params/*.json") == "plans/params"
    assert fixed_prefix("plans/*/x.json") == "plans"


# -- fingerprints ------------------------------------------------------------------------------


def test_input_digests_rerun_the_task_and_what_follows_it_only():
    graph = resolved(PIPELINE).graph
    before = fingerprints(graph, {"segment": "d1"})
    after = fingerprints(graph, {"segment": "d2"})
    assert {name for name in before if before[name] != after[name]} == {"segment", "report"}
    assert fingerprints(graph, {"segment": "d1"}) == before


def test_a_task_without_inputs_keeps_its_fingerprint():
    # The value a task without inputs had before inputs existed: a change here reruns every
    # finished task of every workflow after an upgrade.
    assert fingerprints(resolved(PIPELINE).graph)["tile"] == "99d9ae6b94cd4648"


def test_the_digest_does_not_depend_on_the_order_files_were_found_in():
    assert combined_digest([("a", "1"), ("b", "2")]) == combined_digest([("b", "2"), ("a", "1")])
    assert combined_digest([("a", "1"), ("b", "2")]) != combined_digest([("a", "2"), ("b", "1")])


# -- the missing-input condition ---------------------------------------------------------------


def _plan(inputs):
    desired = DesiredWorkflow(uid="uid-1", resolved=resolved(PIPELINE), generation=3, inputs=inputs)
    [result] = plan_cluster([desired], view=view(), capacity=Capacity(), now=T0)
    return result


def test_a_missing_input_holds_its_task_and_says_why_while_the_rest_runs():
    message = "task segment: input params/*.json not found (named in plan.yaml): the pattern matches no file"
    result = _plan({"segment": TaskInputs(digest="d", missing=(message,))})
    submitted = {a.key.task for a in result.actions if isinstance(a, Submit)}
    assert submitted == {"tile", "other"}
    segment = result.status.tasks["segment"]
    assert (segment.phase, segment.reason, segment.message) == (TaskPhase.WAITING, "InputMissing", message)
    assert result.status.tasks["report"].phase is TaskPhase.WAITING
    conditions = {c.type: c for c in result.status.conditions}
    assert (conditions["InputsReady"].status.value, conditions["InputsReady"].reason) == ("False", "InputMissing")
    assert conditions["InputsReady"].message == message and conditions["InputsReady"].observed_generation == 3
    assert conditions["Stalled"].reason == "InputMissing"
    assert result.status.phase is WorkflowPhase.RUNNING


def test_inputs_that_are_all_there_leave_no_condition_and_go_out():
    result = _plan({"segment": TaskInputs(digest="d")})
    assert {a.key.task for a in result.actions if isinstance(a, Submit)} == {"tile", "segment", "report", "other"}
    assert {c.type for c in result.status.conditions} == {"Ready", "Reconciling"}


# -- finding files in a folder -----------------------------------------------------------------


def _folder(tmp_path: Path) -> Path:
    (tmp_path / "plans" / "params").mkdir(parents=True)
    (tmp_path / "plans" / "segment.sh").write_text("#!/bin/sh\necho seg\n")
    (tmp_path / "plans" / "segment.sh").chmod(0o755)
    (tmp_path / "plans" / "params" / "a.json").write_text('{"a": 1}')
    (tmp_path / "plans" / "params" / "b.json").write_text('{"b": 2}')
    return tmp_path


def _found(root: Path):
    workflow = resolved(PIPELINE)
    workflow = replace(workflow, location=replace(workflow.location, file="plans/slide.yaml"))
    return find_inputs(workflow, content=DirectoryFiles(root), config_maps=None)["segment"]


def test_inputs_are_found_relative_to_the_manifest_and_their_content_is_the_digest(tmp_path):
    root = _folder(tmp_path)
    found = _found(root)
    assert [(f.target, f.executable) for f in found.files] == [
        ("params/a.json", False), ("params/b.json", False), ("segment.sh", True)]
    assert found.state.complete
    (root / "plans" / "params" / "b.json").write_text('{"b": 3}')
    assert _found(root).state.digest != found.state.digest


def test_a_glob_matching_nothing_and_a_missing_file_are_named(tmp_path):
    root = _folder(tmp_path)
    for path in (root / "plans" / "params").iterdir():
        path.unlink()
    (root / "plans" / "segment.sh").unlink()
    found = _found(root)
    assert found.state.missing == (
        "task segment: input segment.sh not found (named in plans/slide.yaml): no such file in the source",
        "task segment: input params/*.json not found (named in plans/slide.yaml): the pattern matches no file in "
        "the source",
    )


def test_a_symlink_is_not_an_input(tmp_path):
    root = _folder(tmp_path)
    (root / "plans" / "segment.sh").unlink()
    (root / "plans" / "segment.sh").symlink_to("/etc/passwd")
    assert "segment.sh not found" in _found(root).state.missing[0]


# -- the job copies an upstream task's outputs -------------------------------------------------


def _copy_script(tmp_path: Path, pattern: str) -> tuple[str, Path, Path]:
    tile = Task(name="tile", script="true")
    segment = Task.model_validate({"name": "segment", "script": "ls -R > listing.txt", "dependsOn": ["tile"],
                                   "inputs": [{"task": "tile", "path": pattern}]})
    upstream = upstream_files(segment, {"tile": tile, "segment": segment}, cluster_workdir=str(tmp_path),
                              namespace="default", workflow="slide")
    run_dir = tmp_path / "default" / "slide" / "segment"
    script = render_script(workflow="slide", namespace="default", task=segment,
                           tag=JobTag(uid="u", task="segment", attempt=1, part=0, fingerprint="f"),
                           resources=segment.resources, run_dir=str(run_dir), log_dir=str(tmp_path / "logs"),
                           indices=None, parallelism=None, inputs_from=upstream)
    return script, tmp_path / "default" / "slide" / "tile", run_dir


def test_the_job_copies_the_upstream_outputs_its_pattern_names(tmp_path):
    script, tile_dir, run_dir = _copy_script(tmp_path, "tiles/*.tif")
    (tile_dir / "tiles").mkdir(parents=True)
    (tile_dir / "tiles" / "0.tif").write_text("zero")
    (tile_dir / "tiles" / "1.tif").write_text("one")
    (tile_dir / "tiles" / "notes.txt").write_text("not this")
    run_dir.mkdir(parents=True)
    subprocess.run(["bash", "-c", script], cwd=run_dir, check=True, timeout=30)
    assert sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()) == [
        "listing.txt", "tiles/0.tif", "tiles/1.tif"]
    assert (run_dir / "tiles" / "1.tif").read_text() == "one"


def test_the_job_ends_with_a_message_when_the_upstream_left_nothing(tmp_path):
    script, tile_dir, run_dir = _copy_script(tmp_path, "tiles/*.tif")
    tile_dir.mkdir(parents=True)
    run_dir.mkdir(parents=True)
    done = subprocess.run(["bash", "-c", script], cwd=run_dir, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert f"input tiles/*.tif of task tile: no such file in {tile_dir}" in done.stderr
    assert not (run_dir / "listing.txt").exists()


# -- staging through the local transport -------------------------------------------------------


def test_staging_sends_each_blob_once_and_places_files_with_their_mode(tmp_path):
    root = _folder(tmp_path / "source")
    workdir = tmp_path / "cluster"
    run_dir = workdir / "default" / "slide" / "segment"
    files = _found(root).files
    transport = LocalTransport()
    first = stage(transport, cluster_workdir=str(workdir), run_dir=str(run_dir), files=files)
    assert len(first.uploaded) == 3 and first.placed == 3
    assert (run_dir / "params" / "a.json").read_text() == '{"a": 1}'
    assert os.access(run_dir / "segment.sh", os.X_OK) and not os.access(run_dir / "params" / "a.json", os.X_OK)
    blob = Path(blob_dir(str(workdir))) / files[0].digest
    inode = blob.stat().st_ino
    (root / "plans" / "params" / "b.json").write_text('{"b": 3}')
    second = stage(transport, cluster_workdir=str(workdir), run_dir=str(run_dir), files=_found(root).files)
    assert len(second.uploaded) == 1  # only the changed file
    assert blob.stat().st_ino == inode
    assert (run_dir / "params" / "b.json").read_text() == '{"b": 3}'
    assert not list(run_dir.rglob("*staging*"))


def test_a_git_source_reads_inputs_from_the_commit_not_the_working_copy(tmp_path):
    repo = tmp_path / "repo"
    environment = {**os.environ, "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b", "GIT_COMMITTER_NAME": "a",
                   "GIT_COMMITTER_EMAIL": "a@b"}

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, env=environment, check=True, capture_output=True,
                              text=True).stdout.strip()

    _folder(repo)
    (repo / "plans" / "link.sh").symlink_to("segment.sh")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "plans")
    (repo / "plans" / "params" / "a.json").write_text("edited, never committed")
    (repo / "plans" / "params" / "c.json").write_text("untracked")
    files = GitFiles(repo, git("rev-parse", "HEAD"))
    assert files.listing("plans/params") == ["plans/params/a.json", "plans/params/b.json"]
    assert files.read("plans/params/a.json") == FileContent(data=b'{"a": 1}', executable=False)
    assert files.read("plans/segment.sh") == FileContent(data=b"#!/bin/sh\necho seg\n", executable=True)
    assert files.read("plans/link.sh") is None  # a symlink is not an input
    assert files.read("plans/params") is None and files.read("plans/nothing.sh") is None
    # An object the clone lacks is a read that failed this time, not a crash of the tick.
    with pytest.raises(SourceError, match=r"cannot read plans/segment\.sh at 000000000000"):
        GitFiles(repo, "0" * 40).read("plans/segment.sh")
    blob = git("rev-parse", "HEAD:plans/params/b.json")
    (repo / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    with pytest.raises(SourceError, match=r"cannot read plans/params/b\.json"):
        files.read("plans/params/b.json")
    # A commit never changes: what was read once is not read from Git again on the next tick.
    shutil.rmtree(repo / ".git")
    assert files.read("plans/params/a.json") == FileContent(data=b'{"a": 1}', executable=False)
    assert files.listing("plans/params") == ["plans/params/a.json", "plans/params/b.json"]


def test_a_job_running_while_its_inputs_go_missing_is_left_alone():
    workflow = resolved(PIPELINE)
    old = fingerprints(workflow.graph, {"segment": "d1"})["segment"]
    running = ObservedJob(key=JobKey("segment", 1), job_id="77", fingerprint=old, indices=None,
                          outcome=JobOutcome(phase=TaskPhase.RUNNING))
    missing = TaskInputs(digest="d0", missing=("task segment: input params/*.json not found",))
    desired = DesiredWorkflow(uid="uid-1", resolved=workflow, generation=1, observed=(running,),
                              inputs={"segment": missing})
    [result] = plan_cluster([desired], view=view(), capacity=Capacity(), now=T0)
    assert not [a for a in result.actions if isinstance(a, Cancel)]
    changed = replace(desired, inputs={"segment": TaskInputs(digest="d2")})
    [result] = plan_cluster([changed], view=view(), capacity=Capacity(), now=T0)
    assert [a.job_ids for a in result.actions if isinstance(a, Cancel)] == [("77",)]


def test_an_approval_task_has_no_outputs_to_take_as_inputs():
    with pytest.raises(ValidationError, match="input x of task review: an approval task leaves no files"):
        WorkflowSpec.model_validate({"tasks": [
            {"name": "review", "type": "approval"},
            {"name": "use", "script": "true", "dependsOn": ["review"], "inputs": [{"task": "review", "path": "x"}]},
        ]})
