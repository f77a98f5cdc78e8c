"""What the reconcile core knows about the world, as plain data.

The controller builds these from one batched Slurm observation per cluster and from the
store's attempt history; the core never sees a transport, a client or a database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..api import FailureKind, TaskPhase

# Phases of one job or array element that mean "Slurm still has it".
LIVE_PHASES = frozenset({TaskPhase.SUBMITTED, TaskPhase.HELD, TaskPhase.RUNNING})
DONE_PHASES = frozenset({TaskPhase.SUCCEEDED, TaskPhase.FAILED, TaskPhase.CANCELLED})


@dataclass(frozen=True)
class JobKey:
    """Identity of one submission: a task's attempt, and for big arrays the chunk's first index."""

    task: str
    attempt: int
    part: int = 0


@dataclass(frozen=True)
class ObservedJob:
    """One of the reconciler's Slurm jobs: a whole job, one array element, or array elements
    still pending together (``indices`` holds them all)."""

    key: JobKey
    job_id: str  # the id to depend on, hold, release or cancel (the array's id for arrays)
    fingerprint: str | None
    indices: tuple[int, ...] | None  # task indices (chunk offset applied); None when not an array
    phase: TaskPhase
    failure: FailureKind | None = None
    exit_code: int | None = None
    reason: str | None = None
    node_list: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    core_hours: float = 0.0


@dataclass(frozen=True)
class AttemptRecord:
    """What the store remembers of a submission, for jobs Slurm no longer reports and for
    submissions whose outcome is not known yet (an intent recorded before ``sbatch``)."""

    key: JobKey
    fingerprint: str | None
    indices: tuple[int, ...] | None
    job_id: str | None  # None: the intent was recorded but the submission not confirmed
    recorded_at: datetime
    phase: TaskPhase | None = None  # last phase seen, None when never observed
    failure: FailureKind | None = None
    exit_code: int | None = None
    reason: str | None = None
    node_list: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    core_hours: float = 0.0
    cancelled_by_reconciler: bool = False


@dataclass(frozen=True)
class ClusterView:
    """One cluster as observed this tick, shared by every workflow that runs on it."""

    name: str
    reachable: bool  # the queue could be read
    accounting: bool  # finished jobs could be read (sacct)
    error: str | None = None
    queued_jobs: int = 0  # every job of the user still in the queue, array elements counted
    queued_cores: int = 0
    max_array_size: int = 1001
    partition_max_time: dict[str, int | None] = field(default_factory=dict)  # seconds; None: unlimited
    default_partition: str | None = None
    submit_limit: int | None = None  # a QOS/association MaxSubmitJobs visible to the user
