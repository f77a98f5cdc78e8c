"""``reconciler submit``: every job of one workflow submitted once, then followed to the end.

Called by the CLI and the demo. The whole DAG goes to Slurm at once, chained with Slurm's own
``afterok`` dependencies, so the chain runs with no gap; arrays are cut at the cluster's
``MaxArraySize``. An approval task that is not approved in the manifest stops the submission
there: what comes after it needs a person, which is the control loop's job (``reconciler run``).
So does an array sized at run time (``countFrom``, ``itemsFrom``): its size is known only after
its prerequisite ran.
Nothing here retries or reruns; that too is the loop's job. A task's inputs are staged into its
run directory just before it is submitted, as the loop stages them; a task whose inputs name
nothing is not submitted, and says which.

An array's ``parallelism`` N caps the whole task, while Slurm's ``%N`` caps one array job: so the
N is split between the task's chunks (``split_parallelism``), each chunk throttled to its share
and the shares summing to N. Every chunk starts at once and Slurm alone keeps the cap, exactly,
with no loop watching. The other way Slurm offers, one chunk after the other (each waiting on the
one before with ``afterany``), keeps the cap as well but leaves each chunk's tail running below
N until its last element ends; the split's price is smaller: a chunk that ends early does not hand
its share on, so only the task's last elements run below N. A task whose N is smaller than its
number of chunks cannot give each chunk a share of at least one: it is not submitted, and says
so, rather than run above its cap; ``reconciler run`` sends such a task one chunk at a time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..api import TaskPhase, TaskType
from ..core.approval_values import with_approved
from ..core.approvals import manifest_values
from ..core.fingerprint import fingerprints
from ..core.observed import DONE_PHASES, ObservedJob
from ..engine.endwatch import EndWatch
from ..engine.staging import FoundInputs, stage, staged_files
from ..manifests.resolve import ResolvedWorkflow
from ..slurm.client import SlurmClient, SlurmUnavailable, SubmitRequest
from ..slurm.script import run_dir_of, upstream_files
from ..slurm.tags import JobTag


@dataclass
class Submission:
    uid: str
    jobs: dict[str, list[str]] = field(default_factory=dict)  # task -> job ids (one per array chunk)
    elements: dict[str, int] = field(default_factory=dict)  # task -> array elements (1 for a plain job)
    blocked: dict[str, str] = field(default_factory=dict)  # task -> why it was not submitted
    submitted_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def new_uid() -> str:
    return uuid.uuid4().hex[:16]


def submit_workflow(resolved: ResolvedWorkflow, client: SlurmClient, *, uid: str | None = None,
                    inputs: Mapping[str, FoundInputs] | None = None) -> Submission:
    """Submit every job of ``resolved`` in DAG order, each after its prerequisites' jobs, with
    the ``inputs`` found for its tasks staged first."""
    meta = resolved.workflow.metadata
    submission = Submission(uid=uid or new_uid())
    fps = fingerprints(resolved.graph)
    limits = client.info().limits
    max_array = limits.max_array_size if limits else 1001
    # An approved approval task is a completed step: its dependants wait on what it waited on.
    stands_for: dict[str, tuple[str, ...]] = {}
    for name in resolved.order:
        task = resolved.tasks[name]
        upstream = sorted(resolved.graph.predecessors(name))
        blocked_by = [u for u in upstream if u in submission.blocked]
        if blocked_by:
            submission.blocked[name] = f"waits for {', '.join(blocked_by)}"
            continue
        dependencies = tuple(sorted({job for u in upstream for job in stands_for[u]}))
        if task.type is TaskType.APPROVAL:
            if not task.approved or task.rejected is not None:
                submission.blocked[name] = "needs a person's approval (reconciler run tracks approvals)"
                continue
            stands_for[name] = dependencies
            continue
        source = task.array.source if task.array else None
        if source is not None:
            # Its size is in a file its prerequisite has not written yet: only the loop reads it.
            submission.blocked[name] = (f"is sized at run time by {source.file} of task {source.task}; "
                                        "`reconciler run` reads it and submits the array")
            continue
        found = (inputs or {}).get(name)
        if found is not None and found.state.missing:
            submission.blocked[name] = "; ".join(found.state.missing)
            continue
        size = task.array.size if task.array else 1
        chunks = [tuple(range(start, min(start + max_array, size))) for start in range(0, size, max_array)]
        parallelism = task.array.parallelism if task.array else None
        shares: list[int] | list[None] | None = [None] * len(chunks)
        if parallelism is not None:
            shares = split_parallelism([len(c) for c in chunks], parallelism)
        if shares is None:
            submission.blocked[name] = (
                f"its parallelism {parallelism} is below its {len(chunks)} arrays of at most {max_array} elements "
                "(the cluster's MaxArraySize), so Slurm cannot hold the cap; `reconciler run` sends one at a time")
            continue
        # The values the manifest approves the approvals before it with, rendered as the loop does.
        task = with_approved(task, manifest_values(resolved.tasks, resolved.graph.ancestors(name)))
        workdir = client.cluster.spec.workdir
        files = tuple(staged_files(inputs, name))
        if files:
            stage(client.transport, cluster_workdir=workdir, files=files,
                  run_dir=run_dir_of(cluster_workdir=workdir, namespace=meta.namespace, workflow=meta.name, task=task))
        job_ids: list[str] = []
        for chunk, share in zip(chunks, shares, strict=True):
            # An array's chunk is tagged with its first index; a plain job is part 0.
            job_ids.append(client.submit(SubmitRequest(
                namespace=meta.namespace, workflow=meta.name, task=task,
                tag=JobTag(uid=submission.uid, task=name, attempt=1, part=chunk[0], fingerprint=fps[name]),
                resources=task.resources.declared(resolved.spec.defaults.resources),
                indices=chunk if task.array else None,
                parallelism=share, dependencies=dependencies,
                inputs_from=upstream_files(task, resolved.tasks, cluster_workdir=workdir, namespace=meta.namespace,
                                           workflow=meta.name),
            )))
        submission.jobs[name] = job_ids
        submission.elements[name] = size
        stands_for[name] = tuple(job_ids)
    return submission


def split_parallelism(sizes: Sequence[int], parallelism: int) -> list[int] | None:
    """Each chunk's ``%N`` (by the chunks' ``sizes``), at least one and summing to at most
    ``parallelism``; None when there are more chunks than ``parallelism``. Pure.

    Shares are as even as the chunks allow: a chunk never gets more than it has elements, and
    what a small chunk cannot use goes to the others.
    """
    if parallelism < len(sizes):
        return None
    shares = [0] * len(sizes)
    left = parallelism
    by_size = sorted(range(len(sizes)), key=lambda i: sizes[i])
    for done, i in enumerate(by_size):
        shares[i] = min(sizes[i], -(-left // (len(sizes) - done)))  # the ceiling of an even share
        left -= shares[i]
    return shares


@dataclass(frozen=True)
class TaskProgress:
    phase: TaskPhase
    detail: str


def follow(
    client: SlurmClient,
    submission: Submission,
    *,
    poll_seconds: float = 2.0,
    timeout: float | None = None,
    report: Callable[[str, TaskProgress], None] = lambda task, outcome: None,
    ends: EndWatch | None = None,
    pause: Callable[[float], object] = time.sleep,
) -> dict[str, TaskProgress]:
    """Observe (one batched query per poll) until Slurm reports every submitted job finished;
    the outcome of each task. ``report`` hears every change. ``ends``: the cluster's end-record
    watch, told of each observation; ``pause`` waits between polls, returning early when that
    watch rings."""
    deadline = None if timeout is None else time.monotonic() + timeout
    since = submission.submitted_at - timedelta(minutes=1)
    outcomes: dict[str, TaskProgress] = {}
    submitted = {job_id for ids in submission.jobs.values() for job_id in ids}
    while True:
        try:
            observation = client.observe(since=since, job_ids=sorted(submitted),
                                         ending=ends.ending_jobs if ends is not None else ())
            jobs = [j for j in observation.jobs() if j.job_id in submitted]
            complete = observation.queue_ok and observation.accounting_ok
            if ends is not None and observation.accounting_ok:
                ends.settle(observation.records)
        except SlurmUnavailable:
            jobs, complete = [], False
        if complete:
            for task in submission.jobs:
                outcome = summarize([j for j in jobs if j.key.task == task], elements=submission.elements[task])
                if outcomes.get(task) != outcome:
                    outcomes[task] = outcome
                    report(task, outcome)
            if all(o.phase in DONE_PHASES for o in outcomes.values()):
                return outcomes
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"jobs still running after {timeout:.0f}s: "
                               + ", ".join(t for t, o in outcomes.items() if o.phase not in DONE_PHASES))
        pause(poll_seconds)


def summarize(jobs: list[ObservedJob], *, elements: int) -> TaskProgress:
    """One task's phase from its jobs (array elements counted one by one). Pure."""
    counts: dict[TaskPhase, int] = {}
    for job in jobs:
        counts[job.phase] = counts.get(job.phase, 0) + (len(job.indices) if job.indices is not None else 1)
    detail = ", ".join(f"{n} {p.value}" for p, n in sorted(counts.items(), key=lambda item: item[0].value))
    if not jobs:
        return TaskProgress(TaskPhase.UNKNOWN, "not reported by Slurm yet")
    if any(p not in DONE_PHASES for p in counts):
        return TaskProgress(TaskPhase.RUNNING if TaskPhase.RUNNING in counts else TaskPhase.SUBMITTED, detail)
    if sum(counts.values()) < elements:
        # sacct reports finished elements with a lag: some are in neither answer yet.
        return TaskProgress(TaskPhase.UNKNOWN, f"{detail}; {elements - sum(counts.values())} not reported yet")
    if set(counts) == {TaskPhase.SUCCEEDED}:
        return TaskProgress(TaskPhase.SUCCEEDED, detail)
    first = next(j.outcome for j in jobs if j.phase is not TaskPhase.SUCCEEDED)
    what = first.failure.value if first.failure else first.reason or first.phase.value
    exit_part = f", exit code {first.exit_code}" if first.exit_code else ""
    phase = TaskPhase.FAILED if TaskPhase.FAILED in counts else TaskPhase.CANCELLED
    return TaskProgress(phase, f"{what}{exit_part}; {detail}")
