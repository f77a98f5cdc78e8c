"""One job task's decisions for one tick: what to hold, release and submit, and its phase.

Pure. Called by the planner for every task that runs a Slurm job (approval tasks have no jobs),
in the workflow's dependency order. The steps, in the order ``plan_job_task`` takes them:

1. ``classify_elements``: sort the task's elements into live, unknown, never submitted,
   cancelled for a failed prerequisite, retryable (due now or later) and finally failed;
2. ``hold_or_release``: hold pending jobs while the workflow is suspended, release them after;
3. ``submission_groups``: the elements that go out together and the attempt number each gets;
4. ``cut_chunks``: each group's request, cut into one chunk per Slurm job;
5. ``within_parallelism``: keep one chunk of an array in Slurm's hands at a time when the task
   sets a parallelism, so Slurm's per-job ``%N`` caps the whole task;
6. ``admit``: take the chunks against the cluster's capacity, in order, until one does not fit;
7. ``derive_phase``: the task's phase from its elements and what was submitted.

Nothing is submitted while an element's outcome is unknown or the task has failed for good, so
a job is never sent twice and a final failure stays final.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from ..api import FailureKind, Resources, RetryPolicy, Task, TaskPhase
from .capacity import CapacityBudget
from .observed import LIVE_PHASES, ClusterView, JobKey
from .plan import Action, Hold, Release, Submit
from .retry import can_retry, escalated_resources, failed_nodes, retry_due_at
from .status import TaskDecision
from .taskruns import Element, TaskRuns

# The failure kinds that change a retry's request (TIMEOUT and OUT_OF_MEMORY escalate it,
# NODE_FAIL excludes nodes): retried elements that differ in these go out as separate jobs.
_ESCALATING = (FailureKind.TIMEOUT, FailureKind.OUT_OF_MEMORY, FailureKind.NODE_FAIL)


@dataclass(frozen=True)
class Upstream:
    """What the tasks a task depends on allow it this tick."""

    broken: bool  # one of them failed, was skipped or was cancelled: this task cannot run
    done: bool  # all of them succeeded
    ahead: bool  # not all done, but each is done or wholly in Slurm's hands: go out behind them
    after_jobs: tuple[str, ...] = ()  # their live jobs, for --dependency=afterok
    after_submits: tuple[JobKey, ...] = ()  # their submissions earlier in this same plan

    @property
    def allows_submission(self) -> bool:
        return not self.broken and (self.done or self.ahead)


@dataclass(frozen=True)
class TaskPlan:
    """One task's decision for this tick, the actions it needs and when a retry falls due."""

    decision: TaskDecision
    actions: tuple[Action, ...] = ()
    retry_at: datetime | None = None  # the earliest backoff still running, if any

    @property
    def submits(self) -> tuple[Submit, ...]:
        return tuple(action for action in self.actions if isinstance(action, Submit))


@dataclass(frozen=True)
class ElementClasses:
    """A job task's elements sorted by what this tick does with them (an element is in at most
    one of live, unknown, fresh, resubmit, retryable and final; retry_due is part of retryable)."""

    live: tuple[Element, ...]  # Slurm has them: submitted, held or running
    unknown: tuple[Element, ...]  # submitted, but Slurm does not say how they ended
    fresh: tuple[Element, ...]  # never submitted for the current spec
    resubmit: tuple[Element, ...]  # cancelled by Slurm because a prerequisite failed
    retryable: tuple[Element, ...]  # failed, and the retry policy runs them again
    final: tuple[Element, ...]  # failed or cancelled, and nothing runs them again
    retry_due: tuple[Element, ...]  # the retryable ones whose backoff is over
    next_retry: datetime | None  # when the earliest backoff still running ends

    @property
    def blocked(self) -> bool:
        """Nothing may be submitted: an unknown outcome could be a job still running, and a
        final failure ends the task."""
        return bool(self.unknown or self.final)


@dataclass(frozen=True)
class SubmissionGroup:
    """Elements that go out under one attempt number with one request."""

    members: tuple[Element, ...]
    attempt: int


@dataclass(frozen=True)
class Chunk:
    """Elements that go to Slurm as one job (one array, or one plain job)."""

    members: tuple[Element, ...]
    attempt: int
    resources: Resources  # escalated where a retry asks for more
    cores: int  # per element
    exclude_nodes: tuple[str, ...]


@dataclass(frozen=True)
class Admission:
    """The chunks that fit the cluster's capacity (the last one possibly cut short), and whether
    anything had to stay behind in the reconciler's queue."""

    chunks: tuple[Chunk, ...]
    queued: bool


def plan_job_task(
    *,
    uid: str,
    name: str,
    task: Task,
    runs: TaskRuns,
    fingerprint: str,
    upstream: Upstream,
    may_submit: bool,
    suspended: bool,
    view: ClusterView,
    budget: CapacityBudget,
    now: datetime,
    retry_requested: bool = False,
) -> TaskPlan:
    """Decide one job task. ``may_submit`` says whether the workflow and the cluster allow new
    jobs at all this tick; ``budget`` is taken from for every element submitted;
    ``retry_requested``: a person asked for a new attempt (``reconciler retry``) not made yet."""
    elements = classify_elements(runs, policy=task.retry, now=now, retry_requested=retry_requested)
    actions: tuple[Action, ...] = hold_or_release(uid=uid, name=name, live=elements.live, suspended=suspended)
    admission = Admission(chunks=(), queued=False)
    if may_submit and not elements.blocked:
        groups = submission_groups(elements, task=task, runs=runs)
        chunks = within_parallelism(cut_chunks(groups, task=task, view=view), task=task, live=elements.live)
        admission = admit(chunks, budget=budget)
    submits = tuple(
        submit_for(chunk, uid=uid, name=name, task=task, fingerprint=fingerprint, upstream=upstream)
        for chunk in admission.chunks
    )
    phase = derive_phase(elements, submitted=bool(submits), queued=admission.queued, upstream_broken=upstream.broken)
    decision = TaskDecision(
        phase=phase, runs=runs, fingerprint=fingerprint, task=task, queued=admission.queued, suspended=suspended,
        next_retry=elements.next_retry if phase is TaskPhase.RETRYING else None,
        view_reachable=view.reachable and view.accounting,
    )
    return TaskPlan(decision=decision, actions=actions + submits, retry_at=elements.next_retry)


def classify_elements(runs: TaskRuns, *, policy: RetryPolicy | None, now: datetime,
                      retry_requested: bool = False) -> ElementClasses:
    """A retry asked for by a person runs every failed element again at once, whatever the
    policy's limit and backoff say."""
    elements = tuple(runs.elements.values())
    retryable, final = _split_failed(elements, policy=policy)
    due, next_retry = _retry_times(retryable, policy=policy, now=now)
    if retry_requested:
        retryable, final, due, next_retry = retryable + final, (), retryable + final, None
    return ElementClasses(
        live=tuple(element for element in elements if element.phase in LIVE_PHASES),
        unknown=tuple(element for element in elements if element.phase is TaskPhase.UNKNOWN),
        fresh=tuple(element for element in elements if element.phase is TaskPhase.WAITING),
        resubmit=tuple(element for element in elements if element.cancelled_by_dependency),
        retryable=retryable,
        final=final,
        retry_due=due,
        next_retry=next_retry,
    )


def _split_failed(
    elements: Sequence[Element], *, policy: RetryPolicy | None
) -> tuple[tuple[Element, ...], tuple[Element, ...]]:
    """The failed elements the policy runs again, and those it does not."""
    retryable: list[Element] = []
    final: list[Element] = []
    for element in elements:
        if _failed(element):
            (retryable if can_retry(policy, element.failures) else final).append(element)
    return tuple(retryable), tuple(final)


def _failed(element: Element) -> bool:
    """Ended without success in a way that counts against the task (a cancellation because a
    prerequisite failed does not: the element goes out again)."""
    ended = element.phase in (TaskPhase.FAILED, TaskPhase.CANCELLED)
    return bool(element.failures) and ended and not element.cancelled_by_dependency


def _retry_times(
    retryable: Sequence[Element], *, policy: RetryPolicy | None, now: datetime
) -> tuple[tuple[Element, ...], datetime | None]:
    """The retryable elements whose backoff is over, and when the next of the others is due."""
    if policy is None:
        return (), None
    due_at = [(element, retry_due_at(policy, element.failures, fallback=now)) for element in retryable]
    due = tuple(element for element, at in due_at if at <= now)
    return due, min((at for _, at in due_at if at > now), default=None)


def hold_or_release(*, uid: str, name: str, live: Sequence[Element], suspended: bool) -> tuple[Hold | Release, ...]:
    """While suspended, pending jobs are held; otherwise held jobs are released (a job held by
    hand is released too: the declared state is what counts)."""
    if suspended:
        to_hold = sorted({e.job_id for e in live if e.phase is TaskPhase.SUBMITTED and e.job_id})
        return (Hold(uid, name, tuple(to_hold)),) if to_hold else ()
    to_release = sorted({e.job_id for e in live if e.phase is TaskPhase.HELD and e.job_id})
    return (Release(uid, name, tuple(to_release)),) if to_release else ()


def submission_groups(elements: ElementClasses, *, task: Task, runs: TaskRuns) -> tuple[SubmissionGroup, ...]:
    """Never-submitted elements first (under the spec's first attempt), then the elements Slurm
    cancelled for a failed prerequisite, then the due retries grouped by the request they need;
    each of those later groups is a new attempt."""
    fresh_attempt = _fresh_attempt(runs)
    groups = [SubmissionGroup(members=elements.fresh, attempt=fresh_attempt)] if elements.fresh else []
    again = ([elements.resubmit] if elements.resubmit else []) + _by_escalation(elements.retry_due)
    attempt = runs.last_attempt
    for members in again:
        attempt = max(attempt, fresh_attempt) + 1
        groups.append(SubmissionGroup(members=members, attempt=attempt))
    return tuple(groups)


def _fresh_attempt(runs: TaskRuns) -> int:
    """Elements never submitted for this spec join the spec's first attempt (as more chunks of
    it), so capacity-limited submission does not inflate the attempt count."""
    attempts = [e.attempt for e in runs.elements.values() if e.attempt is not None and e.submissions]
    return min(attempts) if attempts else runs.last_attempt + 1


def _by_escalation(elements: Sequence[Element]) -> list[tuple[Element, ...]]:
    """Retried elements that need the same request go out together."""
    groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[Element]] = {}
    for element in elements:
        kinds = tuple(sorted(f.kind.value for f in element.failures if f.kind in _ESCALATING))
        groups.setdefault((kinds, failed_nodes(element.failures)), []).append(element)
    return [tuple(members) for _, members in sorted(groups.items())]


def cut_chunks(groups: Sequence[SubmissionGroup], *, task: Task, view: ClusterView) -> tuple[Chunk, ...]:
    """Each group's request, escalated by its first element's failures and bounded by the
    partition's time limit, and its elements cut into chunks."""
    chunks: list[Chunk] = []
    for group in groups:
        partition = task.resources.partition or view.default_partition
        resources = escalated_resources(task.resources, task.retry, group.members[0].failures,
                                        partition_max_time=view.partition_max_time.get(partition or ""))
        cores = resources.cores
        exclude = failed_nodes([f for e in group.members for f in e.failures])
        for members in _windows(group.members, is_array=task.array is not None, max_array_size=view.max_array_size):
            chunks.append(Chunk(members=members, attempt=group.attempt, resources=resources, cores=cores,
                                exclude_nodes=exclude))
    return tuple(chunks)


def _windows(elements: Sequence[Element], *, is_array: bool, max_array_size: int) -> list[tuple[Element, ...]]:
    """One chunk per Slurm job: a plain job alone, array elements in windows of task indices no
    wider than MaxArraySize (each chunk is submitted with its first index as offset)."""
    if not is_array:
        return [tuple(elements[:1])]
    result: list[list[Element]] = []
    for element in sorted(elements, key=lambda e: e.array_index):
        if result and element.array_index - result[-1][0].array_index < max_array_size:
            result[-1].append(element)
        else:
            result.append([element])
    return [tuple(window) for window in result]


def within_parallelism(chunks: Sequence[Chunk], *, task: Task, live: Sequence[Element]) -> tuple[Chunk, ...]:
    """A task's parallelism bounds the whole task, but Slurm's ``%N`` bounds one array job: with
    more than one chunk in Slurm's hands at once the caps would add up. So a throttled task has at
    most one live chunk, and the next goes out on the first tick that sees none of its elements
    live. Each chunk still runs N at a time; only its last few elements run below N."""
    if task.array is None or task.array.parallelism is None:
        return tuple(chunks)
    return () if live else tuple(chunks[:1])


def admit(chunks: Sequence[Chunk], *, budget: CapacityBudget) -> Admission:
    """Take chunks in order while they fit; the first that does not fit wholly goes out with the
    elements that do (if any), and it and everything after it wait for a later tick."""
    admitted: list[Chunk] = []
    for chunk in chunks:
        fit = budget.admit(len(chunk.members), chunk.cores)
        if fit == len(chunk.members):
            admitted.append(chunk)
            continue
        if fit:
            admitted.append(replace(chunk, members=chunk.members[:fit]))
        return Admission(chunks=tuple(admitted), queued=True)
    return Admission(chunks=tuple(admitted), queued=False)


def submit_for(chunk: Chunk, *, uid: str, name: str, task: Task, fingerprint: str, upstream: Upstream) -> Submit:
    indices = tuple(e.array_index for e in chunk.members) if task.array else None
    return Submit(
        uid=uid, key=JobKey(name, chunk.attempt, indices[0] if indices else 0),
        fingerprint=fingerprint, resources=chunk.resources, indices=indices,
        parallelism=task.array.parallelism if task.array else None,
        after_jobs=upstream.after_jobs, after_submits=upstream.after_submits,
        exclude_nodes=chunk.exclude_nodes, cores=chunk.cores,
    )


def derive_phase(elements: ElementClasses, *, submitted: bool, queued: bool, upstream_broken: bool) -> TaskPhase:
    """The task's phase, most urgent first: an unknown outcome, work in Slurm's hands, a final
    failure, a retry in backoff, work not started; otherwise every element succeeded."""
    if elements.unknown:
        return TaskPhase.UNKNOWN
    if elements.live or submitted:
        return _active_phase(elements.live, submitted=submitted)
    if elements.final:
        return TaskPhase.FAILED if any(e.phase is TaskPhase.FAILED for e in elements.final) else TaskPhase.CANCELLED
    if elements.retryable:
        return TaskPhase.RETRYING
    if elements.fresh or elements.resubmit:
        return TaskPhase.SKIPPED if upstream_broken else TaskPhase.QUEUED if queued else TaskPhase.WAITING
    return TaskPhase.SUCCEEDED


def _active_phase(live: Sequence[Element], *, submitted: bool) -> TaskPhase:
    """Running as soon as one element runs; Held only while every job is held and nothing new
    went out."""
    if any(e.phase is TaskPhase.RUNNING for e in live):
        return TaskPhase.RUNNING
    if live and not submitted and all(e.phase is TaskPhase.HELD for e in live):
        return TaskPhase.HELD
    return TaskPhase.SUBMITTED
