"""The diff: ``(desired, observed, stored, now) -> Plan`` for every workflow on one cluster.

Pure and level-triggered: it never asks what just happened, it looks at the whole declared and
observed state each tick. Workflows on a cluster share its capacity, so they are planned together,
oldest first. Called by the controller once per cluster and tick, and by tests with plain data.

Each workflow is planned task by task in dependency order (``_plan_task``): merge the task's
observed jobs and history into element states (``task_runs``), cancel jobs of an older spec,
decide the task (an approval here, a job task in ``jobtask``), and pass on to the tasks after it
what they need to know (``TaskProgress``). The workflow's status and events come last.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from ..api import Capacity, Task, TaskPhase, TaskType, WorkflowStatus
from ..manifests.resolve import ResolvedWorkflow
from .approval_values import ApprovedValues
from .approvals import TaskApprovals
from .assign import Assignment, Choosing, assign
from .budget import TaskCost, judge_budget, with_budget
from .capacity import CapacityBudget
from .choices import RecordedChoice, TaskChoices
from .cleanup import CleanupRecord, plan_cleanup
from .conditions import with_attention
from .events import iteration_events, task_events, workflow_events
from .fanout import ArraySize, Unsized, array_indices, unsized_phase
from .fingerprint import fingerprints
from .history import TaskUsage, kind_of
from .inputs import TaskInputs
from .jobtask import TaskPlan, Upstream, plan_job_task
from .observed import LIVE_PHASES, AttemptRecord, ClusterView, JobKey, ObservedJob
from .orchestrator import Reason
from .outputs import TaskOutputs, decide_outputs
from .plan import Action, Cancel, Event, Submit, WorkflowPlan
from .requests import TaskRequests, cancel_in_force, plan_cancelled_task
from .status import TaskDecision, workflow_status
from .taskruns import TaskRuns, task_runs

__all__ = ["CapacityBudget", "DesiredWorkflow", "LastPlans", "plan_cluster", "prune", "task_fingerprints"]

# How long a task that learns from the runs before it waits for accounting to report them.
HISTORY_GRACE = timedelta(minutes=2)
BROKEN_PHASES = frozenset({TaskPhase.FAILED, TaskPhase.SKIPPED, TaskPhase.CANCELLED})


@dataclass(frozen=True)
class DesiredWorkflow:
    uid: str
    resolved: ResolvedWorkflow
    generation: int
    revision: str | None = None
    approvals: TaskApprovals = field(default_factory=TaskApprovals)  # each bound to a task's fingerprint
    previous: WorkflowStatus | None = None
    observed: tuple[ObservedJob, ...] = ()
    records: tuple[AttemptRecord, ...] = ()
    requests: TaskRequests = field(default_factory=TaskRequests)  # cancel and retry asked for by hand
    inputs: Mapping[str, TaskInputs] = field(default_factory=dict)  # by task, for tasks with inputs
    # By array task sized at run time: what its file said, read for its writer's current fingerprint.
    array_sizes: Mapping[str, ArraySize] = field(default_factory=dict)
    outputs: TaskOutputs = field(default_factory=TaskOutputs)  # where each fetch of declared outputs stands
    cleanup: CleanupRecord | None = None  # the last ttlSecondsAfterFinished cleanup done
    # What choosing auto resources needs this tick; None: tasks go as declared (auto fields fall
    # back to the defaults) and budgets project nothing.
    choosing: Choosing | None = None
    choices: TaskChoices = field(default_factory=TaskChoices)  # the choices earlier attempts went out with
    # By (task, fingerprint): what the latest finished attempt made for that spec used.
    usage: Mapping[tuple[str, str], TaskUsage] = field(default_factory=dict)


def plan_cluster(
    workflows: Sequence[DesiredWorkflow], *, view: ClusterView, capacity: Capacity, now: datetime,
    last: LastPlans | None = None,
) -> list[WorkflowPlan]:
    """``last``: the plans of earlier ticks (see :class:`LastPlans`); a workflow planned from the
    same inputs as its last plan, which had nothing to do, gets that plan back, marked unchanged."""
    budget = CapacityBudget.for_cluster(capacity, view)
    ordered = sorted(workflows, key=lambda w: _age_key(w, now=now))
    if last is None:
        return [_plan_workflow(workflow, view=view, budget=budget, now=now) for workflow in ordered]
    plans = []
    kept: dict[str, _LastPlan] = {}
    steady = _SteadyView.of(view)
    for workflow in ordered:
        facts = _ClusterFacts(steady=steady, queued_jobs=view.queued_jobs, queued_cores=view.queued_cores,
                              budget_jobs=budget.jobs, budget_cores=budget.cores,
                              accounting_complete_until=view.accounting_complete_until)
        found = last.reuse(workflow, facts=facts, now=now)
        if found is not None:
            kept[workflow.uid] = found
            plans.append(found.again(now))
            continue
        plan = _plan_workflow(workflow, view=view, budget=budget, now=now)
        if (remembered := _LastPlan.of(workflow, plan, facts=facts, now=now)) is not None:
            kept[workflow.uid] = remembered
        plans.append(plan)
    last.keep(view.name, kept)
    return plans


@dataclass(frozen=True)
class _SteadyView:
    """What planning reads of a cluster view apart from its queue and accounting horizon, which
    move whenever any job on the cluster does (they count only for some workflows, see
    ``_LastPlan``)."""

    view: ClusterView

    @classmethod
    def of(cls, view: ClusterView) -> _SteadyView:
        return cls(replace(view, queued_jobs=0, queued_cores=0, accounting_complete_until=None))


@dataclass(frozen=True)
class _ClusterFacts:
    """The cluster as one workflow was planned against it: the view, and the capacity left at
    its turn (the workflows before it in this tick took theirs)."""

    steady: _SteadyView
    queued_jobs: int
    queued_cores: int
    budget_jobs: int | None
    budget_cores: int | None
    accounting_complete_until: datetime | None

    @property
    def capacity(self) -> tuple[int, int, int | None, int | None]:
        return (self.queued_jobs, self.queued_cores, self.budget_jobs, self.budget_cores)


# Task phases whose next step waits for room on the cluster (or for a prerequisite, which goes
# out when there is room): their workflow's plan depends on the cluster's queue.
_WAITING_FOR_ROOM = frozenset({TaskPhase.WAITING, TaskPhase.QUEUED})


@dataclass(frozen=True)
class _LastPlan:
    """A plan with nothing to do, and everything it was planned from."""

    desired: DesiredWorkflow
    facts: _ClusterFacts
    plan: WorkflowPlan
    due: datetime | None  # when its earliest deadline (a retry's backoff, a TTL) falls due
    capacity_bound: bool  # some task waits for room on the cluster
    horizon_bound: bool  # some submission is not confirmed: accounting's horizon decides it

    @classmethod
    def of(cls, desired: DesiredWorkflow, plan: WorkflowPlan, *, facts: _ClusterFacts,
           now: datetime) -> _LastPlan | None:
        """None for a plan that must not be handed out again: one with something to do; one that
        changed the status it started from (only a plan that reproduced its own status is known
        to be where planning the same inputs again ends: the status is an input too); one whose
        choices depend on what cannot be compared cheaply (the Orchestrator's history and
        estimates), or that a tick may settle without anything else changing (an unknown end)."""
        if plan.actions or desired.choosing is not None or not _same(desired.previous, plan.status):
            return None
        if any(task.phase is TaskPhase.UNKNOWN for task in plan.status.tasks.values()):
            return None
        due = now + timedelta(seconds=plan.requeue_after) if plan.requeue_after is not None else None
        return cls(desired=desired, facts=facts, plan=replace(plan, events=(), unchanged=True), due=due,
                   capacity_bound=any(task.phase in _WAITING_FOR_ROOM for task in plan.status.tasks.values()),
                   horizon_bound=any(record.job_id is None for record in desired.records))

    def again(self, now: datetime) -> WorkflowPlan:
        """The plan handed out again at ``now``, its deadline still ahead."""
        if self.due is None:
            return self.plan
        return replace(self.plan, requeue_after=max(0.0, (self.due - now).total_seconds()))

    def holds_for(self, desired: DesiredWorkflow, *, facts: _ClusterFacts, now: datetime) -> bool:
        """Planning ``desired`` against ``facts`` at ``now`` would give this plan again: every
        input is what it was, the status this plan made is the one ``desired`` starts from, and
        no deadline has come."""
        if self.due is not None and now >= self.due:
            return False
        if desired.choosing is not None or not _same(desired.previous, self.plan.status):
            return False
        return self._same_cluster(facts) and self._same_inputs(desired)

    def _same_cluster(self, facts: _ClusterFacts) -> bool:
        before = self.facts
        return (facts.steady == before.steady
                and (not self.capacity_bound or facts.capacity == before.capacity)
                and (not self.horizon_bound or facts.accounting_complete_until == before.accounting_complete_until))

    def _same_inputs(self, desired: DesiredWorkflow) -> bool:
        before = self.desired
        return (desired.uid == before.uid and desired.generation == before.generation
                and desired.revision == before.revision
                and (desired.resolved is before.resolved or desired.resolved.content == before.resolved.content)
                and all(_same(getattr(desired, name), getattr(before, name)) for name in _COMPARED))


# The inputs of a plan compared field by field (the resolved workflow by its content, the
# previous status against the status the plan made).
_COMPARED = ("approvals", "observed", "records", "requests", "inputs", "array_sizes", "outputs", "cleanup",
             "choices", "usage")


def _same(a: object, b: object) -> bool:
    return a is b or a == b


class LastPlans:
    """The last plan of each workflow that had nothing to do, with what it was planned from,
    so that a tick in which none of a workflow's inputs changed hands that plan back instead of
    planning it again, and writes no status for it.

    The plan is a pure function of those inputs and of ``now``, which it reads only for
    deadlines (kept as ``_LastPlan.due``): handing it back is the same as planning again. Held in
    memory only, by the loop: a loop that starts afresh has none and plans every workflow, so
    nothing here is needed for a correct result, only for a cheap one. Anything in doubt (a plan
    with actions, an unknown outcome, auto resources) is planned again every tick."""

    def __init__(self) -> None:
        self._clusters: dict[str, dict[str, _LastPlan]] = {}

    def reuse(self, desired: DesiredWorkflow, *, facts: _ClusterFacts, now: datetime) -> _LastPlan | None:
        found = self._clusters.get(facts.steady.view.name, {}).get(desired.uid)
        return found if found is not None and found.holds_for(desired, facts=facts, now=now) else None

    def keep(self, cluster: str, plans: dict[str, _LastPlan]) -> None:
        """The plans worth keeping from this tick on ``cluster``; the others are forgotten."""
        self._clusters[cluster] = plans

    def forget(self, uid: str) -> None:
        """Plan the workflow again next tick (its status could not be written, say)."""
        for plans in self._clusters.values():
            plans.pop(uid, None)

    def __len__(self) -> int:
        return sum(len(plans) for plans in self._clusters.values())


def _age_key(workflow: DesiredWorkflow, *, now: datetime) -> tuple[datetime, str]:
    """Oldest first, so a workflow started earlier is not starved by newer ones; a workflow
    that never started counts as starting now."""
    started = workflow.previous.started_at if workflow.previous else None
    return (started or now, workflow.resolved.workflow.metadata.name)


def prune(uid: str, observed: Iterable[ObservedJob]) -> tuple[Cancel, ...]:
    """Cancel every live job of a workflow that is no longer declared."""
    by_task: dict[str, set[str]] = {}
    for job in observed:
        if job.phase in LIVE_PHASES:
            by_task.setdefault(job.key.task, set()).add(job.job_id)
    return tuple(Cancel(uid, task, tuple(sorted(ids)), "WorkflowRemoved") for task, ids in sorted(by_task.items()))


@dataclass(frozen=True)
class TaskProgress:
    """What the tasks after a task need to know of it while one workflow is planned."""

    phase: TaskPhase
    fully_submitted: bool  # every element is live, succeeded or submitted in this plan
    live_jobs: tuple[str, ...] = ()
    planned: tuple[JobKey, ...] = ()  # its submissions in this plan

    @property
    def followable(self) -> bool:
        """A task after this one may go out now, with a Slurm dependency on its jobs."""
        return self.phase is TaskPhase.SUCCEEDED or (self.fully_submitted and bool(self.live_jobs or self.planned))


@dataclass(frozen=True)
class TaskStep:
    """Everything planning one task produced."""

    plan: TaskPlan
    progress: TaskProgress
    actions: tuple[Action, ...]  # the task's own, with cancellations and output fetching
    events: tuple[Event, ...]


def _plan_workflow(
    desired: DesiredWorkflow, *, view: ClusterView, budget: CapacityBudget, now: datetime
) -> WorkflowPlan:
    resolved = desired.resolved
    fps = task_fingerprints(desired)
    observed = _by_task(desired.observed)
    records = _by_task(desired.records)
    runs = {name: task_runs(indices=_indices(desired, name), fingerprint=fps[name], observed=observed.get(name, ()),
                            records=records.get(name, ()), accounting=view.accounting,
                            accounting_complete_until=view.accounting_complete_until)
            for name in resolved.order}
    assignments = _assignments(desired, runs)
    verdict = judge_budget(resolved.spec.budget, spent_core_seconds=sum(r.core_seconds for r in runs.values()),
                           tasks=_costs(desired, runs, assignments))
    hold = verdict.held_because if verdict is not None else None
    steps: dict[str, TaskStep] = {}
    for name in resolved.order:
        upstream = _upstream(resolved.prerequisites[name], steps=steps,
                             learning=_learning(desired, name, assignments.get(name), runs=runs, fps=fps, now=now))
        steps[name] = _plan_task(desired, name, runs=runs[name], fps=fps, upstream=upstream, view=view,
                                 budget=budget, now=now, assignment=assignments.get(name), budget_hold=hold)

    status = workflow_status(
        resolved=resolved, outcomes={name: step.plan.decision for name, step in steps.items()},
        previous=desired.previous, view=view, generation=desired.generation, revision=desired.revision, now=now,
        usage=_usage(desired, fps),
    )
    status = with_budget(status, verdict, previous=desired.previous, generation=desired.generation, now=now)
    status = with_attention(status, previous=desired.previous, generation=desired.generation, now=now)
    status = status.model_copy(update={"cluster": view.name})
    cleanup = plan_cleanup(desired.uid, ttl_seconds=resolved.spec.ttl_seconds_after_finished, status=status,
                           previous=desired.previous, done=desired.cleanup, now=now)
    status = status.model_copy(update={"cleaned_at": cleanup.cleaned_at})
    events = tuple(event for step in steps.values() for event in step.events)
    due = [at for at in (*(step.plan.retry_at for step in steps.values()), cleanup.due) if at is not None]
    return WorkflowPlan(
        uid=desired.uid, status=status,
        actions=tuple(action for step in steps.values() for action in step.actions)
        + ((cleanup.action,) if cleanup.action is not None else ()),
        events=events + workflow_events(previous=desired.previous, status=status),
        requeue_after=max(0.0, (min(due) - now).total_seconds()) if due else None,
    )


def _usage(desired: DesiredWorkflow, fps: Mapping[str, str]) -> dict[str, TaskUsage]:
    """By task: what the latest finished attempt of its current spec used."""
    return {name: found for name, fp in fps.items() if (found := desired.usage.get((name, fp))) is not None}


def _assignments(desired: DesiredWorkflow, runs: Mapping[str, TaskRuns]) -> dict[str, Assignment]:
    """The job tasks' resources as the Orchestrator chooses them: of the tasks with auto ones
    that may submit something (one whose elements all run or succeeded shows the choice it went
    out with), and of every job task when a budget needs their predicted cost."""
    choosing = desired.choosing
    resolved = desired.resolved
    if choosing is None:
        return {}
    every = resolved.spec.budget is not None
    defaults = resolved.spec.defaults.resources
    return {name: assign(task, kind=kind_of(resolved, name), defaults=defaults, choosing=choosing)
            for name, task in resolved.tasks.items()
            if task.type is TaskType.JOB and (every or (task.resources.auto and not _settled(runs[name])))}


def _settled(runs: TaskRuns) -> bool:
    """Nothing of the task can go out this tick: every element runs or succeeded."""
    return all(e.phase in LIVE_PHASES or e.phase is TaskPhase.SUCCEEDED for e in runs.elements.values())


def _learning(desired: DesiredWorkflow, name: str, assignment: Assignment | None, *,
              runs: Mapping[str, TaskRuns], fps: Mapping[str, str], now: datetime) -> bool:
    """A task whose kind has too little history to choose from, right after tasks of its own
    kind, waits for their runs to be in the history rather than going out ahead of them with the
    defaults: those runs are what it learns from. (Accounting may take a moment to report a run
    after its job ended; a run it never reports is waited for ``HISTORY_GRACE`` at most.)"""
    if assignment is None or assignment.choice.reason not in (Reason.NO_HISTORY, Reason.TOO_LITTLE_HISTORY):
        return False
    resolved = desired.resolved
    kind = kind_of(resolved, name)
    for before in resolved.graph.predecessors(name):
        if resolved.tasks[before].type is not TaskType.JOB or kind_of(resolved, before) != kind:
            continue
        elements = runs[before].elements.values()
        if any(element.phase is not TaskPhase.SUCCEEDED for element in elements):
            return True
        ended = max((element.finished_at for element in elements if element.finished_at), default=None)
        if (before, fps[before]) not in desired.usage and ended is not None and now - ended < HISTORY_GRACE:
            return True
    return False


def _costs(desired: DesiredWorkflow, runs: Mapping[str, TaskRuns],
           assignments: Mapping[str, Assignment]) -> dict[str, TaskCost]:
    """Each job task's elements still to succeed, and what one is predicted to cost."""
    costs = {}
    for name, task in desired.resolved.tasks.items():
        if task.type is not TaskType.JOB:
            continue
        assignment = assignments.get(name)
        remaining = sum(1 for element in runs[name].elements.values() if element.phase is not TaskPhase.SUCCEEDED)
        costs[name] = TaskCost(remaining_elements=remaining,
                               core_hours_each=assignment.core_hours if assignment is not None else None)
    return costs


def task_fingerprints(desired: DesiredWorkflow) -> dict[str, str]:
    """Every task's fingerprint as this plan computes it (the controller binds the manifest's
    approvals to the same ones)."""
    resolved = desired.resolved
    return fingerprints(resolved.graph, {name: found.digest for name, found in desired.inputs.items()},
                        approvals=desired.approvals, order=resolved.order, prerequisites=resolved.prerequisites)


def _indices(desired: DesiredWorkflow, name: str) -> list[int | None]:
    return array_indices(desired.resolved.tasks[name], desired.array_sizes.get(name))


def _upstream(names: Sequence[str], *, steps: Mapping[str, TaskStep], learning: bool = False) -> Upstream:
    """What the tasks ``names`` (a task's direct prerequisites, sorted) allow it; ``learning``:
    it waits for the runs of theirs it learns from (``_learning``)."""
    before = [steps[name].progress for name in names]
    done = all(p.phase is TaskPhase.SUCCEEDED for p in before) and not learning
    return Upstream(
        broken=any(p.phase in BROKEN_PHASES for p in before),
        done=done,
        ahead=not learning and not done and all(p.followable for p in before),
        after_jobs=tuple(sorted({job for p in before for job in p.live_jobs})),
        after_submits=tuple(key for p in before for key in p.planned),
    )


def _plan_task(
    desired: DesiredWorkflow,
    name: str,
    *,
    runs: TaskRuns,
    fps: Mapping[str, str],
    upstream: Upstream,
    view: ClusterView,
    budget: CapacityBudget,
    now: datetime,
    assignment: Assignment | None = None,
    budget_hold: str | None = None,
) -> TaskStep:
    fingerprint = fps[name]
    task = assignment.task if assignment is not None else _as_declared(desired, name)
    # Inputs that cannot be found say nothing about the running job's spec (a file may be back, or
    # readable again, next tick): its jobs are left alone until the inputs are known again.
    cancels, cancel_events = _cancel_obsolete(desired.uid, name, runs) if not _missing_inputs(desired, name) else (
        (), ())
    if cancel_in_force(desired.requests, name, fingerprint=fingerprint, runs=runs):
        plan = plan_cancelled_task(desired.uid, name, task=task, runs=runs, fingerprint=fingerprint)
        progress = TaskProgress(phase=plan.decision.phase, fully_submitted=False)
    elif (unsized := unsized_phase(task, desired.array_sizes.get(name), upstream_broken=upstream.broken)) is not None:
        plan = _plan_unsized(task, unsized, runs=runs, fingerprint=fingerprint)
        progress = TaskProgress(phase=plan.decision.phase, fully_submitted=False)
    elif task.type is TaskType.APPROVAL:
        plan = _plan_approval(name, task=task, runs=runs, fingerprint=fingerprint, upstream=upstream,
                              approvals=desired.approvals)
        progress = TaskProgress(phase=plan.decision.phase, fully_submitted=plan.decision.phase is TaskPhase.SUCCEEDED)
    else:
        suspended = desired.resolved.spec.suspend
        plan = plan_job_task(
            uid=desired.uid, name=name, task=task, runs=runs, fingerprint=fingerprint, upstream=upstream,
            may_submit=(view.reachable and view.accounting and not suspended and upstream.allows_submission
                        and not _missing_inputs(desired, name) and budget_hold is None),
            suspended=suspended, view=view, budget=budget, now=now,
            retry_requested=desired.requests.retry_pending(name, last_attempt=runs.last_attempt),
        )
        plan = _with_choice(plan, name, assignment=assignment, recorded=desired.choices, fingerprint=fingerprint,
                            budget_hold=budget_hold if upstream.allows_submission else None)
        if _missing_inputs(desired, name):
            plan = replace(plan, decision=replace(plan.decision, missing_inputs=_missing_inputs(desired, name)))
        plan = _with_approved(plan, _approved_before(desired, name, fps))
        progress = _job_progress(runs, plan)
    before = _previous_phase(desired.previous, name)
    plan, fetch = _with_outputs(desired, name, plan=plan, now=now)
    return TaskStep(
        plan=plan, progress=progress,
        actions=cancels + plan.actions + fetch,
        events=cancel_events + task_events(name, before=before, decision=plan.decision) + iteration_events(
            name, previous=desired.previous.tasks.get(name) if desired.previous else None, decision=plan.decision),
    )


def _as_declared(desired: DesiredWorkflow, name: str) -> Task:
    """A task nothing was chosen for, with each auto resource as declared by the defaults."""
    task = desired.resolved.tasks[name]
    if not task.resources.auto:
        return task
    return task.model_copy(update={"resources": task.resources.declared(desired.resolved.spec.defaults.resources)})


def _with_choice(plan: TaskPlan, name: str, *, assignment: Assignment | None, recorded: TaskChoices,
                 fingerprint: str, budget_hold: str | None) -> TaskPlan:
    """Each submission carries the choice it goes out with, to be recorded with it; the status
    shows that choice, or, while nothing goes out, the one the latest attempt went out with."""
    hold = budget_hold if plan.decision.phase is TaskPhase.WAITING else None
    latest = recorded.latest(name, fingerprint=fingerprint)
    shown = latest.status if latest is not None and not plan.submits else None
    if assignment is None or assignment.status is None:
        if hold == plan.decision.budget_hold and shown == plan.decision.choice:
            return plan  # most tasks: nothing to add, and no copies to make
        return replace(plan, decision=replace(plan.decision, budget_hold=hold, choice=shown))
    decision = replace(plan.decision, budget_hold=hold)
    status, ranked = assignment.status, assignment.ranked
    actions = tuple(
        replace(action, choice=RecordedChoice(task=name, fingerprint=fingerprint, attempt=action.key.attempt,
                                              status=status, ranked=ranked))
        if isinstance(action, Submit) else action for action in plan.actions)
    return replace(plan, actions=actions, decision=replace(decision, choice=shown or status))


def _missing_inputs(desired: DesiredWorkflow, name: str) -> tuple[str, ...]:
    found = desired.inputs.get(name)
    return found.missing if found is not None else ()


def _cancel_obsolete(uid: str, name: str, runs: TaskRuns) -> tuple[tuple[Cancel, ...], tuple[Event, ...]]:
    """Jobs still running for an older spec of the task are cancelled: the declared spec rules."""
    if not runs.obsolete_live_jobs:
        return (), ()
    return ((Cancel(uid, name, runs.obsolete_live_jobs, "SpecChanged"),),
            (Event("Normal", "SpecChanged", f"task {name} changed: cancelling its running jobs"),))


def _plan_unsized(task: Task, unsized: Unsized, *, runs: TaskRuns, fingerprint: str) -> TaskPlan:
    """An array whose size is not known yet, or cannot be: nothing goes out, not even ahead of
    its writer with afterok, since how many elements to submit is what is missing."""
    return TaskPlan(decision=TaskDecision(phase=unsized.phase, runs=runs, fingerprint=fingerprint, task=task,
                                          unsized=unsized.message))


def _plan_approval(
    name: str, *, task: Task, runs: TaskRuns, fingerprint: str, upstream: Upstream, approvals: TaskApprovals
) -> TaskPlan:
    """An approval task succeeds once a person approved it as it is now (its fingerprint, which
    folds in everything before it), asked only after its prerequisites succeeded; approving early
    does not skip them. An approval of other inputs is stale: the task asks a person again. The
    newest decision at its fingerprint holds: a rejection fails it until it is approved again."""
    stale = None
    current = approvals.current(name, fingerprint=fingerprint)
    if upstream.broken:
        phase = TaskPhase.SKIPPED
    elif not upstream.done:
        phase = TaskPhase.WAITING
    elif current is not None and not current.problems(task):
        phase = TaskPhase.FAILED if current.rejected is not None else TaskPhase.SUCCEEDED
    else:
        phase = TaskPhase.AWAITING_APPROVAL
        stale = approvals.stale(name, fingerprint=fingerprint)
    return TaskPlan(decision=TaskDecision(phase=phase, runs=runs, fingerprint=fingerprint, task=task,
                                          stale_approval=stale,
                                          approval=current if phase is not TaskPhase.WAITING else None))


def _approved_before(desired: DesiredWorkflow, name: str, fps: Mapping[str, str]) -> tuple[ApprovedValues, ...]:
    """The values of the approvals that hold for the approval tasks before ``name`` (directly
    or not), for its script and environment."""
    resolved = desired.resolved
    found = []
    for before in resolved.approvals_before.get(name, ()):
        task = resolved.tasks[before]
        current = desired.approvals.current(before, fingerprint=fps[before])
        if current is not None and current.rejected is None and not current.problems(task):
            found.append(ApprovedValues(task=before, values=tuple(sorted(current.values_for(task).items()))))
    return tuple(found)


def _with_approved(plan: TaskPlan, approved: tuple[ApprovedValues, ...]) -> TaskPlan:
    """Each submission carries the approved values its task is rendered with."""
    if not approved:
        return plan
    return replace(plan, actions=tuple(replace(action, approved=approved) if isinstance(action, Submit) else action
                                       for action in plan.actions))


def _job_progress(runs: TaskRuns, plan: TaskPlan) -> TaskProgress:
    submits = plan.submits
    planned_indices = {index for submit in submits for index in (submit.indices or (None,))}
    elements = runs.elements.values()
    return TaskProgress(
        phase=plan.decision.phase,
        fully_submitted=all(
            e.phase in LIVE_PHASES or e.phase is TaskPhase.SUCCEEDED or e.index in planned_indices for e in elements
        ),
        live_jobs=tuple(sorted({e.job_id for e in elements if e.phase in LIVE_PHASES and e.job_id})),
        planned=tuple(submit.key for submit in submits),
    )


def _previous_phase(previous: WorkflowStatus | None, name: str) -> TaskPhase | None:
    task = previous.tasks.get(name) if previous else None
    return task.phase if task is not None else None


def _with_outputs(desired: DesiredWorkflow, name: str, *, plan: TaskPlan,
                  now: datetime) -> tuple[TaskPlan, tuple[Action, ...]]:
    """A succeeded task's declared outputs: its status says where they stand, and they are
    fetched until they are here (``outputs``); the next try of a failed fetch is due like a retry."""
    decision = plan.decision
    attempt = max((element.attempt or 0 for element in decision.runs.elements.values()), default=0)
    previous = desired.previous
    shown = previous.tasks.get(name) if previous is not None and previous.cleaned_at is not None else None
    found = decide_outputs(desired.uid, name, task=decision.task, phase=decision.phase,
                           fingerprint=decision.fingerprint, attempt=attempt, outputs=desired.outputs, now=now,
                           cleaned=shown.outputs if shown is not None and shown.fingerprint == decision.fingerprint
                           else None)
    if found is None:
        return plan, ()
    due = min((at for at in (plan.retry_at, found.due) if at is not None), default=None)
    plan = replace(plan, decision=replace(decision, outputs=found.status), retry_at=due)
    return plan, (found.fetch,) if found.fetch is not None else ()


def _by_task(items: Iterable[ObservedJob | AttemptRecord]) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for item in items:
        grouped.setdefault(item.key.task, []).append(item)
    return grouped
