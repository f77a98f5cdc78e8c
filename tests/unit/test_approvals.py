"""Approvals bound to what they approved: the planner, the store (and its migration from
version 1), the manifest's approved: values through whole ticks, reconciler approve, and the
approve annotation's entries."""

from __future__ import annotations

import getpass
import json
import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from reconciler.api import Task, TaskPhase, Workflow, WorkflowStatus
from reconciler.cli.approving import approve
from reconciler.cli.output import describe
from reconciler.core.approvals import (
    APPROVAL_STALE,
    AnnotationEntry,
    Approval,
    ApprovalVia,
    annotation_text,
    declared_approvals,
    parse_annotation,
    pin_entries,
)
from reconciler.core.fingerprint import fingerprints
from reconciler.engine.controller import Controller
from reconciler.store.database import Store
from reconciler.store.schema import MIGRATIONS
from tests.fakes import FakeSlurm, LoginNodes, MemorySource
from tests.unit.reconcile_world import T0, job, later, plan, resolved

REVIEWED = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: reviewed}
spec:
  tasks:
    - {name: prepare, script: "echo threshold=0.5"}
    - {name: review, type: approval, dependsOn: [prepare]}
    - {name: treat, script: "echo treat", dependsOn: [review]}
"""
CHANGED = REVIEWED.replace("threshold=0.5", "threshold=0.6")


def phases(result) -> dict[str, TaskPhase]:
    return {name: task.phase for name, task in result.status.tasks.items()}


def submitted(result) -> list[str]:
    return [action.key.task for action in result.actions if type(action).__name__ == "Submit"]


def given(workflow, task: str = "review", *, via: ApprovalVia = ApprovalVia.CLI, by: str = "alice") -> Approval:
    """An approval of ``task`` as ``workflow`` declares it now."""
    return Approval(task=task, fingerprint=fingerprints(workflow.graph)[task], via=via, by=by, at=T0)


# -- the planner ---------------------------------------------------------------------------------

def test_an_approval_of_the_current_inputs_counts():
    wf = resolved(REVIEWED)
    result = plan(wf, observed=[job(wf, "prepare", phase=TaskPhase.SUCCEEDED, exit_code=0)], approvals=[given(wf)])
    assert phases(result)["review"] is TaskPhase.SUCCEEDED and submitted(result) == ["treat"]


def test_an_approval_of_other_inputs_is_stale_and_the_task_asks_again():
    before, after = resolved(REVIEWED), resolved(CHANGED)
    approved = plan(before, observed=[job(before, "prepare", phase=TaskPhase.SUCCEEDED, exit_code=0)],
                    approvals=[given(before)])
    assert phases(approved)["review"] is TaskPhase.SUCCEEDED

    # prepare ran again with its new parameter; the old sign-off is kept, but for what it approved.
    rerun = [job(after, "prepare", attempt=2, phase=TaskPhase.SUCCEEDED, exit_code=0)]
    result = plan(after, observed=rerun, approvals=[given(before)], previous=approved.status, now=later(60))
    review = result.status.tasks["review"]
    assert review.phase is TaskPhase.AWAITING_APPROVAL and submitted(result) == []
    assert review.reason == APPROVAL_STALE
    assert "was for different inputs" in review.message and "approved by alice" in review.message
    assert "run reconciler approve again" in review.message
    assert fingerprints(before.graph)["review"] in review.message and review.fingerprint in review.message
    stale = [e for e in result.events if e.reason == APPROVAL_STALE]
    assert len(stale) == 1 and "task review waits for a person again" in stale[0].message

    again = plan(after, observed=rerun, approvals=[given(before), given(after, by="bob")], previous=result.status,
                 now=later(120))
    assert phases(again)["review"] is TaskPhase.SUCCEEDED and submitted(again) == ["treat"]


def test_approving_early_binds_to_the_inputs_shown_and_does_not_skip_prerequisites():
    wf = resolved(REVIEWED)
    running = plan(wf, observed=[job(wf, "prepare", phase=TaskPhase.RUNNING)], approvals=[given(wf)])
    assert phases(running)["review"] is TaskPhase.WAITING and submitted(running) == []
    done = plan(wf, observed=[job(wf, "prepare", phase=TaskPhase.SUCCEEDED, exit_code=0)], approvals=[given(wf)])
    assert phases(done)["review"] is TaskPhase.SUCCEEDED and submitted(done) == ["treat"]


def test_a_manifest_approval_that_went_stale_says_how_to_approve_in_the_manifest():
    before, after = resolved(REVIEWED), resolved(CHANGED)
    result = plan(after, observed=[job(after, "prepare", phase=TaskPhase.SUCCEEDED, exit_code=0)],
                  approvals=[given(before, via=ApprovalVia.MANIFEST, by="true")])
    message = result.status.tasks["review"].message
    assert "approved in the manifest" in message and "change the task's approved: value" in message


# -- approved: in the manifest -------------------------------------------------------------------

def test_approved_takes_true_or_a_note():
    assert declared_approvals(resolved(REVIEWED.replace("type: approval,", "type: approval, approved: true,"))
                              .tasks) == {"review": "true"}
    noted = REVIEWED.replace("type: approval,", 'type: approval, approved: "masks checked (ana)",')
    assert declared_approvals(resolved(noted).tasks) == {"review": "masks checked (ana)"}
    assert declared_approvals(resolved(REVIEWED).tasks) == {"review": None}
    for bad in ("", "   ", "x" * 201):
        with pytest.raises(ValidationError, match="a note must have 1 to 200 characters"):
            Task(name="review", type="approval", approved=bad)
    with pytest.raises(ValidationError, match="only to approval"):
        Task(name="t", script="x", approved="looks fine")


def test_a_manifest_value_is_recorded_once_for_the_task_as_it_was_then(tmp_path: Path):
    with Store(tmp_path / "state.db") as store:
        uid = store.upsert_workflow(namespace="default", name="reviewed", resource=resource(), revision="r1",
                                    source_file=None, now=T0).uid
        assert store.record_declared(uid, {"review": "true"}, fingerprints={"review": "fp1"}, revision="r1",
                                     now=T0) == ["review"]
        # The same value in a later revision, with something before it changed: nothing new.
        assert store.record_declared(uid, {"review": "true"}, fingerprints={"review": "fp2"}, revision="r2",
                                     now=later(1)) == []
        approvals = store.approvals(uid)
        assert approvals.current("review", fingerprint="fp1") is not None
        assert approvals.current("review", fingerprint="fp2") is None
        stale = approvals.stale("review", fingerprint="fp2")
        assert stale is not None and stale.via is ApprovalVia.MANIFEST and stale.revision == "r1"
        # A new note approves again, at the fingerprint of its revision.
        assert store.record_declared(uid, {"review": "v2 ok"}, fingerprints={"review": "fp2"}, revision="r3",
                                     now=later(2)) == ["review"]
        assert store.approvals(uid).current("review", fingerprint="fp2").by == "v2 ok"
        # Withdrawn, then set again: approves again.
        assert store.record_declared(uid, {"review": None}, fingerprints={"review": "fp3"}, revision="r4",
                                     now=later(3)) == []
        assert store.record_declared(uid, {"review": "v2 ok"}, fingerprints={"review": "fp3"}, revision="r5",
                                     now=later(4)) == ["review"]


def workflow_text(*, threshold: str, approved: str) -> str:
    return f"""\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: SlurmCluster
metadata: {{name: dev}}
spec: {{workdir: /work/dev}}
---
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {{name: reviewed}}
spec:
  defaults: {{resources: {{partition: debug, time: "00:05:00"}}}}
  tasks:
    - {{name: prepare, script: "echo threshold={threshold}"}}
    - {{name: review, type: approval, dependsOn: [prepare], approved: {approved}}}
    - {{name: treat, script: "echo treat", dependsOn: [review]}}
"""


def sbatches(node: FakeSlurm, task: str) -> int:
    """How many times the task was submitted (its jobs may have left the queue since)."""
    return sum(1 for call in node.calls if call and "sbatch" in call[0] and any(f"/scripts/{task}." in w for w in call))


def test_whole_ticks_an_approved_value_counts_for_the_revision_it_came_with(tmp_path: Path):
    node = FakeSlurm("login")
    source = MemorySource(workflow_text(threshold="0.5", approved="true"))
    with Store(tmp_path / "state.db") as store:
        loop = Controller(source=source, store=store, state_dir=tmp_path, interval=30.0, connect=LoginNodes(
            {"/work/dev": node}))

        def tick_and_finish(task: str) -> WorkflowStatus:
            """A tick, then the task's newest job ends (squeue shows it COMPLETED), then a tick."""
            loop.tick()
            newest = [j for j in node.submitted() if j.name == f"reviewed.{task}"][-1]
            newest.state, newest.reason = "COMPLETED", "None"
            loop.tick()
            stored = store.workflow("default", "reviewed")
            assert stored is not None and stored.status is not None
            return stored.status

        status = tick_and_finish("prepare")
        assert status.tasks["review"].phase is TaskPhase.SUCCEEDED, status.tasks["review"]
        assert sbatches(node, "treat") == 1

        # A new parameter before the approval, approved: true left as it was: a person is asked again.
        source.text = workflow_text(threshold="0.6", approved="true")
        status = tick_and_finish("prepare")
        assert status.tasks["review"].phase is TaskPhase.AWAITING_APPROVAL, status.tasks["review"]
        assert status.tasks["review"].reason == APPROVAL_STALE
        loop.tick()
        assert sbatches(node, "treat") == 1

        # Committing the approval anew (a note) approves the task as it is now.
        source.text = workflow_text(threshold="0.6", approved='"0.6 checked (ana)"')
        loop.tick()
        assert sbatches(node, "treat") == 2


# -- the store's migration from version 1 ----------------------------------------------------------

def resource() -> dict:
    return Workflow.model_validate({"metadata": {"name": "reviewed"}, "spec": {"tasks": [
        {"name": "prepare", "script": "x"}, {"name": "review", "type": "approval", "dependsOn": ["prepare"]},
        {"name": "early", "type": "approval"}, {"name": "gate", "type": "approval"}]}}).to_wire()


def test_a_version_1_approval_keeps_counting_for_what_it_approved(tmp_path: Path):
    path = tmp_path / "state.db"
    raw = sqlite3.connect(path, isolation_level=None)
    MIGRATIONS[1](raw)
    raw.execute("PRAGMA user_version = 1")
    status = {"phase": "Running", "tasks": {"review": {"phase": "AwaitingApproval", "fingerprint": "fp-review"},
                                            "gate": {"phase": "AwaitingApproval", "fingerprint": "fp-gate"}}}
    raw.execute("INSERT INTO workflows (uid, namespace, name, generation, resource, spec_hash, revision, "
                "source_file, labels, created_at, removed_at, status) VALUES (?,?,?,?,?,?,?,?,?,?,NULL,?)",
                ("u1", "default", "reviewed", 1, json.dumps(resource()), "h", "r1", None, "{}",
                 T0.isoformat(), json.dumps(status)))
    raw.executemany("INSERT INTO approvals (uid, task, approved_by, approved_at) VALUES (?,?,?,?)", [
        ("u1", "review", "alice", T0.isoformat()),
        ("u1", "gate", "annotation hpc.reconciler.dev/approve", T0.isoformat()),
        ("u1", "early", "bob", T0.isoformat()),  # given before the loop showed the task: nothing to bind to
    ])
    raw.close()

    with Store(path) as store:
        approvals = store.approvals("u1")
        review = approvals.current("review", fingerprint="fp-review")
        assert review is not None and review.by == "alice" and review.via is ApprovalVia.CLI and review.at == T0
        gate = approvals.current("gate", fingerprint="fp-gate")
        assert gate is not None and gate.via is ApprovalVia.ANNOTATION
        assert approvals.tasks == {"review", "gate"}


# -- reconciler approve ----------------------------------------------------------------------------

def stored_with(tmp_path: Path, review: dict | None) -> Store:
    store = Store(tmp_path / "state.db")
    uid = store.upsert_workflow(namespace="default", name="reviewed", resource=resource(), revision="r1",
                                source_file=None, now=T0).uid
    if review is not None:
        store.save_status(uid, WorkflowStatus.model_validate({"tasks": {"review": review}}))
    return store


def test_approve_binds_to_the_fingerprint_the_status_shows(tmp_path: Path, capsys):
    stored_with(tmp_path, {"phase": "AwaitingApproval", "fingerprint": "fp-shown"}).close()
    assert approve(state=str(tmp_path), name="reviewed", task="review") == 0
    out = capsys.readouterr().out
    assert "task review approved (inputs fp-shown)" in out and "note:" not in out
    with Store(tmp_path / "state.db") as store:
        [given_now] = store.approvals(store.workflow("default", "reviewed").uid).given
    assert (given_now.fingerprint, given_now.via, given_now.by) == ("fp-shown", ApprovalVia.CLI, getpass.getuser())


def test_approving_a_task_not_awaiting_approval_says_what_it_means(tmp_path: Path, capsys):
    stored_with(tmp_path, {"phase": "Waiting", "fingerprint": "fp-early"}).close()
    assert approve(state=str(tmp_path), name="reviewed", task="review") == 0
    out = capsys.readouterr().out
    assert "note: task review is Waiting, not awaiting approval" in out and "if they change, review asks again" in out
    with Store(tmp_path / "state.db") as store:
        assert store.approvals(store.workflow("default", "reviewed").uid).current(
            "review", fingerprint="fp-early") is not None


def test_approving_an_approved_task_or_one_never_planned(tmp_path: Path, capsys):
    stored_with(tmp_path, None).close()
    assert approve(state=str(tmp_path), name="reviewed", task="review") == 1
    assert "shows no task review yet" in capsys.readouterr().err
    Path(tmp_path / "state.db").unlink()
    stored_with(tmp_path, {"phase": "Succeeded", "fingerprint": "fp-done"}).close()
    assert approve(state=str(tmp_path), name="reviewed", task="review") == 0
    assert "already approved for its current inputs (fp-done)" in capsys.readouterr().out


# -- the approve annotation ------------------------------------------------------------------------

def test_annotation_entries_are_pinned_to_the_fingerprint_shown():
    entries = parse_annotation(" review , gate=fp-old,, later ")
    assert entries == (AnnotationEntry("review"), AnnotationEntry("gate", "fp-old"), AnnotationEntry("later"))
    pinned = pin_entries(entries, shown={"review": "fp-now", "gate": "fp-new"})
    # A pinned entry keeps what it approved; a task the status does not show yet stays bare.
    assert annotation_text(pinned) == "review=fp-now,gate=fp-old,later"
    assert parse_annotation(None) == ()


def test_describe_names_the_inputs_an_approval_is_for_and_why_it_asks_again(tmp_path: Path):
    before, after = resolved(REVIEWED), resolved(CHANGED)
    result = plan(after, observed=[job(after, "prepare", phase=TaskPhase.SUCCEEDED, exit_code=0)],
                  approvals=[given(before)])
    with stored_with(tmp_path, None) as store:
        stored = store.workflow("default", "reviewed")
        store.save_status(stored.uid, result.status)
        text = describe(store.workflow("default", "reviewed").as_row(), [], now=T0)
    current = fingerprints(after.graph)["review"]
    assert f"reconciler approve reviewed review  (approves inputs {current})" in text
    assert "was for different inputs" in text
