"""From one tick's squeue and sacct records to what the reconcile core consumes.

Called by the client after its batched observation of a cluster. Pure. It guarantees:

- only jobs whose comment carries the reconciler's tag become ``ObservedJob``s;
- squeue wins over sacct for every job and array element squeue still shows (sacct lags the
  controller by a few seconds on Slurm 22.05), sacct speaks for the jobs that left the queue;
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
    and the cores they hold or ask for. Read from squeue alone: sacct's live states lag."""
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
        default_partition=default,
        submit_limit=submit_limit,
        max_array_size=ClusterView.max_array_size if limits is None else limits.max_array_size,
        accounting_complete_until=observed_at - ACCOUNTING_MAX_LAG if accounting_ok else None,
    )


def _merged(records: Iterable[JobRecord]) -> list[tuple[JobRecord, JobTag]]:
    """Our records, with sacct's view of anything squeue still shows taken out."""
    ours = [(record, tag) for record in records if (tag := parse_tag(record.comment)) is not None]
    live_jobs = {r.job_id for r, _ in ours if r.source == "squeue" and r.array_indices is None}
    live_elements: dict[str, set[int]] = {}
    for record, _ in ours:
        if record.source == "squeue" and record.array_job_id is not None and record.array_indices is not None:
            live_elements.setdefault(record.array_job_id, set()).update(record.array_indices)

    result = [(r, t) for r, t in ours if r.source == "squeue"]
    seen_elements: dict[str, set[int]] = {}
    # Finished elements first: when sacct lists an element both on its own and still inside a
    # pending remainder (its rows are not updated atomically), the element's own row wins.
    accounting = sorted((item for item in ours if item[0].source != "squeue"),
                        key=lambda item: len(item[0].array_indices or ()))
    for record, tag in accounting:
        if record.array_indices is None or record.array_job_id is None:
            if record.job_id not in live_jobs:
                result.append((record, tag))
            continue
        taken = live_elements.get(record.array_job_id, set()) | seen_elements.get(record.array_job_id, set())
        remaining = tuple(i for i in record.array_indices if i not in taken)
        if not remaining:
            continue
        seen_elements.setdefault(record.array_job_id, set()).update(remaining)
        if len(remaining) != len(record.array_indices):
            record = replace(record, array_indices=remaining)
        result.append((record, tag))
    return result


def _observed(record: JobRecord, tag: JobTag, *, now: datetime) -> ObservedJob:
    phase, failure = job_phase(record.state, record.reason)
    indices = None
    if record.array_indices is not None:
        indices = tuple(index + tag.part for index in record.array_indices)
    elapsed = record.elapsed_seconds
    if phase is TaskPhase.RUNNING and elapsed == 0 and record.started_at is not None:
        elapsed = max(0, int((now - record.started_at).total_seconds()))
    # A pending array's remainder holds no cores yet; every other record is one allocation.
    core_hours = elapsed * record.cpus / 3600
    return ObservedJob(
        key=tag.key,
        job_id=record.array_job_id or record.job_id,
        fingerprint=tag.fingerprint,
        indices=indices,
        outcome=JobOutcome(
            phase=phase,
            failure=failure,
            # sacct prints "0:0" for jobs that have not ended: that is no exit code yet.
            exit_code=record.exit_code if phase in DONE_PHASES else None,
            reason=record.reason,
            node_list=record.node_list,
            started_at=record.started_at,
            finished_at=record.finished_at,
            core_hours=core_hours,
        ),
    )
