"""The typed rows the store hands its readers (the CLI's tables, ``describe``, the publisher):
plain frozen values, never database rows or dicts read by string key."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..api import Resources, TaskPhase, WorkflowStatus
from ..core.observed import JobKey, JobOutcome


@dataclass(frozen=True)
class WorkflowRow:
    namespace: str
    name: str
    uid: str
    generation: int
    created_at: datetime
    spec: dict
    labels: dict[str, str]
    status: WorkflowStatus | None
    source_file: str | None = None
    # Each task's labels by name, in the order of the tasks, as the loop resolved them.
    task_labels: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class EventRow:
    at: datetime
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class AttemptHistory:
    """One submission as ``describe`` lists it: what was asked, where, and how it went."""

    key: JobKey
    fingerprint: str | None
    cluster: str
    job_id: str | None  # None: the submission was never confirmed (or sbatch refused it)
    resources: Resources  # the request as submitted
    recorded_at: datetime
    submitted_at: datetime | None
    # None while nothing was observed; an array's is the outcome that speaks for it (see
    # ``reconciler.store.array_outcomes.array_summary``).
    outcome: JobOutcome | None
    message: str | None  # why sbatch refused the submission
    cancelled_by_reconciler: bool
    indices: str | None  # an array's task indices as ranges ("0-9,12"); None for a plain job
    states: dict[TaskPhase, str] | None  # an array's element ranges per phase; None for a plain job
