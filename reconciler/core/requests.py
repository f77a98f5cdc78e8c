"""What people asked of a workflow's tasks by hand: cancel them, or run a failed one again.

Pure. The store keeps the requests (``reconciler.store.requests``); ``reconciler cancel`` and
``reconciler retry``, or the Workflow's annotations in Kubernetes mode, write them; the planner
reads them each tick through ``DesiredWorkflow.requests``. Both are level-triggered:

* a cancel holds for the task's fingerprint it was made for: while that is the task's
  fingerprint, its live jobs are cancelled, nothing is submitted and it reads Cancelled (so the
  tasks after it are Skipped, as after a failure); a changed spec lifts it, and so does a retry;
* a retry names the task's highest attempt number when it was asked: it is pending until an
  attempt above that exists, so it starts exactly one new attempt however many ticks see it.

``refusal_to_cancel`` and ``refusal_to_retry`` say why a request makes no sense for a task as
its status shows it (the CLI prints it, the operator posts it as an event).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ..api import Task, TaskPhase, WorkflowStatus
from .jobtask import TaskPlan
from .observed import LIVE_PHASES
from .plan import Action, Cancel
from .status import TaskDecision
from .taskruns import TaskRuns

CANCELLED_BY_USER = "CancelledByUser"
# A task in one of these has nothing left to cancel.
FINISHED_PHASES = frozenset({TaskPhase.SUCCEEDED, TaskPhase.FAILED, TaskPhase.CANCELLED})
RETRYABLE_PHASES = frozenset({TaskPhase.FAILED, TaskPhase.CANCELLED})


class RequestKind(StrEnum):
    CANCEL = "cancel"
    RETRY = "retry"


@dataclass(frozen=True, kw_only=True)
class CancelRequest:
    task: str
    fingerprint: str  # the task's fingerprint it stops; another spec of the task runs again
    requested_by: str
    requested_at: datetime


@dataclass(frozen=True, kw_only=True)
class RetryRequest:
    task: str
    after_attempt: int  # the task's highest attempt when asked: satisfied once a higher one exists
    requested_by: str
    requested_at: datetime


@dataclass(frozen=True)
class TaskRequests:
    """One workflow's standing requests (at most one of each kind per task)."""

    cancels: tuple[CancelRequest, ...] = ()
    retries: tuple[RetryRequest, ...] = ()

    def cancelled(self, task: str, *, fingerprint: str) -> CancelRequest | None:
        """The cancel that holds for ``task`` at ``fingerprint``, if any."""
        return next((r for r in self.cancels if r.task == task and r.fingerprint == fingerprint), None)

    def retry_pending(self, task: str, *, last_attempt: int) -> bool:
        """A retry of ``task`` asked after its attempt ``last_attempt`` or later: not yet started."""
        return any(r.task == task and last_attempt <= r.after_attempt for r in self.retries)


def refusal_to_cancel(status: WorkflowStatus | None, task: str) -> str | None:
    """Why ``task`` cannot be cancelled, or None when it can."""
    found = status.tasks.get(task) if status else None
    if found is None:
        return f"task {task!r} has no status yet (it is not known, or the loop has not run it)"
    if found.phase in FINISHED_PHASES:
        return f"task {task} has already finished ({found.phase.value}): there is nothing to cancel"
    if not found.fingerprint:
        return f"task {task} has no fingerprint in its status yet; try again after the next tick"
    return None


def refusal_to_retry(status: WorkflowStatus | None, task: str) -> str | None:
    """Why ``task`` cannot be run again, or None when it can."""
    found = status.tasks.get(task) if status else None
    if found is None:
        return f"task {task!r} has no status yet (it is not known, or the loop has not run it)"
    if found.phase not in RETRYABLE_PHASES:
        return (f"task {task} is {found.phase.value}: only a Failed or Cancelled task can be retried")
    return None


def cancellable_tasks(status: WorkflowStatus | None) -> dict[str, str]:
    """Every task of the workflow that has not finished, with its current fingerprint: what
    cancelling the whole workflow stops."""
    if status is None:
        return {}
    return {name: task.fingerprint for name, task in status.tasks.items()
            if task.phase not in FINISHED_PHASES and task.fingerprint}


def retryable_tasks(status: WorkflowStatus | None) -> list[str]:
    """Every task a retry would run again: the Failed and Cancelled ones."""
    return [name for name, task in (status.tasks.items() if status else ()) if task.phase in RETRYABLE_PHASES]


def parse_entries(value: str | None) -> tuple[tuple[str, str], ...]:
    """The entries of a cancel or retry annotation, ``TASK[@N]`` separated by commas, as
    (entry, task) pairs: the entry as written identifies the request (each distinct one acts
    once), the task is the part before ``@``."""
    entries: list[tuple[str, str]] = []
    for raw in (value or "").split(","):
        entry = raw.strip()
        task = entry.partition("@")[0].strip()
        if task:
            entries.append((entry, task))
    return tuple(entries)


def tasks_named(entries: Iterable[tuple[str, str]], *, known: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Each entry's tasks: ``*`` stands for every task in ``known``."""
    every = tuple(known)
    return {entry: every if task == "*" else (task,) for entry, task in entries}


def cancel_in_force(requests: TaskRequests, task: str, *, fingerprint: str, runs: TaskRuns) -> bool:
    """A cancel holds for the task as declared now, and the task has not succeeded after all
    (a request that raced with the job's end does not undo its success)."""
    if requests.cancelled(task, fingerprint=fingerprint) is None:
        return False
    return not all(element.phase is TaskPhase.SUCCEEDED for element in runs.elements.values())


def plan_cancelled_task(uid: str, name: str, *, task: Task, runs: TaskRuns, fingerprint: str) -> TaskPlan:
    """A task a person cancelled: its live jobs are cancelled, nothing goes out, and it reads
    Cancelled with the reason ``CancelledByUser``."""
    live = tuple(sorted({e.job_id for e in runs.elements.values() if e.phase in LIVE_PHASES and e.job_id}))
    actions: tuple[Action, ...] = (Cancel(uid, name, live, CANCELLED_BY_USER),) if live else ()
    decision = TaskDecision(phase=TaskPhase.CANCELLED, runs=runs, fingerprint=fingerprint, task=task,
                            cancelled_by_user=True)
    return TaskPlan(decision=decision, actions=actions)
