"""The status of a SlurmCluster: what one tick saw there, kstatus-style. Pure.

Called by the controller once per cluster per tick it looks at the cluster; Kubernetes mode
publishes the result to the SlurmCluster's status subresource. Guarantees:

* ``Ready`` is always there: True when the queue could be read this tick, False with the reason
  and the error otherwise; its ``lastTransitionTime`` moves only when it flips;
* the counts come from the tick's one observation (no Slurm call of their own), array elements
  counted one by one; the version, MaxArraySize and partitions from what the client already
  reads every few minutes to plan by;
* a cluster that cannot be reached keeps the facts last seen, without the job counts;
* the same observation gives the same status, so an unchanged cluster is not written again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

from ..api import PartitionSeen, SlurmClusterStatus, TaskPhase
from .conditions import READY, condition, merge_conditions
from .observed import ClusterView, ObservedJob


class NotReady(StrEnum):
    """Why a cluster is not Ready: the reasons its ``Ready=False`` condition gives."""

    CONNECTION_FAILED = "ConnectionFailed"  # its transport or credentials could not be set up
    UNREACHABLE = "Unreachable"  # connected, but squeue gave no answer
    ERROR = "Error"  # its part of the tick failed unexpectedly (the reconciler's log says more)


QUEUED_PHASES = frozenset({TaskPhase.SUBMITTED, TaskPhase.HELD})


def job_counts(jobs: Iterable[ObservedJob]) -> tuple[int, int]:
    """Our jobs queued (held ones too) and running, array elements counted."""
    queued = running = 0
    for job in jobs:
        elements = len(job.indices) if job.indices is not None else 1
        if job.phase in QUEUED_PHASES:
            queued += elements
        elif job.phase is TaskPhase.RUNNING:
            running += elements
    return queued, running


def observed_cluster_status(view: ClusterView, jobs: Iterable[ObservedJob], *, generation: int | None,
                            previous: SlurmClusterStatus | None, now: datetime) -> SlurmClusterStatus:
    """The status after a tick observed the cluster (``view``, and our jobs it saw)."""
    if not view.reachable:
        return unready_cluster_status(NotReady.UNREACHABLE, view.error or "squeue gave no answer",
                                      generation=generation, previous=previous, now=now)
    queued, running = job_counts(jobs)
    message = f"Slurm {view.slurm_version} answered" if view.slurm_version else "squeue answered"
    if not view.accounting:
        message += f"; finished jobs cannot be read: {view.error or 'sacct gave no answer'}"
    ready = condition(READY, True, "Reachable", message, now=now, generation=generation)
    previous_conditions = previous.conditions if previous is not None else []
    return SlurmClusterStatus(
        observed_generation=generation,
        conditions=merge_conditions(previous_conditions, [ready], now=now),
        slurm_version=view.slurm_version or (previous.slurm_version if previous is not None else None),
        max_array_size=view.max_array_size,
        partitions=[PartitionSeen(name=p.name, state=p.state) for p in view.partitions]
        or (list(previous.partitions) if previous is not None else []),
        queued_jobs=queued,
        running_jobs=running,
    )


def unready_cluster_status(reason: NotReady, message: str, *, generation: int | None,
                           previous: SlurmClusterStatus | None, now: datetime) -> SlurmClusterStatus:
    """The status of a cluster the tick could not observe: ``Ready=False`` with why, the facts
    seen before kept, the job counts unknown."""
    ready = condition(READY, False, reason.value, message, now=now, generation=generation)
    kept = previous if previous is not None else SlurmClusterStatus()
    return kept.model_copy(update={
        "observed_generation": generation,
        "conditions": merge_conditions(kept.conditions, [ready], now=now),
        "queued_jobs": None,
        "running_jobs": None,
    })
