"""Table and step-the-world tests of the pure reconcile core: status and actions from plain data."""

from datetime import timedelta

from reconciler.api import Capacity, FailureKind, TaskPhase, WorkflowPhase, WorkflowStatus
from reconciler.core.approvals import Approval, ApprovalVia, declared_approvals
from reconciler.core.fingerprint import fingerprints
from reconciler.core.observed import AttemptRecord, JobKey
from reconciler.core.plan import Cancel, FetchOutputs, Hold, Release, Submit
from reconciler.core.planner import DesiredWorkflow, plan_cluster
from tests.unit.reconcile_world import T0, fetched, job, later, plan, resolved, view

CHAIN = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: chain}
spec:
  defaults: {resources: {time: "00:10:00", memory: 1G}}
  tasks:
    - {name: a, script: "true"}
    - {name: b, script: "true", dependsOn: [a], retry: {limit: 2, backoffSeconds: 10, backoffFactor: 2,
       escalate: {time: 2.0, memory: 1.5}}, outputs: [out.txt]}
    - {name: c, script: "true", dependsOn: [b]}
"""


def submits(result):
    return [a for a in result.actions if isinstance(a, Submit)]


def phases(result):
    return {name: status.phase for name, status in result.status.tasks.items()}


def test_a_chain_goes_out_at_once_with_native_dependencies():
    wf = resolved(CHAIN)
    result = plan(wf)
    a, b, c = submits(result)
    assert (a.key, a.after_jobs, a.after_submits) == (JobKey("a", 1), (), ())
    assert b.after_submits == (JobKey("a", 1),) and c.after_submits == (JobKey("b", 1),)
    assert result.status.phase is WorkflowPhase.RUNNING
    assert result.status.progress == "0/3"
    assert [c.type for c in result.status.conditions] == ["Ready", "Reconciling"]


def test_live_upstream_jobs_become_afterok_dependencies():
    wf = resolved(CHAIN)
    result = plan(wf, observed=[job(wf, "a", phase=TaskPhase.RUNNING, job_id="7")])
    [b, c] = submits(result)
    assert b.after_jobs == ("7",) and c.after_submits == (JobKey("b", 1),)
    assert phases(result)["a"] is TaskPhase.RUNNING


def test_workflows_on_one_cluster_share_its_capacity_oldest_first():
    older = resolved(CHAIN.replace("{name: chain}", "{name: zeta}"))
    newer = resolved(CHAIN.replace("{name: chain}", "{name: alpha}"))
    desired = [
        DesiredWorkflow(uid="new", resolved=newer, generation=1),
        DesiredWorkflow(uid="old", resolved=older, generation=1, previous=WorkflowStatus(started_at=T0)),
    ]
    plans = plan_cluster(desired, view=view(), capacity=Capacity(max_submitted_jobs=4), now=later(60))
    assert [p.uid for p in plans] == ["old", "new"]
    assert [len(submits(p)) for p in plans] == [3, 1]
    assert phases(plans[1]) == {"a": TaskPhase.SUBMITTED, "b": TaskPhase.QUEUED, "c": TaskPhase.WAITING}


def test_capacity_of_one_job_queues_the_rest():
    wf = resolved(CHAIN)
    result = plan(wf, capacity=Capacity(max_submitted_jobs=1))
    assert [s.key.task for s in submits(result)] == ["a"]
    assert phases(result) == {"a": TaskPhase.SUBMITTED, "b": TaskPhase.QUEUED, "c": TaskPhase.WAITING}
    assert result.status.tasks["b"].reason == "ClusterAtCapacity"
    # jobs the reconciler did not submit count too
    result = plan(wf, capacity=Capacity(max_submitted_jobs=5), cluster_view=view(queued_jobs=5))
    assert submits(result) == [] and phases(result)["a"] is TaskPhase.QUEUED


def test_an_array_bigger_than_the_capacity_goes_out_in_part_and_the_rest_waits():
    wf = resolved(ARRAY)
    result = plan(wf, capacity=Capacity(max_submitted_jobs=4))
    [submit] = submits(result)
    assert submit.indices == (0, 1, 2, 3)
    array = result.status.tasks["t"].array
    assert array is not None and array.indices == {"Waiting": "0-9"}  # none of them runs yet


def test_failure_retries_after_backoff_with_escalation():
    wf = resolved(CHAIN)
    done_a = job(wf, "a", phase=TaskPhase.SUCCEEDED, exit_code=0, core_seconds=1800)
    timed_out = job(wf, "b", phase=TaskPhase.FAILED, failure=FailureKind.TIMEOUT, finished=T0, exit_code=0,
                    core_seconds=900)
    waiting = plan(wf, observed=[done_a, timed_out], now=later(5))
    assert phases(waiting)["b"] is TaskPhase.RETRYING and submits(waiting) == []
    assert waiting.requeue_after == 5
    assert waiting.status.tasks["b"].reason == "RetryBackoff"
    assert waiting.status.core_hours == 0.75
    due = plan(wf, observed=[done_a, timed_out], now=later(10))
    retry, downstream = submits(due)
    assert retry.key == JobKey("b", 2) and retry.resources.time == "00:20:00" and retry.resources.memory == "1G"
    assert downstream.key == JobKey("c", 1) and downstream.after_submits == (JobKey("b", 2),)
    # second failure, out of memory: backoff doubles and memory grows, time keeps its escalation
    oom = job(wf, "b", attempt=2, phase=TaskPhase.FAILED, failure=FailureKind.OUT_OF_MEMORY, finished=later(20))
    assert submits(plan(wf, observed=[done_a, timed_out, oom], now=later(39))) == []
    third, _ = submits(plan(wf, observed=[done_a, timed_out, oom], now=later(40)))
    assert third.key.attempt == 3 and third.resources.time == "00:20:00" and third.resources.memory == "1536M"


def test_retries_exhausted_fail_the_task_and_skip_downstream():
    wf = resolved(CHAIN)
    done_a = job(wf, "a", phase=TaskPhase.SUCCEEDED, exit_code=0)
    failures = [job(wf, "b", attempt=n, phase=TaskPhase.FAILED, failure=FailureKind.FAILED, exit_code=3,
                    finished=T0) for n in (1, 2, 3)]
    result = plan(wf, observed=[done_a, *failures], now=later(1000))
    assert phases(result) == {"a": TaskPhase.SUCCEEDED, "b": TaskPhase.FAILED, "c": TaskPhase.SKIPPED}
    assert result.status.tasks["b"].attempts == 3 and result.status.tasks["b"].exit_code == 3
    assert result.status.phase is WorkflowPhase.FAILED
    assert {c.type: c.status.value for c in result.status.conditions} == {"Ready": "False", "Stalled": "True",
                                                                          "NeedsAttention": "True"}
    assert any(e.reason == "WorkflowFailed" for e in result.events)


def test_success_after_two_failures_counts_three_attempts_and_fetches_outputs():
    wf = resolved(CHAIN)
    observed = [job(wf, "a", phase=TaskPhase.SUCCEEDED, exit_code=0)]
    observed += [job(wf, "b", attempt=n, phase=TaskPhase.FAILED, failure=FailureKind.FAILED, exit_code=1,
                     finished=T0) for n in (1, 2)]
    observed += [job(wf, "b", attempt=3, phase=TaskPhase.SUCCEEDED, exit_code=0),
                 job(wf, "c", phase=TaskPhase.SUCCEEDED, exit_code=0)]
    result = plan(wf, observed=observed)
    assert result.status.progress == "3/3" and result.status.tasks["b"].attempts == 3
    fingerprint = result.status.tasks["b"].fingerprint
    assert FetchOutputs("uid-1", "b", ("out.txt",), fingerprint=fingerprint, attempt=3) in result.actions
    # Succeeded, and Ready, once the outputs are here.
    assert result.status.phase is WorkflowPhase.RUNNING
    result = plan(wf, observed=observed, outputs=fetched(wf, "b", attempt=3))
    assert result.status.phase is WorkflowPhase.SUCCEEDED and result.status.progress == "3/3"
    assert not [a for a in result.actions if isinstance(a, FetchOutputs)]


def test_independent_branch_goes_on_after_a_failure():
    wf = resolved("""\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: branches}
spec:
  tasks:
    - {name: a, script: "false"}
    - {name: b, script: "true", dependsOn: [a]}
    - {name: x, script: "true"}
    - {name: y, script: "true", dependsOn: [x]}
""")
    result = plan(wf, observed=[job(wf, "a", phase=TaskPhase.FAILED, failure=FailureKind.FAILED, exit_code=1),
                                job(wf, "x", phase=TaskPhase.SUCCEEDED, exit_code=0)])
    assert phases(result)["b"] is TaskPhase.SKIPPED
    assert [s.key.task for s in submits(result)] == ["y"]
    assert result.status.phase is WorkflowPhase.RUNNING


ARRAY = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: tiles}
spec:
  tasks:
    - {name: t, script: "true", array: {count: 10, parallelism: 4}, retry: {limit: 1, backoffSeconds: 0}}
"""


def test_only_failed_array_elements_are_resubmitted():
    wf = resolved(ARRAY)
    observed = [job(wf, "t", phase=TaskPhase.SUCCEEDED, job_id="50", indices=[i], exit_code=0) for i in range(10)
                if i not in (3, 7)]
    observed += [job(wf, "t", phase=TaskPhase.FAILED, job_id="50", indices=[i], failure=FailureKind.FAILED,
                     exit_code=2, finished=T0) for i in (3, 7)]
    result = plan(wf, observed=observed)
    [retry] = submits(result)
    assert retry.indices == (3, 7) and retry.key == JobKey("t", 2, 3) and retry.parallelism == 4
    array = result.status.tasks["t"].array
    assert array.counts == {"Failed": 2, "Succeeded": 8}
    assert array.indices == {"Failed": "3,7", "Succeeded": "0-2,4-6,8-9"}


def test_big_arrays_are_split_at_max_array_size_and_status_stays_small():
    # Without a parallelism every chunk goes out at once (test_parallelism covers the throttled case).
    wf = resolved(ARRAY.replace("count: 10, parallelism: 4", "count: 30000"))
    result = plan(wf, cluster_view=view(max_array_size=1001))
    chunks = submits(result)
    assert len(chunks) == 30 and chunks[0].indices[:2] == (0, 1) and chunks[1].key.part == 1001
    assert all(c.key.attempt == 1 for c in chunks)
    pending = [job(wf, "t", phase=TaskPhase.SUBMITTED, job_id=str(900 + n), part=c.key.part, indices=c.indices)
               for n, c in enumerate(chunks)]
    status = plan(wf, observed=pending, cluster_view=view(max_array_size=1001)).status
    assert status.tasks["t"].array.indices == {"Submitted": "0-29999"}
    assert len(status.model_dump_json()) < 2000


def test_suspend_holds_pending_jobs_and_resume_releases_them():
    wf = resolved(CHAIN.replace("  defaults:", "  suspend: true\n  defaults:"))
    pending = job(wf, "a", phase=TaskPhase.SUBMITTED, job_id="9", reason="Priority")
    result = plan(wf, observed=[pending])
    assert result.actions == (Hold("uid-1", "a", ("9",)),)
    assert result.status.phase is WorkflowPhase.SUSPENDED
    held = job(wf, "a", phase=TaskPhase.HELD, job_id="9", reason="JobHeldUser")
    still = plan(wf, observed=[held])
    assert still.actions == () and still.status.tasks["a"].phase is TaskPhase.HELD
    resumed = resolved(CHAIN)
    result = plan(resumed, observed=[job(resumed, "a", phase=TaskPhase.HELD, job_id="9", reason="JobHeldUser")])
    assert Release("uid-1", "a", ("9",)) in result.actions


APPROVAL = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: review}
spec:
  tasks:
    - {name: a, script: "true"}
    - {name: ok, type: approval, dependsOn: [a]}
    - {name: z, script: "true", dependsOn: [ok]}
"""


def test_approval_blocks_until_approved():
    wf = resolved(APPROVAL)
    done = [job(wf, "a", phase=TaskPhase.SUCCEEDED, exit_code=0)]
    waiting = plan(wf, observed=done)
    assert phases(waiting)["ok"] is TaskPhase.AWAITING_APPROVAL and submits(waiting) == []
    ready = next(c for c in waiting.status.conditions if c.type == "Ready")
    assert ready.reason == "AwaitingApproval" and "ok" in ready.message
    assert ("AwaitingApproval", "task ok is waiting for a person to approve it") in [
        (e.reason, e.message) for e in waiting.events]
    approved = plan(wf, observed=done, approvals=["ok"], previous=waiting.status)
    assert phases(approved)["ok"] is TaskPhase.SUCCEEDED
    assert ("Approved", "task ok was approved") in [(e.reason, e.message) for e in approved.events]
    assert [s.key.task for s in submits(approved)] == ["z"]
    declared = resolved(APPROVAL.replace("type: approval,", "type: approval, approved: true,"))
    # The loop records a committed approved: value as an approval of the task as it is in that revision.
    assert declared_approvals(declared.tasks) == {"ok": "true"}
    committed = Approval(task="ok", fingerprint=fingerprints(declared.graph)["ok"], via=ApprovalVia.MANIFEST,
                         by="true", at=T0, revision="r1")
    approved_up_front = plan(declared, observed=[job(declared, "a", phase=TaskPhase.SUCCEEDED)],
                             approvals=[committed])
    assert [s.key.task for s in submits(approved_up_front)] == ["z"]


def test_a_changed_task_reruns_with_its_downstream_only():
    wf = resolved(CHAIN)
    observed = [job(wf, name, phase=TaskPhase.SUCCEEDED, exit_code=0) for name in ("a", "b")]
    observed.append(job(wf, "c", phase=TaskPhase.RUNNING, job_id="77"))
    changed = resolved(CHAIN.replace('{name: b, script: "true"', '{name: b, script: "echo v2"'))
    result = plan(changed, observed=observed)
    assert Cancel("uid-1", "c", ("77",), "SpecChanged") in result.actions
    assert [(s.key.task, s.key.attempt) for s in submits(result)] == [("b", 2), ("c", 2)]
    assert phases(result)["a"] is TaskPhase.SUCCEEDED


def test_retry_policy_edits_do_not_rerun_finished_work():
    wf = resolved(CHAIN)
    observed = [job(wf, name, phase=TaskPhase.SUCCEEDED, exit_code=0) for name in ("a", "b", "c")]
    edited = resolved(CHAIN.replace("limit: 2", "limit: 5"))
    outputs = fetched(wf, "b")
    result = plan(edited, observed=observed, previous=plan(wf, observed=observed, outputs=outputs).status,
                  outputs=outputs)
    assert result.actions == () and result.status.phase is WorkflowPhase.SUCCEEDED


def test_a_job_slurm_forgot_is_unknown_and_nothing_is_submitted():
    wf = resolved(CHAIN)
    record = AttemptRecord(key=JobKey("a", 1), fingerprint=submits(plan(wf))[0].fingerprint, indices=None,
                           job_id="41", recorded_at=T0)
    result = plan(wf, records=[record])
    assert phases(result)["a"] is TaskPhase.UNKNOWN and submits(result) == []
    assert result.status.tasks["a"].reason == "JobNotFound"
    blind = plan(wf, records=[record], cluster_view=view(accounting=False, error="sacct: timed out"))
    assert phases(blind)["a"] is TaskPhase.UNKNOWN
    assert {c.type for c in blind.status.conditions} >= {"ClusterReachable"}


def test_an_intent_that_never_reached_slurm_is_submitted_again_under_the_same_key():
    wf = resolved(CHAIN)
    fp = submits(plan(wf))[0].fingerprint
    intent = AttemptRecord(key=JobKey("a", 1), fingerprint=fp, indices=None, job_id=None, recorded_at=T0)
    caught_up = view(accounting_complete_until=later(1))
    assert submits(plan(wf, records=[intent], cluster_view=caught_up, now=later(61)))[0].key == JobKey("a", 1)
    # but never while the cluster cannot be observed
    assert submits(plan(wf, records=[intent], cluster_view=view(reachable=False))) == []


def test_downstream_cancelled_for_a_broken_dependency_is_resubmitted_against_the_retry():
    wf = resolved(CHAIN)
    observed = [
        job(wf, "a", phase=TaskPhase.SUCCEEDED, exit_code=0),
        job(wf, "b", phase=TaskPhase.FAILED, failure=FailureKind.TIMEOUT, finished=T0),
        job(wf, "c", phase=TaskPhase.CANCELLED, reason="DependencyNeverSatisfied"),
    ]
    result = plan(wf, observed=observed, now=later(60))
    b, c = submits(result)
    assert b.key == JobKey("b", 2) and c.key == JobKey("c", 2) and c.after_submits == (JobKey("b", 2),)
    assert result.status.phase is WorkflowPhase.RUNNING


def test_a_dependency_cancellation_reported_before_its_reason_is_still_resubmitted():
    """sacct briefly shows a job killed by --kill-on-invalid-dep as CANCELLED with no reason."""
    wf = resolved(CHAIN)
    observed = [
        job(wf, "a", phase=TaskPhase.SUCCEEDED, exit_code=0),
        job(wf, "b", phase=TaskPhase.FAILED, failure=FailureKind.TIMEOUT, finished=T0),
        job(wf, "c", phase=TaskPhase.CANCELLED, reason=None, node_list=None),
    ]
    result = plan(wf, observed=observed, now=later(60))
    assert [s.key for s in submits(result)] == [JobKey("b", 2), JobKey("c", 2)]
    assert result.status.phase is WorkflowPhase.RUNNING
    # c never ran: Slurm's cancellation of its job is no attempt of c's.
    assert result.status.tasks["b"].attempts == 1 and result.status.tasks["c"].attempts == 0


def test_a_job_cancelled_while_running_outside_the_reconciler_is_final():
    wf = resolved(CHAIN)
    observed = [job(wf, "a", phase=TaskPhase.CANCELLED, reason=None, node_list="dev1")]
    result = plan(wf, observed=observed)
    assert not submits(result)
    assert phases(result)["a"] is TaskPhase.CANCELLED


def test_unclearable_pending_reason_stalls_the_workflow():
    wf = resolved(CHAIN)
    result = plan(wf, observed=[job(wf, "a", phase=TaskPhase.SUBMITTED, reason="QOSMaxWallDurationPerJobLimit")])
    stalled = next(c for c in result.status.conditions if c.type == "Stalled")
    assert stalled.reason == "QOSMaxWallDurationPerJobLimit" and "task a" in stalled.message
    assert result.status.tasks["a"].reason == "QOSMaxWallDurationPerJobLimit"


def test_escalation_never_exceeds_the_partition_limit():
    wf = resolved(CHAIN.replace('time: "00:10:00"', 'time: "00:40:00"'))
    observed = [job(wf, "a", phase=TaskPhase.SUCCEEDED),
                job(wf, "b", phase=TaskPhase.FAILED, failure=FailureKind.TIMEOUT, finished=T0)]
    [retry, _] = submits(plan(wf, observed=observed, now=later(100)))
    assert retry.resources.time == "01:00:00"


def test_node_failure_retry_excludes_the_node():
    wf = resolved(CHAIN.replace("limit: 2", "limit: 2, onFailures: [NODE_FAIL]"))
    observed = [job(wf, "a", phase=TaskPhase.SUCCEEDED),
                job(wf, "b", phase=TaskPhase.FAILED, failure=FailureKind.NODE_FAIL, finished=T0, node_list="cn07")]
    [retry, _] = submits(plan(wf, observed=observed, now=later(100)))
    assert retry.exclude_nodes == ("cn07",)


def test_conditions_keep_their_transition_time_while_unchanged():
    wf = resolved(CHAIN)
    first = plan(wf)
    second = plan(wf, previous=first.status, now=later(30),
                  observed=[job(wf, "a", phase=TaskPhase.RUNNING, job_id="5")])
    ready = next(c for c in second.status.conditions if c.type == "Ready")
    assert ready.last_transition_time == T0


# -- an intent without a confirmed job ------------------------------------------------------------

def test_an_unconfirmed_intent_waits_as_unknown_until_accounting_has_caught_up_past_it():
    """A job that ends within a second leaves squeue before slurmdbd records it: absence right
    after the intent proves nothing, so the task is not submitted a second time."""
    wf = resolved(CHAIN)
    fp = submits(plan(wf))[0].fingerprint
    intent = AttemptRecord(key=JobKey("a", 1), fingerprint=fp, indices=None, job_id=None, recorded_at=T0)
    cases = [
        # (accounting readable, accounting complete until, submitted again)
        (True, None, False),
        (True, T0 - timedelta(seconds=59), False),
        (True, T0, False),
        (True, later(0.5), True),
        (False, later(3600), False),
    ]
    for accounting, horizon, again in cases:
        cluster = view(accounting=accounting, accounting_complete_until=horizon)
        result = plan(wf, records=[intent], cluster_view=cluster, now=later(1))
        assert (submits(result) != []) is again, (accounting, horizon)
        if not again:
            assert phases(result)["a"] is TaskPhase.UNKNOWN, (accounting, horizon)
            reason = "JobNotFound" if accounting else "ClusterUnreachable"
            assert result.status.tasks["a"].reason == reason, (accounting, horizon)

