"""Status computation: task and workflow status, progress, core-hours and conditions.

Pure. Called by the reconcile core after it has decided each task's phase, and for workflows
whose manifest is broken (``invalid_status``). A task's status is its decision's phase with a
reason and message looked up by phase (``_REASONS``); a workflow's status counts its tasks'
phases once (``_Tally``), derives the workflow's phase from them, then its kstatus conditions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..api import ArrayStatus, Condition, Task, TaskPhase, TaskStatus, WorkflowPhase, WorkflowStatus
from ..api.orchestration import ChoiceStatus
from ..api.workflow import ApprovalStatus, TaskEfficiency, TaskOutputsStatus
from ..manifests.resolve import ResolvedWorkflow
from .approval_values import described
from .approvals import APPROVAL_STALE, REJECTED, Approval
from .budget import BUDGET_EXCEEDED
from .conditions import READY, RECONCILING, STALLED, condition, merge_conditions, with_attention
from .fanout import SIZE_INVALID, SIZE_UNKNOWN
from .history import TaskUsage
from .indexranges import compress
from .inputs import INPUT_MISSING, INPUTS_READY
from .observed import DONE_PHASES, LIVE_PHASES, ClusterView
from .outputs import outputs_conditions, outputs_phase
from .taskruns import Element, TaskRuns

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
    """One task's phase for this tick and the facts its status and events are told from."""

    phase: TaskPhase
    runs: TaskRuns
    fingerprint: str
    task: Task
    queued: bool = False
    suspended: bool = False
    next_retry: datetime | None = None
    view_reachable: bool = True
    cancelled_by_user: bool = False  # ``reconciler cancel`` (or the cancel annotation) stopped it
    stale_approval: Approval | None = None  # awaiting approval: the one given for other inputs
    approval: Approval | None = None  # an approval task that succeeded or failed: the decision that holds
    missing_inputs: tuple[str, ...] = ()  # why it is not submitted: inputs that name nothing
    outputs: TaskOutputsStatus | None = None  # a succeeded task's declared outputs (``outputs``)
    unsized: str | None = None  # an array sized at run time whose size is not known, or cannot be: why
    choice: ChoiceStatus | None = None  # the resources chosen for its auto fields, and why
    budget_hold: str | None = None  # ready to go, but the workflow's budget holds it back: why

    def failure_summary(self) -> str:
        failed = [e for e in self.runs.elements.values() if e.failures]
        if not failed:
            return "ended without success"
        last = failed[0].failures[-1]
        what = last.kind.value if last.kind else (failed[0].reason or "CANCELLED")
        exit_part = f" (exit code {last.exit_code})" if last.exit_code else ""
        where = f"{len(failed)} of {len(self.runs.elements)} elements, first " if self.task.array else ""
        return f"{where}attempt {last.attempt} ended {what}{exit_part}"


def task_status(outcome: TaskDecision, *, now: datetime, usage: TaskUsage | None = None) -> TaskStatus:
    """``usage``: what the task's latest finished attempt used of what it was given."""
    elements = tuple(outcome.runs.elements.values())
    reason, message = _reason(outcome)
    status = TaskStatus(
        phase=outcome.phase,
        job_id=",".join(outcome.runs.latest_job_ids) or None,
        attempts=max((e.tries for e in elements), default=0),
        exit_code=_exit_code(elements),
        reason=reason,
        message=message,
        started_at=min((e.started_at for e in elements if e.started_at), default=None),
        finished_at=_finished_at(outcome.phase, elements),
        core_hours=round(outcome.runs.core_seconds / 3600, 6),
        billed_core_seconds=outcome.runs.core_seconds,
        efficiency=_efficiency(usage),
        fingerprint=outcome.fingerprint,
        outputs=outcome.outputs,
        choice=outcome.choice,
        approval=_approval_status(outcome),
    )
    if outcome.task.array is not None and outcome.unsized is None:
        status.array = _array_status(elements)
    return status


def _efficiency(usage: TaskUsage | None) -> TaskEfficiency | None:
    """What the latest finished attempt used; None until accounting says anything of it (a job
    too short for a sample has no MaxRSS, one that ran no time no CPU efficiency)."""
    if usage is None or (usage.cpu_efficiency is None and usage.memory_efficiency is None):
        return None
    return TaskEfficiency(cpu=usage.cpu_efficiency, memory=usage.memory_efficiency)


def _approval_status(outcome: TaskDecision) -> ApprovalStatus | None:
    """What an approval task with parameters asks for, and the values that hold once approved."""
    task = outcome.task
    if not task.parameters:
        return None
    given = outcome.approval if outcome.phase is TaskPhase.SUCCEEDED else None
    return ApprovalStatus(parameters=list(task.parameters), values=given.values_for(task) if given else {})


def _exit_code(elements: Sequence[Element]) -> int | None:
    """The first non-zero exit code; 0 only once every element exited 0; None while none exited."""
    exit_codes = [e.exit_code for e in elements if e.exit_code is not None]
    nonzero = [code for code in exit_codes if code != 0]
    if nonzero:
        return nonzero[0]
    return 0 if exit_codes and len(exit_codes) == len(elements) else None


def _finished_at(phase: TaskPhase, elements: Sequence[Element]) -> datetime | None:
    """When the last element finished, for a task that has ended."""
    if phase not in DONE_PHASES:
        return None
    return max((e.finished_at for e in elements if e.finished_at), default=None)


def _array_status(elements: Sequence[Element]) -> ArrayStatus:
    by_phase: dict[str, list[int]] = {}
    for element in elements:
        by_phase.setdefault(element.phase.value, []).append(element.array_index)
    return ArrayStatus(
        total=len(elements),
        counts={name: len(indices) for name, indices in sorted(by_phase.items())},
        indices={name: compress(indices) for name, indices in sorted(by_phase.items())},
    )


# A task status's reason and message; (None, None) where the phase says it all.
Reason = tuple[str | None, str | None]


def _reason(outcome: TaskDecision) -> Reason:
    explain = _REASONS.get(outcome.phase)
    return explain(outcome) if explain is not None else (None, None)


def _slurm_reason(outcome: TaskDecision) -> Reason:
    """Slurm's most common pending reason among the live elements."""
    reasons = Counter(e.reason for e in outcome.runs.elements.values()
                      if e.phase in LIVE_PHASES and e.reason and e.reason != "None")
    if not reasons:
        return None, None
    reason = reasons.most_common(1)[0][0]
    return reason, f"Slurm: {reason}"


def _failure_reason(outcome: TaskDecision) -> Reason:
    """The failure kind of the first failed element, else Slurm's reason, else the phase."""
    if outcome.approval is not None and outcome.approval.rejected is not None:
        return REJECTED, f"{outcome.approval.rejected} ({outcome.approval.described}); approve it again to go on"
    if outcome.unsized is not None:
        return SIZE_INVALID, outcome.unsized
    failed = next((e for e in outcome.runs.elements.values() if e.failures), None)
    if failed is None:
        return outcome.phase.value, outcome.failure_summary()
    last = failed.failures[-1]
    if last.kind is not None:
        return last.kind.value, outcome.failure_summary()
    return failed.reason or outcome.phase.value, outcome.failure_summary()


def _cancelled_reason(outcome: TaskDecision) -> Reason:
    if outcome.cancelled_by_user:
        return "CancelledByUser", "cancelled by request; a retry or a change of its spec runs it again"
    return _failure_reason(outcome)


def _retry_reason(outcome: TaskDecision) -> Reason:
    when = outcome.next_retry.isoformat() if outcome.next_retry else "now"
    return "RetryBackoff", f"{outcome.failure_summary()}; next attempt at {when}"


def _unknown_reason(outcome: TaskDecision) -> Reason:
    if not outcome.view_reachable:
        return "ClusterUnreachable", "the cluster cannot be observed; the job's outcome is not known yet"
    return "JobNotFound", "submitted, but Slurm reports the job neither queued nor finished yet"


def _waiting_reason(outcome: TaskDecision) -> Reason:
    if outcome.unsized is not None:
        return SIZE_UNKNOWN, outcome.unsized
    if outcome.missing_inputs:
        return INPUT_MISSING, "; ".join(outcome.missing_inputs)
    if outcome.budget_hold is not None:
        return BUDGET_EXCEEDED, outcome.budget_hold
    return ("Suspended", "the workflow is suspended") if outcome.suspended else (None, None)


def _approval_reason(outcome: TaskDecision) -> Reason:
    stale = outcome.stale_approval
    given = outcome.approval
    if given is not None and given.problems(outcome.task):
        return "ApprovalInvalid", (f"the approval ({given.described}) does not fit the task's parameters: "
                                   f"{'; '.join(given.problems(outcome.task))}; approve it again with other values")
    if stale is None:
        return "WaitingForApproval", "a person has to approve this step"
    return APPROVAL_STALE, (f"the earlier approval ({stale.described}) was for different inputs (fingerprint "
                            f"{stale.fingerprint}, now {outcome.fingerprint}): a task before this one changed "
                            f"since, so a person has to approve it again: {stale.how_to_renew}")


def _succeeded_reason(outcome: TaskDecision) -> Reason:
    """An approval that carries values says which: the tasks after it run with them."""
    approval = outcome.approval
    if approval is None or not outcome.task.parameters:
        return None, None
    return "Approved", f"{approval.described} with {described(approval.values_for(outcome.task))}"


def _fixed(reason: str, message: str) -> Callable[[TaskDecision], Reason]:
    return lambda _: (reason, message)


_REASONS: dict[TaskPhase, Callable[[TaskDecision], Reason]] = {
    TaskPhase.SUBMITTED: _slurm_reason,
    TaskPhase.HELD: _slurm_reason,
    TaskPhase.FAILED: _failure_reason,
    TaskPhase.CANCELLED: _cancelled_reason,
    TaskPhase.RETRYING: _retry_reason,
    TaskPhase.QUEUED: _fixed("ClusterAtCapacity", "waiting in the reconciler's queue until the cluster has room"),
    TaskPhase.AWAITING_APPROVAL: _approval_reason,
    TaskPhase.UNKNOWN: _unknown_reason,
    TaskPhase.SKIPPED: _fixed("UpstreamFailed", "a task this one depends on did not succeed"),
    TaskPhase.WAITING: _waiting_reason,
    TaskPhase.SUCCEEDED: _succeeded_reason,
}


@dataclass(frozen=True)
class _Tally:
    """A workflow's task phases, counted the ways its status needs them."""

    total: int
    succeeded: int
    broken: tuple[str, ...]  # failed or cancelled, sorted by name
    progressing: tuple[str, ...]
    awaiting_approval: tuple[str, ...]
    started: bool  # some task got further than waiting, queued or skipped

    @classmethod
    def of(cls, phases: Mapping[str, TaskPhase]) -> _Tally:
        not_started = (TaskPhase.WAITING, TaskPhase.QUEUED, TaskPhase.SKIPPED)
        return cls(
            total=len(phases),
            succeeded=sum(1 for p in phases.values() if p is TaskPhase.SUCCEEDED),
            broken=tuple(sorted(n for n, p in phases.items() if p in (TaskPhase.FAILED, TaskPhase.CANCELLED))),
            progressing=tuple(n for n, p in phases.items() if p in PROGRESSING),
            awaiting_approval=tuple(n for n, p in phases.items() if p is TaskPhase.AWAITING_APPROVAL),
            started=any(p not in not_started for p in phases.values()),
        )


def workflow_status(
    *,
    resolved: ResolvedWorkflow,
    outcomes: Mapping[str, TaskDecision],
    previous: WorkflowStatus | None,
    view: ClusterView,
    generation: int,
    revision: str | None,
    now: datetime,
    usage: Mapping[str, TaskUsage] | None = None,
) -> WorkflowStatus:
    """The workflow's status: each task's, the workflow's phase, its kstatus conditions merged
    with the previous ones, and when it started and finished. ``usage``: by task, what its latest
    finished attempt used."""
    usage = usage or {}
    tasks = {name: task_status(outcomes[name], now=now, usage=usage.get(name)) for name in resolved.order}
    billed = sum(t.billed_core_seconds for t in tasks.values())
    tally = _Tally.of({name: status.phase for name, status in tasks.items()})
    phase = outputs_phase(_workflow_phase(tally, suspended=resolved.spec.suspend), tasks)
    wanted = _conditions(phase, tally=tally, tasks=tasks, view=view, generation=generation, now=now)
    wanted += _inputs_conditions(outcomes, wanted, generation=generation, now=now)
    wanted = outputs_conditions(tasks, wanted, phase=phase, generation=generation, now=now)
    previous_conditions = previous.conditions if previous else []
    started_at, finished_at = _times(phase, started=tally.started, previous=previous, now=now)
    return WorkflowStatus(
        observed_generation=generation,
        phase=phase,
        conditions=merge_conditions(previous_conditions, wanted, now=now),
        progress=f"{tally.succeeded}/{tally.total}",
        started_at=started_at,
        finished_at=finished_at,
        core_hours=round(billed / 3600, 6),
        billed_core_seconds=billed,
        revision=revision,
        tasks=tasks,
    )


def _workflow_phase(tally: _Tally, *, suspended: bool) -> WorkflowPhase:
    """Failed only once nothing is progressing any more, so independent branches finish first."""
    if tally.succeeded == tally.total:
        return WorkflowPhase.SUCCEEDED
    if tally.broken and not tally.progressing:
        return WorkflowPhase.FAILED
    if suspended:
        return WorkflowPhase.SUSPENDED
    return WorkflowPhase.RUNNING if tally.started else WorkflowPhase.PENDING


def _conditions(
    phase: WorkflowPhase, *, tally: _Tally, tasks: Mapping[str, TaskStatus], view: ClusterView, generation: int,
    now: datetime,
) -> list[Condition]:
    """Ready always; Reconciling and Stalled only while true; ClusterReachable only while false."""
    if phase is WorkflowPhase.SUCCEEDED:
        wanted = [condition(READY, True, "Succeeded", f"all {tally.total} tasks succeeded", now=now,
                            generation=generation)]
    else:
        reason, message = _not_ready(phase, tally=tally, view=view)
        wanted = [condition(READY, False, reason, message, now=now, generation=generation)]
        if phase in (WorkflowPhase.PENDING, WorkflowPhase.RUNNING):
            wanted.append(condition(RECONCILING, True, reason, message, now=now, generation=generation))
        stall = ("TaskFailed", message) if phase is WorkflowPhase.FAILED else _unclearable_wait(tasks)
        if stall is not None:
            wanted.append(condition(STALLED, True, *stall, now=now, generation=generation))
    if not _observable(view):
        wanted.append(condition(CLUSTER_REACHABLE, False, "ObservationFailed", _unobservable(view), now=now,
                                generation=generation))
    return wanted


def _inputs_conditions(outcomes: Mapping[str, TaskDecision], wanted: Sequence[Condition], *, generation: int,
                       now: datetime) -> list[Condition]:
    """InputsReady only while false: inputs that name nothing wait for a change of the source, so
    the workflow is Stalled too (unless something else already stalls it)."""
    missing = [message for outcome in outcomes.values() for message in outcome.missing_inputs]
    if not missing:
        return []
    message = "; ".join(missing)
    found = [condition(INPUTS_READY, False, INPUT_MISSING, message, now=now, generation=generation)]
    if not any(c.type == STALLED for c in wanted):
        found.append(condition(STALLED, True, INPUT_MISSING, message, now=now, generation=generation))
    return found


def _not_ready(phase: WorkflowPhase, *, tally: _Tally, view: ClusterView) -> tuple[str, str]:
    """Why a workflow that has not succeeded is not Ready, the most pressing reason first."""
    if phase is WorkflowPhase.FAILED:
        return "Failed", f"failed tasks: {', '.join(tally.broken)}"
    if phase is WorkflowPhase.SUSPENDED:
        return "Suspended", "spec.suspend is true: nothing new is submitted and pending jobs are held"
    if not _observable(view):
        return "ClusterUnreachable", _unobservable(view)
    if tally.awaiting_approval:
        return "AwaitingApproval", f"waiting for approval of: {', '.join(tally.awaiting_approval)}"
    return "Progressing", f"{tally.succeeded}/{tally.total} tasks succeeded"


def _observable(view: ClusterView) -> bool:
    return view.reachable and view.accounting


def _unobservable(view: ClusterView) -> str:
    return view.error or f"cluster {view.name} cannot be observed"


def _times(
    phase: WorkflowPhase, *, started: bool, previous: WorkflowStatus | None, now: datetime
) -> tuple[datetime | None, datetime | None]:
    """When the workflow started (its first tick past waiting) and finished; both are kept once
    set, so a later tick does not move them."""
    started_at = previous.started_at if previous and previous.started_at else (now if started else None)
    if phase not in (WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED):
        return started_at, None
    return started_at, previous.finished_at if previous and previous.finished_at else now


def _unclearable_wait(tasks: Mapping[str, TaskStatus]) -> tuple[str, str] | None:
    """The first task that waits for something only a change of its request can bring."""
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
    return with_attention(base, previous=previous, generation=generation, now=now)
