"""What the reconcile core decides: actions for the controller and the status to write.

Frozen plain data, so tests can compare plans and the controller can log them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..api import Resources, WorkflowStatus
from .approval_values import ApprovedValues
from .choices import RecordedChoice
from .observed import JobKey


@dataclass(frozen=True)
class Submit:
    uid: str
    key: JobKey
    fingerprint: str
    resources: Resources  # escalated where a retry asks for more
    indices: tuple[int, ...] | None  # task indices for arrays (all within one chunk)
    parallelism: int | None
    after_jobs: tuple[str, ...] = ()  # live upstream jobs: --dependency=afterok
    after_submits: tuple[JobKey, ...] = ()  # upstream submissions earlier in this same plan
    exclude_nodes: tuple[str, ...] = ()
    cores: int = 1  # per element, for capacity accounting
    choice: RecordedChoice | None = None  # why these resources, for a task with auto ones
    approved: tuple[ApprovedValues, ...] = ()  # the values of the approvals before the task, rendered into it

    @property
    def elements(self) -> int:
        return len(self.indices) if self.indices is not None else 1


@dataclass(frozen=True)
class Cancel:
    uid: str
    task: str
    job_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Hold:
    uid: str
    task: str
    job_ids: tuple[str, ...]


@dataclass(frozen=True)
class Release:
    uid: str
    task: str
    job_ids: tuple[str, ...]


@dataclass(frozen=True)
class FetchOutputs:
    """Fetch a succeeded task's declared outputs (``reconciler.core.outputs`` says when)."""

    uid: str
    task: str
    patterns: tuple[str, ...]
    fingerprint: str  # the variant they belong to: each has a directory of its own
    attempt: int  # the attempt that produced them
    tries: int = 0  # earlier tries that failed


@dataclass(frozen=True)
class Cleanup:
    """Remove a finished workflow's files once its ``ttlSecondsAfterFinished`` has passed."""

    uid: str
    finished_at: datetime  # the end it is due for: a workflow that runs and ends again is due again
    ttl_seconds: int


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


Action = Submit | Cancel | Hold | Release | FetchOutputs | Cleanup


@dataclass(frozen=True)
class WorkflowPlan:
    uid: str
    status: WorkflowStatus
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None  # seconds until something is due (a retry's backoff)
    # The same plan as the last tick's, from the same inputs (``planner.LastPlans``): nothing to
    # do, and its status is the one already written.
    unchanged: bool = False
