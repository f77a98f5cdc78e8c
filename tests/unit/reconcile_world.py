"""Plain-data builders for driving the reconcile core in tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reconciler.api import Capacity, FailureKind, TaskPhase
from reconciler.api.workflow import OutputsPhase
from reconciler.core.approvals import Approval, ApprovalVia, TaskApprovals
from reconciler.core.fingerprint import fingerprints
from reconciler.core.observed import ClusterView, JobKey, JobOutcome, ObservedJob
from reconciler.core.outputs import OutputRecord, TaskOutputs
from reconciler.core.planner import DesiredWorkflow, plan_cluster
from reconciler.manifests.loader import load_text
from reconciler.manifests.resolve import resolve

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CLUSTER = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: SlurmCluster
metadata: {name: dev}
spec: {workdir: /w}
"""


def resolved(workflow_yaml: str):
    result = load_text(CLUSTER + "---\n" + workflow_yaml, filename="plan.yaml")
    assert not result.errors, result.errors
    resolution = resolve(result.resources)
    assert not resolution.invalid, resolution.invalid[0].errors
    [workflow] = resolution.workflows
    return workflow


def view(**overrides) -> ClusterView:
    base = {"name": "dev", "reachable": True, "accounting": True, "partition_max_time": {"debug": 3600},
            "default_partition": "debug"}
    base.update(overrides)
    return ClusterView(**base)


def job(resolved_workflow, task: str, *, attempt: int = 1, phase: TaskPhase, job_id: str | None = None,
        indices=None, part: int = 0, failure: FailureKind | None = None, exit_code: int | None = None,
        reason: str | None = None, finished: datetime | None = None, fingerprint: str | None = None,
        node_list: str | None = None, core_seconds: int = 0) -> ObservedJob:
    fp = fingerprint or fingerprints(resolved_workflow.graph)[task]
    return ObservedJob(
        key=JobKey(task, attempt, part), job_id=job_id or f"{100 + attempt}{task}", fingerprint=fp,
        indices=tuple(indices) if indices is not None else None,
        outcome=JobOutcome(phase=phase, failure=failure, exit_code=exit_code, reason=reason, finished_at=finished,
                           node_list=node_list, core_seconds=core_seconds),
    )


def plan(resolved_workflow, *, observed=(), records=(), now=T0, previous=None, approvals=(), capacity=None,
         cluster_view=None, outputs=None):
    desired = DesiredWorkflow(
        uid="uid-1", resolved=resolved_workflow, generation=1, previous=previous,
        approvals=approved(resolved_workflow, approvals), observed=tuple(observed), records=tuple(records),
        outputs=outputs or TaskOutputs(),
    )
    [result] = plan_cluster([desired], view=cluster_view or view(), capacity=capacity or Capacity(), now=now)
    return result


def approved(resolved_workflow, approvals) -> TaskApprovals:
    """Approvals as given: an ``Approval``, or a task's name for a person's approval of the task as
    it is now (its current fingerprint)."""
    current = fingerprints(resolved_workflow.graph)
    return TaskApprovals(tuple(
        a if isinstance(a, Approval) else Approval(task=a, fingerprint=current[a], via=ApprovalVia.CLI, by="alice",
                                                   at=T0)
        for a in approvals))


def fetched(resolved_workflow, *tasks: str, attempt: int = 1, files: int = 1) -> TaskOutputs:
    """Output records saying the outputs of ``tasks``, as they are now, were fetched."""
    current = fingerprints(resolved_workflow.graph)
    return TaskOutputs(tuple(
        OutputRecord(task=task, fingerprint=current[task], attempt=attempt, phase=OutputsPhase.FETCHED, files=files,
                     location=f"/state/outputs/default/{task}/{current[task]}", at=T0)
        for task in tasks))


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)
