"""The diff: ``(desired, observed, stored, now) -> Plan`` for every workflow on one cluster.

Pure and level-triggered: it never asks what just happened, it looks at the whole declared and
observed state each tick. Workflows on a cluster share its capacity, so they are planned together,
oldest first. Called by the controller once per cluster and tick, and by tests with plain data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ..api import Capacity, FailureKind, Task, TaskPhase, TaskType, WorkflowStatus
from .fingerprint import fingerprints
from .observed import LIVE_PHASES, AttemptRecord, ClusterView, JobKey, ObservedJob
from .plan import Action, Cancel, Event, FetchOutputs, Hold, Release, Submit, WorkflowPlan
from ..manifests.resolve import ResolvedWorkflow
from .retry import can_retry, escalated_resources, failed_nodes, retry_due_at
from .status import TaskDecision, task_status, workflow_status
from .taskruns import Element, TaskRuns, task_runs

BROKEN_PHASES = frozenset({TaskPhase.FAILED, TaskPhase.SKIPPED, TaskPhase.CANCELLED})


@dataclass(frozen=True)
class DesiredWorkflow:
    uid: str
    resolved: ResolvedWorkflow
    generation: int
    revision: str | None = None
    approvals: frozenset[str] = frozenset()
    previous: WorkflowStatus | None = None
    observed: tuple[ObservedJob, ...] = ()
    records: tuple[AttemptRecord, ...] = ()


@dataclass
class CapacityBudget:
    """What the cluster can still take this tick: the reconciler's own limit and Slurm's visible
    submit limit, less everything the user already has in the queue (ours or not)."""

    jobs: int | None
    cores: int | None

    @classmethod
    def for_cluster(cls, capacity: Capacity, view: ClusterView) -> CapacityBudget:
        limits = [limit for limit in (capacity.max_submitted_jobs, view.submit_limit) if limit is not None]
        jobs = max(0, min(limits) - view.queued_jobs) if limits else None
        cores = max(0, capacity.max_cores - view.queued_cores) if capacity.max_cores is not None else None
        return cls(jobs=jobs, cores=cores)

    def admit(self, elements: int, cores_each: int) -> int:
        """How many of ``elements`` fit, and take them."""
        fit = elements
        if self.jobs is not None:
            fit = min(fit, self.jobs)
        if self.cores is not None:
            fit = min(fit, self.cores // max(1, cores_each))
        if self.jobs is not None:
            self.jobs -= fit
        if self.cores is not None:
            self.cores -= fit * cores_each
        return fit


def plan_cluster(
    workflows: Sequence[DesiredWorkflow], *, view: ClusterView, capacity: Capacity, now: datetime
) -> list[WorkflowPlan]:
    budget = CapacityBudget.for_cluster(capacity, view)
    ordered = sorted(workflows, key=lambda w: (w.previous.started_at if w.previous and w.previous.started_at
                                               else now, w.resolved.workflow.metadata.name))
    return [_plan_workflow(workflow, view=view, budget=budget, now=now) for workflow in ordered]


def prune(uid: str, observed: Iterable[ObservedJob]) -> tuple[Cancel, ...]:
    """Cancel every live job of a workflow that is no longer declared."""
    by_task: dict[str, set[str]] = {}
    for job in observed:
        if job.phase in LIVE_PHASES:
            by_task.setdefault(job.key.task, set()).add(job.job_id)
    return tuple(Cancel(uid, task, tuple(sorted(ids)), "WorkflowRemoved") for task, ids in sorted(by_task.items()))


@dataclass
class _Progress:
    """Per-task facts the tasks after it need while one workflow is planned."""

    phases: dict[str, TaskPhase] = field(default_factory=dict)
    live_jobs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    planned: dict[str, tuple[JobKey, ...]] = field(default_factory=dict)
    fully_submitted: dict[str, bool] = field(default_factory=dict)


def _plan_workflow(desired: DesiredWorkflow, *, view: ClusterView, budget: CapacityBudget, now: datetime) -> WorkflowPlan:
    resolved = desired.resolved
    graph = resolved.graph
    fps = fingerprints(graph)
    previous_tasks = desired.previous.tasks if desired.previous else {}
    observed = _by_task(desired.observed)
    records = _by_task(desired.records)
    progress = _Progress()
    actions: list[Action] = []
    events: list[Event] = []
    outcomes: dict[str, TaskDecision] = {}
    due: list[datetime] = []
    suspended = resolved.spec.suspend
    can_submit = view.reachable and view.accounting

    for name in resolved.order:
        task = resolved.tasks[name]
        upstream = sorted(graph.predecessors(name))
        upstream_phases = [progress.phases[u] for u in upstream]
        upstream_broken = any(p in BROKEN_PHASES for p in upstream_phases)
        upstream_done = all(p is TaskPhase.SUCCEEDED for p in upstream_phases)
        indices = list(range(task.array.size)) if task.array else [None]
        runs = task_runs(indices=indices, fingerprint=fps[name], observed=observed.get(name, ()),
                         records=records.get(name, ()), accounting=view.accounting)
        if runs.obsolete_live_jobs:
            actions.append(Cancel(desired.uid, name, runs.obsolete_live_jobs, "SpecChanged"))
            events.append(Event("Normal", "SpecChanged", f"task {name} changed: cancelling its running jobs"))

        if task.type is TaskType.APPROVAL:
            if upstream_broken:
                phase = TaskPhase.SKIPPED
            elif not upstream_done:
                phase = TaskPhase.WAITING
            elif task.approved or name in desired.approvals:
                phase = TaskPhase.SUCCEEDED
            else:
                phase = TaskPhase.AWAITING_APPROVAL
            outcome = TaskDecision(phase=phase, runs=runs, fingerprint=fps[name], task=task)
            progress.fully_submitted[name] = phase is TaskPhase.SUCCEEDED
        else:
            ahead = not upstream_done and all(
                progress.phases[u] is TaskPhase.SUCCEEDED
                or (progress.fully_submitted.get(u, False) and (progress.live_jobs.get(u) or progress.planned.get(u)))
                for u in upstream
            )
            outcome, task_actions, retry_at = _plan_job_task(
                desired, name, runs, fingerprint=fps[name], view=view, budget=budget, now=now,
                may_submit=can_submit and not suspended and not upstream_broken and (upstream_done or ahead),
                after_jobs=tuple(sorted({j for u in upstream for j in progress.live_jobs.get(u, ())})),
                after_submits=tuple(k for u in upstream for k in progress.planned.get(u, ())),
                upstream_broken=upstream_broken, suspended=suspended,
            )
            actions.extend(task_actions)
            if retry_at is not None:
                due.append(retry_at)
            planned = tuple(a.key for a in task_actions if isinstance(a, Submit))
            progress.planned[name] = planned
            progress.live_jobs[name] = tuple(sorted({e.job_id for e in runs.elements.values()
                                                     if e.phase in LIVE_PHASES and e.job_id}))
            planned_indices = {i for a in task_actions if isinstance(a, Submit) for i in (a.indices or (None,))}
            progress.fully_submitted[name] = all(
                e.phase in LIVE_PHASES or e.phase is TaskPhase.SUCCEEDED or e.index in planned_indices
                for e in runs.elements.values()
            )
        progress.phases[name] = outcome.phase
        outcomes[name] = outcome
        previous_phase = previous_tasks[name].phase if name in previous_tasks else None
        if outcome.phase is TaskPhase.SUCCEEDED and previous_phase is not TaskPhase.SUCCEEDED and task.outputs:
            actions.append(FetchOutputs(desired.uid, name, tuple(task.outputs)))
        events.extend(_transition_events(name, previous_phase, outcome))

    status = workflow_status(
        resolved=resolved, outcomes=outcomes, previous=desired.previous, view=view,
        generation=desired.generation, revision=desired.revision, now=now,
    )
    if desired.previous is None or desired.previous.phase != status.phase:
        if status.phase.value in ("Succeeded", "Failed"):
            events.append(Event("Normal" if status.phase.value == "Succeeded" else "Warning",
                                f"Workflow{status.phase.value}", f"workflow {status.phase.value.lower()}"))
    requeue = max(0.0, (min(due) - now).total_seconds()) if due else None
    return WorkflowPlan(uid=desired.uid, status=status, actions=tuple(actions), events=tuple(events),
                        requeue_after=requeue)


def _plan_job_task(
    desired: DesiredWorkflow,
    name: str,
    runs: TaskRuns,
    *,
    fingerprint: str,
    view: ClusterView,
    budget: CapacityBudget,
    now: datetime,
    may_submit: bool,
    after_jobs: tuple[str, ...],
    after_submits: tuple[JobKey, ...],
    upstream_broken: bool,
    suspended: bool,
) -> tuple[TaskDecision, list[Action], datetime | None]:
    task = desired.resolved.tasks[name]
    elements = list(runs.elements.values())
    live = [e for e in elements if e.phase in LIVE_PHASES]
    unknown = [e for e in elements if e.phase is TaskPhase.UNKNOWN]
    fresh = [e for e in elements if e.phase is TaskPhase.WAITING]
    resubmit = [e for e in elements if e.cancelled_by_dependency]
    failed = [e for e in elements if e.failures and e.phase in (TaskPhase.FAILED, TaskPhase.CANCELLED)
              and not e.cancelled_by_dependency]
    retryable = [e for e in failed if can_retry(task.retry, e.failures)]
    final = [e for e in failed if e not in retryable]
    retry_due = [e for e in retryable if task.retry and retry_due_at(task.retry, e.failures, fallback=now) <= now]
    next_retry = min((retry_due_at(task.retry, e.failures, fallback=now) for e in retryable
                      if task.retry and e not in retry_due), default=None)

    actions: list[Action] = []
    if suspended:
        to_hold = sorted({e.job_id for e in live if e.phase is TaskPhase.SUBMITTED and e.job_id})
        if to_hold:
            actions.append(Hold(desired.uid, name, tuple(to_hold)))
    else:
        to_release = sorted({e.job_id for e in live if e.phase is TaskPhase.HELD and e.job_id})
        if to_release:
            actions.append(Release(desired.uid, name, tuple(to_release)))

    queued = False
    if may_submit and not unknown and not final:
        groups: list[tuple[list[Element], bool]] = []
        if fresh:
            groups.append((fresh, False))
        if resubmit:
            groups.append((resubmit, True))
        for key, members in _by_escalation(task, retry_due, view).items():
            groups.append((members, True))
        fresh_attempt = _fresh_attempt(runs)
        next_attempt = runs.last_attempt
        for members, new_attempt in groups:
            if new_attempt:
                next_attempt = max(next_attempt, fresh_attempt) + 1
                attempt = next_attempt
            else:
                attempt = fresh_attempt
            failures = members[0].failures
            partition = task.resources.partition or view.default_partition
            resources = escalated_resources(task.resources, task.retry, failures,
                                            partition_max_time=view.partition_max_time.get(partition or ""))
            cores = (resources.cpus or 1) * (resources.nodes or 1)
            exclude = failed_nodes([f for e in members for f in e.failures])
            for chunk in _chunks(members, task.array is not None, view.max_array_size):
                admitted = budget.admit(len(chunk), cores)
                if admitted == 0:
                    queued = True
                    break
                partial = admitted < len(chunk)
                chunk = chunk[:admitted]
                indices = tuple(e.array_index for e in chunk) if task.array else None
                actions.append(Submit(
                    uid=desired.uid, key=JobKey(name, attempt, indices[0] if indices else 0),
                    fingerprint=fingerprint, resources=resources, indices=indices,
                    parallelism=task.array.parallelism if task.array else None,
                    after_jobs=after_jobs, after_submits=after_submits, exclude_nodes=exclude, cores=cores,
                ))
                if partial:
                    queued = True
                    break
            if queued:
                break

    submitted = any(isinstance(a, Submit) for a in actions)
    if unknown:
        phase = TaskPhase.UNKNOWN
    elif live or submitted:
        if any(e.phase is TaskPhase.RUNNING for e in live):
            phase = TaskPhase.RUNNING
        elif live and not submitted and all(e.phase is TaskPhase.HELD for e in live):
            phase = TaskPhase.HELD
        else:
            phase = TaskPhase.SUBMITTED
    elif final:
        phase = TaskPhase.FAILED if any(e.phase is TaskPhase.FAILED for e in final) else TaskPhase.CANCELLED
    elif retryable:
        phase = TaskPhase.RETRYING
    elif fresh or resubmit:
        phase = TaskPhase.SKIPPED if upstream_broken else TaskPhase.QUEUED if queued else TaskPhase.WAITING
    else:
        phase = TaskPhase.SUCCEEDED
    outcome = TaskDecision(
        phase=phase, runs=runs, fingerprint=fingerprint, task=task, queued=queued, suspended=suspended,
        next_retry=next_retry if phase is TaskPhase.RETRYING else None,
        view_reachable=view.reachable and view.accounting,
    )
    return outcome, actions, next_retry


def _fresh_attempt(runs: TaskRuns) -> int:
    """Elements never submitted for this spec join the spec's first attempt (as more chunks of
    it), so capacity-limited submission does not inflate the attempt count."""
    attempts = [e.attempt for e in runs.elements.values() if e.attempt is not None and e.submissions]
    return min(attempts) if attempts else runs.last_attempt + 1


# The failure kinds that change a retry's request, and the nodes it must avoid.
_Escalation = tuple[tuple[str, ...], tuple[str, ...]]


def _by_escalation(task: Task, elements: list[Element], view: ClusterView) -> dict[_Escalation, list[Element]]:
    """Retried elements that need the same request go out together."""
    groups: dict[_Escalation, list[Element]] = {}
    for element in elements:
        kinds = tuple(sorted(f.kind.value for f in element.failures if f.kind in
                             (FailureKind.TIMEOUT, FailureKind.OUT_OF_MEMORY, FailureKind.NODE_FAIL)))
        groups.setdefault((kinds, failed_nodes(element.failures)), []).append(element)
    return dict(sorted(groups.items()))


def _chunks(elements: list[Element], is_array: bool, max_array_size: int) -> list[list[Element]]:
    """One chunk per Slurm job: a plain job alone, array elements in windows of task indices no
    wider than MaxArraySize (each chunk is submitted with its first index as offset)."""
    if not is_array:
        return [elements[:1]]
    ordered = sorted(elements, key=lambda e: e.array_index)
    result: list[list[Element]] = []
    for element in ordered:
        if result and element.array_index - result[-1][0].array_index < max_array_size:
            result[-1].append(element)
        else:
            result.append([element])
    return result


def _by_task(items: Iterable[ObservedJob | AttemptRecord]) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for item in items:
        grouped.setdefault(item.key.task, []).append(item)
    return grouped


def _transition_events(name: str, before: TaskPhase | None, outcome: TaskDecision) -> list[Event]:
    if before is outcome.phase:
        return []
    phase = outcome.phase
    if phase is TaskPhase.SUCCEEDED and outcome.task.type is TaskType.APPROVAL:
        return [Event("Normal", "Approved", f"task {name} was approved")]
    if phase is TaskPhase.SUCCEEDED:
        return [Event("Normal", "TaskSucceeded", f"task {name} succeeded")]
    if phase is TaskPhase.FAILED:
        return [Event("Warning", "TaskFailed", f"task {name} failed: {outcome.failure_summary()}")]
    if phase is TaskPhase.RETRYING:
        return [Event("Warning", "TaskRetrying", f"task {name} {outcome.failure_summary()}; retrying")]
    if phase is TaskPhase.AWAITING_APPROVAL:
        return [Event("Normal", "AwaitingApproval", f"task {name} is waiting for a person to approve it")]
    if phase is TaskPhase.CANCELLED:
        return [Event("Warning", "TaskCancelled", f"task {name} was cancelled outside the reconciler")]
    if phase is TaskPhase.QUEUED and before is not TaskPhase.QUEUED:
        return [Event("Normal", "ClusterAtCapacity", f"task {name} waits for the cluster's capacity")]
    return []
