"""Cancel and retry requests: how the pure planner treats them, and how the store keeps them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from reconciler.api import Capacity, FailureKind, TaskPhase, TaskStatus, Workflow, WorkflowPhase, WorkflowStatus
from reconciler.cli.main import main
from reconciler.core.fingerprint import fingerprints
from reconciler.core.observed import AttemptRecord, JobKey, JobOutcome
from reconciler.core.plan import Cancel
from reconciler.core.planner import DesiredWorkflow, plan_cluster
from reconciler.core.requests import (
    CancelRequest,
    RetryRequest,
    TaskRequests,
    cancellable_tasks,
    parse_entries,
    refusal_to_cancel,
    refusal_to_retry,
    tasks_named,
)
from reconciler.store.database import Store
from reconciler.store.schema import _create_v1
from tests.unit.reconcile_world import T0, job, later, resolved, view
from tests.unit.test_reconcile import CHAIN, phases, submits


def cancel(wf, *tasks: str) -> tuple[CancelRequest, ...]:
    fps = fingerprints(wf.graph)
    return tuple(CancelRequest(task=t, fingerprint=fps[t], requested_by="me", requested_at=T0) for t in tasks)


def retry(task: str, after: int) -> RetryRequest:
    return RetryRequest(task=task, after_attempt=after, requested_by="me", requested_at=T0)


def plan(wf, *, requests: TaskRequests, observed=(), records=(), now=T0):
    desired = DesiredWorkflow(uid="uid-1", resolved=wf, generation=1, observed=tuple(observed),
                              records=tuple(records), requests=requests)
    [result] = plan_cluster([desired], view=view(), capacity=Capacity(), now=now)
    return result


def cancelled_record(wf, task: str, *, attempt: int = 1, job_id: str = "11") -> AttemptRecord:
    """A job the reconciler cancelled, as the store remembers it once Slurm forgot it."""
    return AttemptRecord(key=JobKey(task, attempt), fingerprint=fingerprints(wf.graph)[task], indices=None,
                         job_id=job_id, recorded_at=T0, cancelled_by_reconciler=True,
                         outcome=JobOutcome(phase=TaskPhase.CANCELLED, node_list="dev1", finished_at=T0))


# -- the planner ---------------------------------------------------------------------------------

def test_cancelling_a_running_task_cancels_its_job_and_skips_what_follows():
    wf = resolved(CHAIN)
    observed = [job(wf, "a", phase=TaskPhase.SUCCEEDED, exit_code=0),
                job(wf, "b", phase=TaskPhase.RUNNING, job_id="7")]
    result = plan(wf, requests=TaskRequests(cancels=cancel(wf, "b")), observed=observed)
    assert Cancel("uid-1", "b", ("7",), "CancelledByUser") in result.actions
    assert submits(result) == []
    assert phases(result) == {"a": TaskPhase.SUCCEEDED, "b": TaskPhase.CANCELLED, "c": TaskPhase.SKIPPED}
    b = result.status.tasks["b"]
    assert (b.reason, b.message) == ("CancelledByUser",
                                     "cancelled by request; a retry or a change of its spec runs it again")
    assert any(e.reason == "TaskCancelled" and "by request" in e.message for e in result.events)


def test_a_cancelled_task_stays_cancelled_and_nothing_is_submitted_tick_after_tick():
    wf = resolved(CHAIN)
    records = [cancelled_record(wf, "b")]
    observed = [job(wf, "a", phase=TaskPhase.SUCCEEDED, exit_code=0)]
    for tick in range(3):
        result = plan(wf, requests=TaskRequests(cancels=cancel(wf, "b")), observed=observed, records=records,
                      now=later(60 * tick))
        assert result.actions == ()
        assert phases(result)["b"] is TaskPhase.CANCELLED and phases(result)["c"] is TaskPhase.SKIPPED
        assert result.status.phase is WorkflowPhase.FAILED


def test_without_the_request_a_job_the_reconciler_cancelled_is_not_resubmitted_either():
    """The request is what names the reason; the job's end alone already holds the task."""
    wf = resolved(CHAIN)
    observed = [job(wf, "a", phase=TaskPhase.SUCCEEDED, exit_code=0)]
    result = plan(wf, requests=TaskRequests(), observed=observed, records=[cancelled_record(wf, "b")])
    assert submits(result) == [] and phases(result)["b"] is TaskPhase.CANCELLED
    assert result.status.tasks["b"].reason != "CancelledByUser"


def test_a_task_cancelled_before_it_was_submitted_never_goes_out():
    wf = resolved(CHAIN)
    result = plan(wf, requests=TaskRequests(cancels=cancel(wf, "b")))
    assert [s.key for s in submits(result)] == [JobKey("a", 1)]
    assert phases(result) == {"a": TaskPhase.SUBMITTED, "b": TaskPhase.CANCELLED, "c": TaskPhase.SKIPPED}


def test_a_cancel_of_an_older_spec_does_not_hold_the_changed_task():
    old = resolved(CHAIN)
    new = resolved(CHAIN.replace('{name: b, script: "true"', '{name: b, script: "false"'))
    observed = [job(new, "a", phase=TaskPhase.SUCCEEDED, exit_code=0)]
    result = plan(new, requests=TaskRequests(cancels=cancel(old, "b")), observed=observed)
    assert [s.key.task for s in submits(result)] == ["b", "c"]


def test_a_cancel_that_raced_with_success_leaves_the_task_succeeded():
    wf = resolved(CHAIN)
    observed = [job(wf, "a", phase=TaskPhase.SUCCEEDED, exit_code=0)]
    result = plan(wf, requests=TaskRequests(cancels=cancel(wf, "a")), observed=observed)
    assert phases(result)["a"] is TaskPhase.SUCCEEDED and [s.key.task for s in submits(result)] == ["b", "c"]


def test_cancelling_every_task_cancels_every_live_job():
    wf = resolved(CHAIN)
    observed = [job(wf, "a", phase=TaskPhase.RUNNING, job_id="5"), job(wf, "b", phase=TaskPhase.SUBMITTED, job_id="6"),
                job(wf, "c", phase=TaskPhase.SUBMITTED, job_id="8")]
    result = plan(wf, requests=TaskRequests(cancels=cancel(wf, "a", "b", "c")), observed=observed)
    assert {(a.task, a.job_ids) for a in result.actions if isinstance(a, Cancel)} == {
        ("a", ("5",)), ("b", ("6",)), ("c", ("8",))}
    assert set(phases(result).values()) == {TaskPhase.CANCELLED}


def test_a_retry_runs_a_cancelled_task_once_and_its_dependants_after_it():
    wf = resolved(CHAIN)
    done_a = job(wf, "a", phase=TaskPhase.SUCCEEDED, exit_code=0)
    records = [cancelled_record(wf, "b")]
    first = plan(wf, requests=TaskRequests(retries=(retry("b", 1),)), observed=[done_a], records=records)
    b, c = submits(first)
    assert b.key == JobKey("b", 2) and c.after_submits == (JobKey("b", 2),)


def test_a_retry_is_one_new_attempt_and_a_failure_of_it_is_final():
    wf = resolved(CHAIN)
    done = [job(wf, "a", phase=TaskPhase.SUCCEEDED, exit_code=0), job(wf, "b", phase=TaskPhase.SUCCEEDED, exit_code=0)]
    records = [cancelled_record(wf, "c")]
    requests = TaskRequests(retries=(retry("c", 1),))
    assert [s.key for s in submits(plan(wf, requests=requests, observed=done, records=records))] == [JobKey("c", 2)]
    # The new attempt exists: the same request asks for nothing more, and when it fails the task
    # is Failed (c has no retry policy), not run a third time.
    running = job(wf, "c", attempt=2, phase=TaskPhase.RUNNING)
    assert submits(plan(wf, requests=requests, observed=[*done, running], records=records)) == []
    failed = job(wf, "c", attempt=2, phase=TaskPhase.FAILED, failure=FailureKind.FAILED, exit_code=1, finished=T0)
    after = plan(wf, requests=requests, observed=[*done, failed], records=records, now=later(600))
    assert submits(after) == [] and phases(after)["c"] is TaskPhase.FAILED


def test_a_retry_runs_a_task_whose_retry_limit_is_exhausted():
    wf = resolved(CHAIN)
    done_a = job(wf, "a", phase=TaskPhase.SUCCEEDED, exit_code=0)
    failures = [job(wf, "b", attempt=n, phase=TaskPhase.FAILED, failure=FailureKind.FAILED, exit_code=3,
                    finished=T0) for n in (1, 2, 3)]
    assert phases(plan(wf, requests=TaskRequests(), observed=[done_a, *failures]))["b"] is TaskPhase.FAILED
    result = plan(wf, requests=TaskRequests(retries=(retry("b", 3),)), observed=[done_a, *failures])
    assert [s.key for s in submits(result)] == [JobKey("b", 4), JobKey("c", 1)]
    assert phases(result)["b"] is TaskPhase.SUBMITTED
    succeeded = job(wf, "b", attempt=4, phase=TaskPhase.SUCCEEDED, exit_code=0)
    done = plan(wf, requests=TaskRequests(retries=(retry("b", 3),)), observed=[done_a, *failures, succeeded])
    assert phases(done)["b"] is TaskPhase.SUCCEEDED and [s.key.task for s in submits(done)] == ["c"]


def test_a_retry_made_before_the_last_attempt_asks_for_nothing():
    wf = resolved(CHAIN)
    done_a = job(wf, "a", phase=TaskPhase.SUCCEEDED, exit_code=0)
    failures = [job(wf, "b", attempt=n, phase=TaskPhase.FAILED, failure=FailureKind.FAILED, exit_code=3,
                    finished=T0) for n in (1, 2, 3)]
    result = plan(wf, requests=TaskRequests(retries=(retry("b", 2),)), observed=[done_a, *failures])
    assert submits(result) == [] and phases(result)["b"] is TaskPhase.FAILED


# -- what makes sense to ask ---------------------------------------------------------------------

def _status(**phases_by_task: TaskPhase) -> WorkflowStatus:
    return WorkflowStatus(tasks={name: TaskStatus(phase=phase, fingerprint=f"fp-{name}")
                                 for name, phase in phases_by_task.items()})


def test_finished_tasks_cannot_be_cancelled_and_only_failed_or_cancelled_ones_retried():
    status = _status(a=TaskPhase.SUCCEEDED, b=TaskPhase.RUNNING, c=TaskPhase.FAILED, d=TaskPhase.CANCELLED,
                     e=TaskPhase.WAITING)
    assert refusal_to_cancel(status, "b") is None and refusal_to_cancel(status, "e") is None
    assert "already finished (Succeeded)" in (refusal_to_cancel(status, "a") or "")
    assert "already finished (Failed)" in (refusal_to_cancel(status, "c") or "")
    assert "no status" in (refusal_to_cancel(status, "zz") or "")
    assert refusal_to_retry(status, "c") is None and refusal_to_retry(status, "d") is None
    assert "is Running" in (refusal_to_retry(status, "b") or "")
    assert "is Succeeded" in (refusal_to_retry(status, "a") or "")
    assert cancellable_tasks(status) == {"b": "fp-b", "e": "fp-e"}
    assert cancellable_tasks(None) == {}


def test_annotation_entries_name_tasks_and_star_names_every_task():
    entries = parse_entries(" a, b@2 ,, *@x ")
    assert entries == (("a", "a"), ("b@2", "b"), ("*@x", "*"))
    assert tasks_named(entries, known=["a", "b", "c"]) == {"a": ("a",), "b@2": ("b",), "*@x": ("a", "b", "c")}
    assert parse_entries(None) == ()


# -- the store -----------------------------------------------------------------------------------

@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "state.db") as opened:
        yield opened


def _workflow(store: Store) -> str:
    resource = Workflow.model_validate({"metadata": {"name": "plan"},
                                        "spec": {"cluster": "dev", "tasks": [{"name": "a", "command": ["x"]}]}})
    return store.upsert_workflow(namespace="default", name="plan", resource=resource.to_wire(), revision=None,
                                 source_file=None, now=T0).uid


def test_a_retry_comes_after_the_highest_attempt_and_withdraws_the_cancel(store: Store):
    uid = _workflow(store)
    store.request_cancel(uid, {"a": "fp-a", "b": "fp-b"}, by="me", now=T0)
    requests = store.requests(uid)
    assert [(r.task, r.fingerprint, r.requested_by) for r in requests.cancels] == [("a", "fp-a", "me"),
                                                                                    ("b", "fp-b", "me")]
    for attempt in (1, 2):
        store.record_intent(uid, key=JobKey("a", attempt), fingerprint="fp-a", indices=None, resources={},
                            cluster="dev", now=T0)
    assert store.request_retry(uid, "a", by="you", now=later(5)) == 2
    requests = store.requests(uid)
    assert [r.task for r in requests.cancels] == ["b"]
    assert requests.retries == (RetryRequest(task="a", after_attempt=2, requested_by="you", requested_at=later(5)),)
    assert requests.retry_pending("a", last_attempt=2) and not requests.retry_pending("a", last_attempt=3)
    # A cancel withdraws the pending retry.
    store.request_cancel(uid, {"a": "fp-a"}, by="me", now=later(9))
    assert store.requests(uid).retries == ()
    with pytest.raises(KeyError):
        store.request_retry("nope", "a", by="me", now=T0)


def test_each_annotation_entry_is_claimed_once(store: Store, tmp_path: Path):
    uid = _workflow(store)
    assert store.claim_entries(uid, "cancel", ["a", "b@1", "a"]) == ["a", "b@1"]
    assert store.claim_entries(uid, "cancel", ["a", "b@2"]) == ["b@2"]
    assert store.claim_entries(uid, "retry", ["a"]) == ["a"]
    with Store(tmp_path / "state.db") as again:
        assert again.claim_entries(uid, "cancel", ["a", "b@1", "b@2"]) == []


def test_a_version_1_file_keeps_its_workflows_and_gains_the_request_tables(tmp_path: Path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    _create_v1(db)
    db.execute("INSERT INTO workflows (uid, namespace, name, generation, resource, spec_hash, labels, created_at) "
               "VALUES ('u1', 'default', 'old', 3, '{}', 'h', '{}', '2026-01-01T00:00:00+00:00')")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with Store(path) as store:
        [old] = store.active_workflows()
        assert (old.uid, old.generation) == ("u1", 3)
        assert store.requests("u1") == TaskRequests()
        store.request_cancel("u1", {"a": "fp"}, by="me", now=T0)
        assert [r.task for r in store.requests("u1").cancels] == ["a"]


# -- the commands --------------------------------------------------------------------------------

def _run_with(tmp_path: Path, phases_by_task: dict[str, TaskPhase]) -> tuple[Path, str]:
    directory = tmp_path / "state"
    with Store(directory / "state.db") as store:
        uid = _workflow(store)
        store.save_status(uid, _status(**phases_by_task))
    return directory, uid


def test_cancel_records_a_request_per_unfinished_task_and_refuses_a_finished_one(tmp_path: Path, capsys):
    state, uid = _run_with(tmp_path, {"a": TaskPhase.SUCCEEDED, "b": TaskPhase.RUNNING, "c": TaskPhase.WAITING})
    assert main(["cancel", "plan", "a", "--state-dir", str(state)]) == 1
    assert "task a has already finished (Succeeded): there is nothing to cancel" in capsys.readouterr().err
    assert main(["cancel", "plan", "b", "--state-dir", str(state)]) == 0
    assert capsys.readouterr().out == "workflow.hpc.reconciler.dev/plan task b cancelled\n"
    with Store(state / "state.db") as store:
        assert [(r.task, r.fingerprint) for r in store.requests(uid).cancels] == [("b", "fp-b")]
    assert main(["cancel", "plan", "--state-dir", str(state)]) == 0
    with Store(state / "state.db") as store:
        assert [r.task for r in store.requests(uid).cancels] == ["b", "c"]
    assert main(["cancel", "nope", "--state-dir", str(state)]) == 1
    assert 'workflow "nope" not found' in capsys.readouterr().err


def test_retry_records_a_request_only_for_a_failed_or_cancelled_task(tmp_path: Path, capsys):
    state, uid = _run_with(tmp_path, {"a": TaskPhase.RUNNING, "b": TaskPhase.FAILED})
    assert main(["retry", "plan", "a", "--state-dir", str(state)]) == 1
    assert "task a is Running: only a Failed or Cancelled task can be retried" in capsys.readouterr().err
    assert main(["retry", "plan", "b", "--state-dir", str(state)]) == 0
    assert capsys.readouterr().out == ("workflow.hpc.reconciler.dev/plan task b retried "
                                       "(a new attempt after attempt 0)\n")
    with Store(state / "state.db") as store:
        assert [(r.task, r.after_attempt) for r in store.requests(uid).retries] == [("b", 0)]
