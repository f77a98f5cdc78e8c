"""What the reconcile core knows about the world, as plain data.

The observed jobs are built by ``reconciler.slurm.observation`` from one batched squeue and sacct
per cluster and tick; the attempt records by the store (``reconciler.store``) from the history of
every submission. The core never sees a transport, a client or a database.

How a job ended or stands is one value, ``JobOutcome``, held by whatever has one: an observed job,
an attempt record (``None`` while nothing is known of it), a group of array elements in the store,
and a sighting in the task-runs merge. It is composed into them rather than inherited because an
outcome is a value that moves on its own: the merge takes it from either source unchanged, the
store keeps one per group of elements that share no identity, and an attempt record may have none
yet, which a subclass could only say by making every outcome's phase optional.
"""

from __future__ import annotations

from collections.abc import Mapping
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


@dataclass(frozen=True, kw_only=True)
class JobOutcome:
    """How one job, or a group of array elements, ended or stands as Slurm last told it."""

    phase: TaskPhase  # a live or final phase; UNKNOWN where Slurm does not say
    failure: FailureKind | None = None  # what kind of failure a FAILED end was, for the retry policy
    exit_code: int | None = None  # None until the job ended
    reason: str | None = None  # Slurm's pending reason; a finished job keeps the last one it gave
    node_list: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Core-seconds as accounting bills them once the job ended (elapsed x the billing TRES), else
    # elapsed x allocated CPUs; of a group of elements, the sum over them. Whole seconds, so that
    # sums over many elements stay exact.
    core_seconds: int = 0
    # The end as Slurm's accounting recorded it (sacct), with its billed core-seconds; False for
    # an end squeue showed before accounting had it, whose core-seconds are elapsed x CPUs.
    accounted: bool = False

    @property
    def done(self) -> bool:
        return self.phase in DONE_PHASES

    @property
    def core_hours(self) -> float:
        return self.core_seconds / 3600


@dataclass(frozen=True, kw_only=True)
class ObservedJob:
    """One of the reconciler's Slurm jobs: a whole job, one array element, or array elements
    still pending together (``indices`` holds them all)."""

    key: JobKey
    job_id: str  # the id to depend on, hold, release or cancel (the array's id for arrays)
    fingerprint: str | None
    indices: tuple[int, ...] | None  # task indices (chunk offset applied); None when not an array
    outcome: JobOutcome

    @property
    def phase(self) -> TaskPhase:
        """The outcome's phase: all the planner needs of a job to know whether Slurm still has it."""
        return self.outcome.phase


@dataclass(frozen=True, kw_only=True)
class AttemptRecord:
    """What the store remembers of a submission, for jobs Slurm no longer reports and for
    submissions whose outcome is not known yet (an intent recorded before ``sbatch``)."""

    key: JobKey
    fingerprint: str | None
    indices: tuple[int, ...] | None
    job_id: str | None  # None: the intent was recorded but the submission not confirmed
    recorded_at: datetime
    outcome: JobOutcome | None = None  # the last one seen; None when never observed
    cancelled_by_reconciler: bool = False

    @property
    def phase(self) -> TaskPhase | None:
        """The last phase seen, None when never observed."""
        return None if self.outcome is None else self.outcome.phase


@dataclass(frozen=True, kw_only=True)
class PartitionLimits:
    """What a partition allows one job, as ``scontrol show partition`` reports it."""

    name: str
    max_time_seconds: int | None  # None: unlimited
    default: bool
    state: str  # UP, DOWN, DRAIN or INACTIVE: only an UP partition starts jobs
    total_cpus: int
    total_nodes: int = 0
    max_nodes: int | None = None  # per job; None: unlimited
    max_cpus_per_node: int | None = None  # None: unlimited
    default_time_seconds: int | None = None  # None: a job without --time gets the MaxTime
    # TRESBillingWeights: the billing of one unit of each TRES ("CPU", "Mem", "GRES/gpu"...),
    # memory per GB; empty when the partition bills allocated CPUs.
    billing_weights: Mapping[str, float] = field(default_factory=dict, hash=False)

    def admits(self, query: JobSize) -> bool:
        """Whether a job of this size could ever start here. Slurm's default
        (EnforcePartLimits=NO) accepts a job over a partition's limits, which then pends forever."""
        return (self.state == "UP"
                and (self.max_time_seconds is None or query.time_seconds <= self.max_time_seconds)
                and (self.max_nodes is None or query.nodes <= self.max_nodes)
                and (self.total_nodes == 0 or query.nodes <= self.total_nodes)
                and (self.max_cpus_per_node is None or query.cpus <= self.max_cpus_per_node))


@dataclass(frozen=True)
class JobSize:
    """A job of a definite size on a definite partition, as a cluster is asked when it would
    start it (``sbatch --test-only``): ``cpus`` per task, one task per node, as a task's resources
    are submitted. The Orchestrator's ``StartQuery`` (a candidate, which may leave the partition
    or the time to Slurm) becomes one at the edge."""

    partition: str
    nodes: int
    cpus: int
    time_seconds: int
    memory_mib: int | None = None  # None: the partition's default memory


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
    # Accounting is known to hold every job submitted before this instant; None: no such bound.
    # An intent recorded before it that no query shows never reached Slurm; one recorded after
    # it may be a job that ended before slurmdbd heard of it, so it is not submitted again.
    accounting_complete_until: datetime | None = None
    partitions: tuple[PartitionLimits, ...] = ()  # read every few minutes, not every tick
    slurm_version: str | None = None  # read with the partitions
