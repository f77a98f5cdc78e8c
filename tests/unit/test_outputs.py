"""Declared outputs as an obligation, and ``ttlSecondsAfterFinished``: the core's decisions over
plain data, the store's records, and the guard of the cluster-side removal (a real local
transport on a temporary directory)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from reconciler.api import Capacity, SlurmCluster, TaskPhase, Workflow, WorkflowPhase, WorkflowStatus
from reconciler.api.workflow import OutputsPhase
from reconciler.core.cleanup import CleanupOutcome, CleanupRecord
from reconciler.core.fingerprint import fingerprints
from reconciler.core.outputs import OutputRecord, TaskOutputs, retry_delay
from reconciler.core.plan import Cleanup, FetchOutputs
from reconciler.core.planner import DesiredWorkflow, plan_cluster
from reconciler.slurm.client import SlurmClient, UnsafePath
from reconciler.slurm.transport import LocalTransport
from reconciler.store.database import Store
from tests.unit.reconcile_world import T0, fetched, job, later, resolved, view

PLAN = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: imaging}
spec:
  ttlSecondsAfterFinished: 60
  tasks:
    - {name: seg, script: "true", outputs: ["masks/*.png", report.txt]}
    - {name: stats, script: "true", dependsOn: [seg]}
"""


def plan(wf, *, outputs=None, now=T0, previous=None, cleanup=None, observed=None):
    jobs = observed if observed is not None else [job(wf, name, phase=TaskPhase.SUCCEEDED, exit_code=0, finished=T0)
                                                  for name in ("seg", "stats")]
    desired = DesiredWorkflow(uid="uid-1", resolved=wf, generation=1, previous=previous, observed=tuple(jobs),
                              outputs=outputs or TaskOutputs(), cleanup=cleanup)
    [result] = plan_cluster([desired], view=view(), capacity=Capacity(), now=now)
    return result


def record(wf, phase: OutputsPhase, **fields) -> TaskOutputs:
    fields.setdefault("attempt", 1)
    return TaskOutputs((OutputRecord(task="seg", fingerprint=fingerprints(wf.graph)["seg"], phase=phase, **fields),))


def conditions(status: WorkflowStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status.value, c.reason) for c in status.conditions}


def fetches(result) -> list[FetchOutputs]:
    return [a for a in result.actions if isinstance(a, FetchOutputs)]


def test_a_succeeded_task_is_not_done_until_its_outputs_are_fetched():
    wf = resolved(PLAN)
    result = plan(wf)
    [fetch] = fetches(result)
    assert fetch == FetchOutputs("uid-1", "seg", ("masks/*.png", "report.txt"),
                                 fingerprint=fingerprints(wf.graph)["seg"], attempt=1)
    assert result.status.phase is WorkflowPhase.RUNNING and result.status.finished_at is None
    assert result.status.tasks["seg"].phase is TaskPhase.SUCCEEDED
    assert result.status.tasks["seg"].outputs.phase is OutputsPhase.PENDING
    assert conditions(result.status) == {"Ready": ("False", "OutputsPending"),
                                         "Reconciling": ("True", "OutputsPending"),
                                         "OutputsFetched": ("False", "OutputsPending")}
    assert result.status.tasks["stats"].outputs is None  # it declares none


def test_a_lost_fetch_is_planned_again_on_every_tick_until_a_record_settles_it():
    wf = resolved(PLAN)
    first = plan(wf)
    # The tick that planned it stopped early: nothing was recorded, or only that it started.
    assert fetches(plan(wf, previous=first.status, now=later(5)))
    assert fetches(plan(wf, previous=first.status, outputs=record(wf, OutputsPhase.PENDING), now=later(5)))


def test_a_failed_fetch_waits_for_its_backoff_then_is_tried_again():
    wf = resolved(PLAN)
    outputs = record(wf, OutputsPhase.FAILED, tries=2, error="sftp: connection reset", next_try_at=later(4))
    waiting = plan(wf, outputs=outputs, now=later(1))
    assert not fetches(waiting) and waiting.requeue_after == pytest.approx(3.0)
    seg = waiting.status.tasks["seg"].outputs
    assert seg.phase is OutputsPhase.FAILED and seg.reason == "OutputsFetchFailed" and seg.tries == 2
    assert "connection reset" in seg.message
    assert conditions(waiting.status)["Ready"] == ("False", "OutputsFetchFailed")
    [again] = fetches(plan(wf, outputs=outputs, now=later(4)))
    assert again.tries == 2


def test_the_backoff_doubles_and_is_capped():
    assert [retry_delay(n).total_seconds() for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert retry_delay(40) == timedelta(minutes=5)


def test_fetched_outputs_make_the_workflow_succeed_and_say_where_they_are():
    wf = resolved(PLAN)
    result = plan(wf, outputs=fetched(wf, "seg", files=3))
    assert not fetches(result)
    assert result.status.phase is WorkflowPhase.SUCCEEDED
    assert conditions(result.status)["Ready"] == ("True", "Succeeded")
    assert conditions(result.status)["OutputsFetched"] == ("True", "OutputsFetched")
    seg = result.status.tasks["seg"].outputs
    assert seg.files == 3 and seg.path.endswith(fingerprints(wf.graph)["seg"])


def test_a_pattern_that_matched_nothing_fails_the_workflow_with_the_reason():
    wf = resolved(PLAN)
    result = plan(wf, outputs=record(wf, OutputsPhase.MISSING, files=2, location="/o", unmatched=("report.txt",)))
    assert not fetches(result)
    assert result.status.phase is WorkflowPhase.FAILED and result.status.finished_at == T0
    assert result.status.tasks["seg"].phase is TaskPhase.SUCCEEDED  # its job did succeed
    found = {c.type: c for c in result.status.conditions}
    assert (found["Ready"].status.value, found["Ready"].reason) == ("False", "OutputsMissing")
    assert (found["Stalled"].status.value, found["Stalled"].reason) == ("True", "OutputsMissing")
    assert "report.txt" in found["OutputsFetched"].message
    assert any(e.reason == "WorkflowFailed" for e in result.events)


def test_a_rerun_with_another_fingerprint_or_attempt_is_a_new_obligation():
    wf = resolved(PLAN)
    changed = resolved(PLAN.replace('script: "true", outputs', 'script: "true # v2", outputs'))
    old = fetched(wf, "seg")
    [fetch] = fetches(plan(changed, outputs=old))
    assert fetch.fingerprint == fingerprints(changed.graph)["seg"] != old.records[0].fingerprint
    retried = [job(wf, "seg", attempt=2, phase=TaskPhase.SUCCEEDED, exit_code=0),
               job(wf, "stats", phase=TaskPhase.SUCCEEDED, exit_code=0)]
    [fetch] = fetches(plan(wf, outputs=old, observed=retried))
    assert fetch.attempt == 2


def test_cleanup_is_due_ttl_seconds_after_the_end_and_done_once():
    wf = resolved(PLAN)
    outputs = fetched(wf, "seg")
    ended = plan(wf, outputs=outputs)
    assert ended.status.finished_at == T0 and not [a for a in ended.actions if isinstance(a, Cleanup)]
    assert ended.requeue_after == pytest.approx(60.0)
    due = plan(wf, outputs=outputs, previous=ended.status, now=later(60))
    assert [a for a in due.actions if isinstance(a, Cleanup)] == [Cleanup("uid-1", finished_at=T0, ttl_seconds=60)]
    done = CleanupRecord(finished_at=T0, at=later(61), outcome=CleanupOutcome.CLEANED)
    after = plan(wf, outputs=outputs, previous=due.status, cleanup=done, now=later(90))
    assert not after.actions and after.status.cleaned_at == later(61)
    assert after.status.phase is WorkflowPhase.SUCCEEDED and after.status.tasks  # status is kept
    # An operator that lost its store still has the status it wrote.
    again = plan(wf, outputs=outputs, previous=after.status, now=later(120))
    assert not again.actions and again.status.cleaned_at == later(61)


def test_no_cleanup_while_running_or_while_outputs_are_still_to_fetch():
    wf = resolved(PLAN)
    running = [job(wf, "seg", phase=TaskPhase.RUNNING)]
    assert not [a for a in plan(wf, observed=running, now=later(3600)).actions if isinstance(a, Cleanup)]
    pending = plan(wf, now=later(3600))
    assert [type(a) for a in pending.actions] == [FetchOutputs]


def test_a_refused_cleanup_is_not_tried_again_and_shows_no_cleaned_at():
    wf = resolved(PLAN)
    outputs = fetched(wf, "seg")
    refused = CleanupRecord(finished_at=T0, at=later(61), outcome=CleanupOutcome.REFUSED, message="workdir is /")
    result = plan(wf, outputs=outputs, previous=plan(wf, outputs=outputs).status, cleanup=refused, now=later(100))
    assert not result.actions and result.status.cleaned_at is None


def test_the_store_keeps_each_variant_and_never_unsettles_a_settled_one(tmp_path: Path):
    with Store(tmp_path / "state.db") as store:
        resource = Workflow.model_validate({"metadata": {"name": "w"}, "spec": {"tasks": [
            {"name": "seg", "command": ["true"], "outputs": ["a"]}]}}).to_wire()
        uid = store.upsert_workflow(namespace="default", name="w", resource=resource, revision=None,
                                    source_file=None, now=T0).uid
        store.outputs_pending(uid, "seg", fingerprint="f1", attempt=1, now=T0)
        store.outputs_failed(uid, "seg", fingerprint="f1", attempt=1, error="boom", tries=1, next_try_at=later(2),
                             now=T0)
        store.outputs_fetched(uid, "seg", fingerprint="f1", attempt=1, files=2, location="/o/f1", unmatched=(),
                              now=later(3))
        store.outputs_failed(uid, "seg", fingerprint="f1", attempt=1, error="late", tries=2, next_try_at=later(9),
                             now=later(4))
        store.outputs_fetched(uid, "seg", fingerprint="f2", attempt=2, files=0, location="/o/f2", unmatched=("a",),
                              now=later(5))
        records = {r.fingerprint: r for r in store.outputs(uid).records}
        assert records["f1"].phase is OutputsPhase.FETCHED and records["f1"].files == 2 and records["f1"].error is None
        assert records["f2"].phase is OutputsPhase.MISSING and records["f2"].unmatched == ("a",)
        assert store.cleanup(uid) is None
        store.record_cleanup(uid, finished_at=T0, outcome=CleanupOutcome.CLEANED, message="m", now=later(7))
        assert store.cleanup(uid) == CleanupRecord(finished_at=T0, at=later(7), outcome=CleanupOutcome.CLEANED,
                                                   message="m")


def local_client(workdir: str) -> SlurmClient:
    cluster = SlurmCluster.model_validate({"metadata": {"name": "here"}, "spec": {"workdir": workdir}})
    return SlurmClient(cluster, LocalTransport())


def test_remove_tree_removes_only_what_lies_strictly_inside_the_workdir(tmp_path: Path):
    workdir = tmp_path / "work"
    (workdir / "default" / "w" / "seg").mkdir(parents=True)
    (workdir / "default" / "w" / "seg" / "out.txt").write_text("x")
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    client = local_client(str(workdir))

    # A symlink planted on the way leads outside: refused, nothing touched.
    (outside / "sub").mkdir()
    (workdir / "evil").symlink_to(outside)
    with pytest.raises(UnsafePath):
        client.remove_tree(str(workdir / "evil" / "sub"), inside=str(workdir))
    (workdir / "other").symlink_to(outside)
    with pytest.raises(UnsafePath):
        client.remove_tree(str(workdir / "other"), inside=str(workdir))
    with pytest.raises(UnsafePath):
        client.remove_tree(str(workdir / "default" / ".." / ".."), inside=str(workdir))
    with pytest.raises(UnsafePath):
        client.remove_tree(str(outside), inside="/")
    with pytest.raises(UnsafePath):
        client.remove_tree(str(workdir), inside=str(workdir))
    assert (outside / "keep.txt").read_text() == "keep" and (outside / "sub").is_dir()

    assert client.remove_tree(str(workdir / "default" / "w"), inside=str(workdir)) == str(workdir / "default" / "w")
    assert not (workdir / "default" / "w").exists() and (workdir / "default").is_dir()
    assert client.remove_tree(str(workdir / "default" / "w"), inside=str(workdir)) is None  # nothing left


def test_a_cleaned_workflow_whose_store_lost_its_records_fetches_nothing_again():
    wf = resolved(PLAN)
    outputs = fetched(wf, "seg")
    ended = plan(wf, outputs=outputs)
    done = CleanupRecord(finished_at=T0, at=later(61), outcome=CleanupOutcome.CLEANED)
    cleaned = plan(wf, outputs=outputs, previous=ended.status, cleanup=done, now=later(61))
    # An operator on a fresh disk: no output records, no cleanup record; only the status it wrote.
    after = plan(wf, previous=cleaned.status, now=later(120))
    assert not after.actions
    assert after.status.phase is WorkflowPhase.SUCCEEDED and after.status.cleaned_at == later(61)
    assert after.status.tasks["seg"].outputs == ended.status.tasks["seg"].outputs


def test_migrating_an_older_store_records_succeeded_tasks_outputs_as_fetched(tmp_path: Path):
    """A task that succeeded before outputs were recorded had them fetched then: the migration
    says so, rather than let the planner fetch again from a run directory a later run changed."""
    import sqlite3

    from reconciler.store import schema

    path = tmp_path / "state.db"
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("BEGIN")
    schema.MIGRATIONS[1](db)
    schema.MIGRATIONS[2](db)
    db.execute("PRAGMA user_version = 2")
    status = {"phase": "Succeeded", "tasks": {
        "seg": {"phase": "Succeeded", "fingerprint": "fp-seg", "finishedAt": "2026-01-01T12:00:00Z"},
        "stats": {"phase": "Failed", "fingerprint": "fp-stats"}}}
    db.execute("INSERT INTO workflows (uid, namespace, name, generation, resource, spec_hash, labels, created_at, "
               "status) VALUES ('u1', 'default', 'w', 1, '{}', 'h', '{}', '2026-01-01T11:00:00+00:00', ?)",
               (json.dumps(status),))
    for attempt, phase in ((1, "Failed"), (2, "Succeeded")):
        db.execute("INSERT INTO attempts (uid, task, attempt, part, fingerprint, resources, cluster, recorded_at, "
                   "phase) VALUES ('u1', 'seg', ?, 0, 'fp-seg', '{}', 'dev', '2026-01-01T11:00:00+00:00', ?)",
                   (attempt, phase))
    db.execute("COMMIT")
    db.close()
    with Store(path) as store:
        [record] = store.outputs("u1").records
    assert (record.task, record.fingerprint, record.attempt, record.phase) == ("seg", "fp-seg", 2,
                                                                             OutputsPhase.FETCHED)
