"""``spec.ttlSecondsAfterFinished``: when a finished workflow's files are removed.

Pure. The planner calls ``plan_cleanup`` once per workflow and tick with the status it just
worked out; the executor carries the Cleanup out (the workflow's directory on the cluster, the
fetched outputs' copies on this machine) and the store records it
(``reconciler.store.outputs``). Guarantees:

* only a workflow that has ended (Succeeded or Failed, with a ``finishedAt``) is cleaned, once
  ``finishedAt + ttl`` has passed; never one that is running, and never while a succeeded task's
  outputs are still to be fetched (they are fetched from the directory that is removed);
* once per end: a recorded cleanup (in the store, or ``cleanedAt`` in the status the last tick
  wrote, which is what a Kubernetes operator that lost its local state still has) for this
  ``finishedAt`` is never done again. A workflow that runs again after a change and ends again
  is due again;
* until it is due, the plan asks to be run again when it is, so the loop need not poll.
Status and history are kept: only files go.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from ..api import WorkflowPhase, WorkflowStatus
from .outputs import unsettled
from .plan import Cleanup


class CleanupOutcome(StrEnum):
    CLEANED = "cleaned"
    REFUSED = "refused"  # the paths were not safe to remove (see the record's message); never tried again


@dataclass(frozen=True, kw_only=True)
class CleanupRecord:
    """A cleanup the store recorded for one end of a run."""

    finished_at: datetime
    at: datetime
    outcome: CleanupOutcome
    message: str = ""


@dataclass(frozen=True)
class CleanupDecision:
    action: Cleanup | None = None
    due: datetime | None = None  # when it will be, if not yet
    cleaned_at: datetime | None = None  # when it was done for this end


def plan_cleanup(uid: str, *, ttl_seconds: int | None, status: WorkflowStatus, previous: WorkflowStatus | None,
                 done: CleanupRecord | None, now: datetime) -> CleanupDecision:
    finished = status.finished_at
    if ttl_seconds is None or finished is None or status.phase not in (WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED):
        return CleanupDecision()
    if done is not None and done.finished_at == finished:
        return CleanupDecision(cleaned_at=done.at if done.outcome is CleanupOutcome.CLEANED else None)
    if previous is not None and previous.cleaned_at is not None and previous.finished_at == finished:
        return CleanupDecision(cleaned_at=previous.cleaned_at)
    if unsettled(status.tasks):
        return CleanupDecision()
    due = finished + timedelta(seconds=ttl_seconds)
    if due > now:
        return CleanupDecision(due=due)
    return CleanupDecision(action=Cleanup(uid, finished_at=finished, ttl_seconds=ttl_seconds))
