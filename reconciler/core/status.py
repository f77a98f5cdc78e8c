"""Status computation: task and workflow status, progress, core-hours and conditions.

Pure. Called by the reconcile core after it has decided each task's phase, and for workflows
whose manifest is broken (``invalid_status``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..api import ArrayStatus, Task, TaskPhase, TaskStatus, WorkflowPhase, WorkflowStatus
from .conditions import READY, RECONCILING, STALLED, condition, merge_conditions
from .indexranges import compress
from .observed import LIVE_PHASES, ClusterView
from ..manifests.resolve import ResolvedWorkflow
from .taskruns import TaskRuns

CLUSTER_REACHABLE = "ClusterReachable"
# Pending reasons (Slurm 22.05) that no amount of waiting clears: the request exceeds a limit.
UNCLEARABLE_REASONS = frozenset({
    "PartitionTimeLimit", "PartitionNodeLimit", "QOSMaxWallDurationPerJobLimit", "AssocMaxWallDurationPerJobLimit",
    "QOSMaxCpuPerJobLimit", "AssocMaxCpuPerJobLimit", "QOSMaxNodePerJobLimit", "AssocMaxNodePerJobLimit",
    "QOSMaxMemoryPerJob", "QOSMinCpuNotSatisfied", "InvalidAccount", "InvalidQOS", "BadConstraints",
    "PartitionConfig",
})
PROGRESSING = frozenset({TaskPhase.WAITING, TaskPhase.QUEUED, TaskPhase.SUBMITTED, TaskPhase.RUNNING,
                         TaskPhase.RETRYING, TaskPhase.HELD, TaskPhase.AWAITING_APPROVAL, TaskPhase.UNKNOWN})


@dataclass(frozen=True)
class TaskDecision:
    phase: TaskPhase
    runs: TaskRuns
    fingerprint: str
    task: Task
    queued: bool = False
    suspended: bool = False
    next_retry: datetime | None = None
    view_reachable: bool = True

    def failure_summary(self) -> str:
        failed = [e for e in self.runs.elements.values() if e.failures]
        if not failed:
            return "ended without success"
        last = failed[0].failures[-1]
        what = last.kind.value if last.kind else (failed[0].reason or "CANCELLED")
        exit_part = f" (exit code {last.exit_code})" if last.exit_code else ""
        where = f"{len(failed)} of {len(self.runs.elements)} elements, first " if self.task.array else ""
        return f"{where}attempt {last.attempt} ended {what}{exit_part}"


def task_status(outcome: TaskDecision, *, now: datetime) -> TaskStatus:
    elements = list(outcome.runs.elements.values())
    phase = outcome.phase
    reason, message = _reason(outcome)
    finished = [e.finished_at for e in elements if e.finished_at]
    exit_codes = [e.exit_code for e in elements if e.exit_code is not None]
    nonzero = [code for code in exit_codes if code != 0]
    status = TaskStatus(
        phase=phase,
        job_id=",".join(outcome.runs.latest_job_ids) or None,
        attempts=max((e.tries for e in elements), default=0),
        exit_code=(nonzero[0] if nonzero else 0 if len(exit_codes) == len(elements) else None) if exit_codes else None,
        reason=reason,
        message=message,
        started_at=min((e.started_at for e in elements if e.started_at), default=None),
        finished_at=max(finished) if phase in (TaskPhase.SUCCEEDED, TaskPhase.FAILED, TaskPhase.CANCELLED)
        and finished else None,
        core_hours=round(outcome.runs.core_hours, 6),
        fingerprint=outcome.fingerprint,
    )
    if outcome.task.array is not None:
        by_phase: dict[str, list[int]] = {}
        for element in elements:
            by_phase.setdefault(element.phase.value, []).append(element.array_index)
        status.array = ArrayStatus(
            total=len(elements),
            counts={name: len(indices) for name, indices in sorted(by_phase.items())},
            indices={name: compress(indices) for name, indices in sorted(by_phase.items())},
        )
    return status


def _reason(outcome: TaskDecision) -> tuple[str | None, str | None]:
    phase = outcome.phase
    elements = list(outcome.runs.elements.values())
    if phase is TaskPhase.SUBMITTED or phase is TaskPhase.HELD:
        reasons = Counter(e.reason for e in elements if e.phase in LIVE_PHASES and e.reason and e.reason != "None")
        if reasons:
            reason = reasons.most_common(1)[0][0]
            return reason, f"Slurm: {reason}"
        return None, None
    if phase is TaskPhase.FAILED or phase is TaskPhase.CANCELLED:
        failed = next((e for e in elements if e.failures), None)
        last = failed.failures[-1] if failed else None
        if last is not None and last.kind is not None:
            return last.kind.value, outcome.failure_summary()
        return (failed.reason if failed and failed.reason else phase.value), outcome.failure_summary()
    if phase is TaskPhase.RETRYING:
        when = outcome.next_retry.isoformat() if outcome.next_retry else "now"
        return "RetryBackoff", f"{outcome.failure_summary()}; next attempt at {when}"
    if phase is TaskPhase.QUEUED:
        return "ClusterAtCapacity", "waiting in the reconciler's queue until the cluster has room"
    if phase is TaskPhase.AWAITING_APPROVAL:
        return "WaitingForApproval", "a person has to approve this step"
    if phase is TaskPhase.UNKNOWN:
        if not outcome.view_reachable:
            return "ClusterUnreachable", "the cluster cannot be observed; the job's outcome is not known yet"
        return "JobNotFound", "submitted, but Slurm reports the job neither queued nor finished yet"
    if phase is TaskPhase.SKIPPED:
        return "UpstreamFailed", "a task this one depends on did not succeed"
    if phase is TaskPhase.WAITING:
        return ("Suspended", "the workflow is suspended") if outcome.suspended else (None, None)
    return None, None


def workflow_status(
    *,
    resolved: ResolvedWorkflow,
    outcomes: Mapping[str, TaskDecision],
    previous: WorkflowStatus | None,
    view: ClusterView,
    generation: int,
    revision: str | None,
    now: datetime,
) -> WorkflowStatus:
    tasks = {name: task_status(outcomes[name], now=now) for name in resolved.order}
    phases = {name: status.phase for name, status in tasks.items()}
    succeeded = sum(1 for p in phases.values() if p is TaskPhase.SUCCEEDED)
    broken = sorted(n for n, p in phases.items() if p in (TaskPhase.FAILED, TaskPhase.CANCELLED))
    progressing = [n for n, p in phases.items() if p in PROGRESSING]
    waiting_for_person = [n for n, p in phases.items() if p is TaskPhase.AWAITING_APPROVAL]
    started = any(p not in (TaskPhase.WAITING, TaskPhase.QUEUED, TaskPhase.SKIPPED) for p in phases.values())

    if succeeded == len(phases):
        phase = WorkflowPhase.SUCCEEDED
    elif broken and not progressing:
        phase = WorkflowPhase.FAILED
    elif resolved.spec.suspend:
        phase = WorkflowPhase.SUSPENDED
    elif started:
        phase = WorkflowPhase.RUNNING
    else:
        phase = WorkflowPhase.PENDING

    stall = _unclearable_wait(tasks)
    wanted = []
    if phase is WorkflowPhase.SUCCEEDED:
        wanted.append(condition(READY, True, "Succeeded", f"all {len(phases)} tasks succeeded", now=now,
                                generation=generation))
    else:
        if phase is WorkflowPhase.FAILED:
            ready = ("Failed", f"failed tasks: {', '.join(broken)}")
        elif phase is WorkflowPhase.SUSPENDED:
            ready = ("Suspended", "spec.suspend is true: nothing new is submitted and pending jobs are held")
        elif not (view.reachable and view.accounting):
            ready = ("ClusterUnreachable", view.error or f"cluster {view.name} cannot be observed")
        elif waiting_for_person:
            ready = ("AwaitingApproval", f"waiting for approval of: {', '.join(waiting_for_person)}")
        else:
            ready = ("Progressing", f"{succeeded}/{len(phases)} tasks succeeded")
        wanted.append(condition(READY, False, *ready, now=now, generation=generation))
        if phase in (WorkflowPhase.PENDING, WorkflowPhase.RUNNING):
            wanted.append(condition(RECONCILING, True, ready[0], ready[1], now=now, generation=generation))
        if phase is WorkflowPhase.FAILED:
            wanted.append(condition(STALLED, True, "TaskFailed", ready[1], now=now, generation=generation))
        elif stall is not None:
            wanted.append(condition(STALLED, True, stall[0], stall[1], now=now, generation=generation))
    if not (view.reachable and view.accounting):
        wanted.append(condition(CLUSTER_REACHABLE, False, "ObservationFailed",
                                view.error or f"cluster {view.name} cannot be observed", now=now, generation=generation))
    previous_conditions = previous.conditions if previous else []
    started_at = previous.started_at if previous and previous.started_at else (now if started else None)
    terminal = phase in (WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED)
    return WorkflowStatus(
        observed_generation=generation,
        phase=phase,
        conditions=merge_conditions(previous_conditions, wanted, now=now),
        progress=f"{succeeded}/{len(phases)}",
        started_at=started_at,
        finished_at=(previous.finished_at if previous and previous.finished_at else now) if terminal else None,
        core_hours=round(sum(t.core_hours for t in tasks.values()), 6),
        revision=revision,
        tasks=tasks,
    )


def _unclearable_wait(tasks: Mapping[str, TaskStatus]) -> tuple[str, str] | None:
    for name, status in tasks.items():
        if status.phase is TaskPhase.SUBMITTED and status.reason in UNCLEARABLE_REASONS:
            return status.reason, f"task {name} cannot start: Slurm says {status.reason}; change its request"
        if status.phase is TaskPhase.FAILED and status.reason == "SubmitRejected":
            return "SubmitRejected", f"task {name}: {status.message}"
    return None


def invalid_status(
    *, previous: WorkflowStatus | None, errors: Sequence[str], generation: int | None, revision: str | None,
    now: datetime,
) -> WorkflowStatus:
    """A workflow whose manifest is broken: its last status kept, marked Invalid and Stalled."""
    message = "; ".join(errors)[:32768]
    wanted = [
        condition(READY, False, "InvalidSpec", message, now=now, generation=generation),
        condition(STALLED, True, "InvalidSpec", message, now=now, generation=generation),
    ]
    base = previous.model_copy() if previous else WorkflowStatus()
    base.phase = WorkflowPhase.INVALID
    base.observed_generation = generation
    base.revision = revision
    base.conditions = merge_conditions(base.conditions, wanted, now=now)
    return base
