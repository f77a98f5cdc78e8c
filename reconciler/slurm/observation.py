"""From one tick's squeue and sacct records to what the reconcile core consumes.

Called by the client after its batched observation of a cluster. Pure. It guarantees:

- only jobs whose comment carries the reconciler's tag become ``ObservedJob``s;
- one record speaks for each job and array element: squeue's while it shows the job live (sacct
  lags the controller by a few seconds on Slurm 22.05); once the job ended, sacct's as soon as it
  reports the end (it has the exit code and the end time), squeue's COMPLETED or CANCELLED until
  then (squeue is asked for every state, so a job that ended a moment ago is in at least one
  answer); sacct alone for the jobs slurmctld no longer holds, and for failures: a failure squeue
  shows is left out until sacct has it (see ``_merged``);
- the queue load counts live jobs only, never the finished ones squeue still holds;
- an array shows up as its pending remainder (one job, many indices) plus one job per element
  that started or finished; indices are task indices (Slurm's array task id plus the tag's part);
- an array's ``job_id`` is always the array's own id, never an element's: that is the id the core
  holds, releases, cancels and depends on, and it acts on the whole chunk at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from ..api import TaskPhase
from ..core.observed import DONE_PHASES, LIVE_PHASES, ClusterView, JobOutcome, ObservedJob
from .commands import ClusterLimits, JobRecord, PartitionInfo
from .states import job_phase
from .tags import JobTag, parse_tag

# How long slurmctld may take to hand a job to slurmdbd, so that sacct shows it. Seen on Slurm
# 22.05: a job of 0.3 s was gone from squeue's default listing and absent from sacct for about a
# second after it ended. A minute bounds that lag with a wide margin, and bounds how long a
# submission whose sbatch failed before reaching slurmctld waits as Unknown before it is retried.
ACCOUNTING_MAX_LAG = timedelta(seconds=60)


def observed_jobs(records: Iterable[JobRecord], *, now: datetime) -> list[ObservedJob]:
    """Every tagged job of every workflow (see ``observed_by_workflow`` to keep them apart)."""
    return [job for jobs in observed_by_workflow(records, now=now).values() for job in jobs]


def observed_by_workflow(records: Iterable[JobRecord], *, now: datetime) -> dict[str, list[ObservedJob]]:
    """Tagged jobs grouped by the workflow uid in their tag."""
    result: dict[str, list[ObservedJob]] = {}
    for record, tag in _merged(records):
        result.setdefault(tag.uid, []).append(_observed(record, tag, now=now))
    return result


def queue_load(records: Iterable[JobRecord]) -> tuple[int, int]:
    """Jobs of the user still queued or running, ours or not, array elements counted one by one,
    and the cores they hold or ask for. Read from squeue alone (sacct's live states lag), and only
    its live states: the jobs it still holds for MinJobAge after they ended take no room."""
    jobs = cores = 0
    for record in records:
        if record.source != "squeue":
            continue
        phase, _ = job_phase(record.state, record.reason)
        if phase not in LIVE_PHASES:
            continue
        elements = len(record.array_indices) if record.array_indices is not None else 1
        jobs += elements
        cores += elements * record.cpus
    return jobs, cores


def reported_ids(records: Iterable[JobRecord]) -> set[str]:
    """Ids of the jobs (and arrays) whose state this observation has in full: sacct's records,
    and squeue's of jobs still live. A job squeue shows ended lacks its exit code."""
    reported = [r for r in records if r.source != "squeue" or not _ended(r)]
    return {r.job_id for r in reported} | {r.array_job_id for r in reported if r.array_job_id}


def cluster_view(
    *,
    name: str,
    records_ok: bool,
    accounting_ok: bool,
    error: str | None,
    records: Iterable[JobRecord],
    limits: ClusterLimits | None,
    partitions: list[PartitionInfo],
    submit_limit: int | None,
    observed_at: datetime,
) -> ClusterView:
    """The cluster as the core sees it this tick: reachability, load, and the limits it plans by."""
    jobs, cores = queue_load(records)
    default = next((p.name for p in partitions if p.default), None)
    return ClusterView(
        name=name,
        reachable=records_ok,
        accounting=accounting_ok,
        error=error,
        queued_jobs=jobs,
        queued_cores=cores,
        partition_max_time={p.name: p.max_time_seconds for p in partitions},
        partitions=tuple(partitions),
        default_partition=default,
        submit_limit=submit_limit,
        max_array_size=ClusterView.max_array_size if limits is None else limits.max_array_size,
        slurm_version=None if limits is None else limits.slurm_version,
        accounting_complete_until=observed_at - ACCOUNTING_MAX_LAG if accounting_ok else None,
    )


def _merged(records: Iterable[JobRecord]) -> list[tuple[JobRecord, JobTag]]:
    """Our records, each job and array element once (see the module's docstring for which wins)."""
    ours = [(record, tag) for record in records if (tag := parse_tag(record.comment)) is not None]
    ended_jobs, ended_elements = _accounted_ends(ours)
    queue: list[tuple[JobRecord, JobTag]] = []
    for record, tag in ours:
        if record.source != "squeue":
            continue
        if _ended(record):
            kept = _unaccounted(record, ended_jobs, ended_elements)
            if kept is None or _failed(kept):
                # squeue prints no exit code, and a failure's is part of what the task's status
                # and retries report: left out, the job is what it was before squeue showed ended
                # jobs, the history's last word or Unknown, for the second until sacct has it.
                continue
            record = kept
        queue.append((record, tag))
    queued_jobs = {r.job_id for r, _ in queue if r.array_indices is None}
    queued_elements: dict[str, set[int]] = {}
    for record, _ in queue:
        if record.array_job_id is not None and record.array_indices is not None:
            queued_elements.setdefault(record.array_job_id, set()).update(record.array_indices)

    result = list(queue)
    seen_elements: dict[str, set[int]] = {}
    # Finished elements first: when sacct lists an element both on its own and still inside a
    # pending remainder (its rows are not updated atomically), the element's own row wins.
    accounting = sorted((item for item in ours if item[0].source != "squeue"),
                        key=lambda item: len(item[0].array_indices or ()))
    for record, tag in accounting:
        if record.array_indices is None or record.array_job_id is None:
            if record.job_id not in queued_jobs:
                result.append((record, tag))
            continue
        taken = queued_elements.get(record.array_job_id, set()) | seen_elements.get(record.array_job_id, set())
        remaining = tuple(i for i in record.array_indices if i not in taken)
        if not remaining:
            continue
        seen_elements.setdefault(record.array_job_id, set()).update(remaining)
        if len(remaining) != len(record.array_indices):
            record = replace(record, array_indices=remaining)
        result.append((record, tag))
    return result


def _ended(record: JobRecord) -> bool:
    return job_phase(record.state, record.reason)[0] in DONE_PHASES


def _failed(record: JobRecord) -> bool:
    return job_phase(record.state, record.reason)[0] is TaskPhase.FAILED


def _accounted_ends(ours: Iterable[tuple[JobRecord, JobTag]]) -> tuple[set[str], dict[str, set[int]]]:
    """The jobs, and the array elements by array id, whose end sacct reports."""
    jobs: set[str] = set()
    elements: dict[str, set[int]] = {}
    for record, _ in ours:
        if record.source == "squeue" or not _ended(record):
            continue
        if record.array_job_id is None or record.array_indices is None:
            jobs.add(record.job_id)
        else:
            elements.setdefault(record.array_job_id, set()).update(record.array_indices)
    return jobs, elements


def _unaccounted(record: JobRecord, jobs: set[str], elements: dict[str, set[int]]) -> JobRecord | None:
    """A finished squeue record narrowed to what sacct does not report ended yet; None when nothing."""
    if record.array_job_id is None or record.array_indices is None:
        return None if record.job_id in jobs else record
    ended = elements.get(record.array_job_id, set())
    remaining = tuple(i for i in record.array_indices if i not in ended)
    if not remaining:
        return None
    return record if len(remaining) == len(record.array_indices) else replace(record, array_indices=remaining)


def _observed(record: JobRecord, tag: JobTag, *, now: datetime) -> ObservedJob:
    phase, failure = job_phase(record.state, record.reason)
    # sacct prints "0:0" for jobs that have not ended: that is no exit code yet.
    exit_code = record.exit_code if phase in DONE_PHASES else None
    finished_at = record.finished_at
    if record.source == "squeue" and phase in DONE_PHASES and record.started_at is not None:
        # squeue has no end time: a job's end is its start plus the time it ran.
        finished_at = record.started_at + timedelta(seconds=record.elapsed_seconds)
    if record.source == "squeue" and phase is TaskPhase.SUCCEEDED:
        exit_code = 0  # Slurm calls a job COMPLETED only when it exited 0
    indices = None
    if record.array_indices is not None:
        indices = tuple(index + tag.part for index in record.array_indices)
    elapsed = record.elapsed_seconds
    if phase is TaskPhase.RUNNING and record.started_at is not None:
        # A running job's time so far, counted to the last whole minute: every report of it
        # within a minute is then the same, and so are the plan and the status made from it,
        # which the loop hands back instead of making again each tick. Its end brings
        # accounting's exact figure.
        elapsed = max(0, int((_whole_minute(now) - record.started_at).total_seconds()))
    # A pending array's remainder holds no cores yet; every other record is one allocation. Once
    # accounting has the job, it bills the billing TRES per second (TRESBillingWeights; without
    # them it equals the CPU count); a live job's squeue record has only its CPUs.
    rate = record.billing if record.billing is not None and record.source == "sacct" else record.cpus
    core_seconds = elapsed * rate
    return ObservedJob(
        key=tag.key,
        job_id=record.array_job_id or record.job_id,
        fingerprint=tag.fingerprint,
        indices=indices,
        outcome=JobOutcome(
            phase=phase,
            failure=failure,
            exit_code=exit_code,
            reason=record.reason,
            node_list=record.node_list,
            started_at=record.started_at,
            finished_at=finished_at,
            core_seconds=core_seconds,
            accounted=record.source == "sacct" and phase in DONE_PHASES,
        ),
    )


def _whole_minute(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0)
