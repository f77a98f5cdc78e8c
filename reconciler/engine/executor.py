"""Carrying out the plans of one cluster: submissions, holds, releases, cancellations, output
fetches, recorded in the store as they happen.

Called by the controller once per cluster and tick, after the pure core has planned. What it
guarantees, which is what makes a ``kill -9`` at any moment harmless:

* the intent of a submission is in the store *before* ``sbatch`` runs, and its job id right
  after; a restarted loop finds the job by its identity tag whether or not the id was recorded,
  so a task is never submitted twice;
* when Slurm cannot be reached, or refuses for capacity, nothing more is attempted on that
  cluster this tick (the next tick looks again); a terminal refusal fails only that task;
* a submission that depends on another one planned this tick goes out only after that one did.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..api import TaskPhase, TaskStatus, WorkflowStatus
from ..core.observed import JobKey
from ..core.plan import Cancel, Event, FetchOutputs, Hold, Release, Submit, WorkflowPlan
from ..manifests.resolve import ResolvedWorkflow
from ..slurm.client import SlurmClient, SlurmError, SlurmUnavailable, SubmitRefused, SubmitRequest
from ..slurm.script import task_paths
from ..slurm.tags import JobTag
from ..store.database import Store

log = logging.getLogger(__name__)


@dataclass
class ClusterOutcome:
    """What happened while acting on one cluster."""

    unavailable: str | None = None  # Slurm stopped answering: the rest waits for the next tick
    at_capacity: dict[tuple[str, str], str] = field(default_factory=dict)  # (uid, task) -> sbatch's words
    events: dict[str, list[Event]] = field(default_factory=dict)

    def event(self, uid: str, type_: str, reason: str, message: str) -> None:
        self.events.setdefault(uid, []).append(Event(type_, reason, message))


def carry_out(
    plans: list[WorkflowPlan],
    *,
    workflows: dict[str, ResolvedWorkflow],
    client: SlurmClient,
    store: Store,
    outputs_dir: Path,
    stop: threading.Event,
    now: datetime,
) -> ClusterOutcome:
    outcome = ClusterOutcome()
    submitted: dict[tuple[str, JobKey], str] = {}
    for plan in plans:
        resolved = workflows[plan.uid]
        for action in plan.actions:
            if stop.is_set() or outcome.unavailable is not None:
                return outcome
            try:
                if isinstance(action, Submit):
                    if outcome.at_capacity:
                        # The cluster said it is full: later submissions would be refused too.
                        outcome.at_capacity.setdefault((plan.uid, action.key.task), "the cluster is at capacity")
                        continue
                    _submit(action, resolved=resolved, client=client, store=store, submitted=submitted,
                            outcome=outcome, now=now)
                elif isinstance(action, Cancel):
                    client.cancel(action.job_ids)
                    store.mark_cancelled(action.uid, job_ids=action.job_ids)
                    outcome.event(plan.uid, "Normal", "Cancelled",
                                  f"cancelled job(s) {', '.join(action.job_ids)} of task {action.task}: {action.reason}")
                elif isinstance(action, Hold):
                    client.hold(action.job_ids)
                    outcome.event(plan.uid, "Normal", "Held", f"held job(s) {', '.join(action.job_ids)} of {action.task}")
                elif isinstance(action, Release):
                    client.release(action.job_ids)
                    outcome.event(plan.uid, "Normal", "Released",
                                  f"released job(s) {', '.join(action.job_ids)} of {action.task}")
                elif isinstance(action, FetchOutputs):
                    _fetch(action, resolved=resolved, client=client, outputs_dir=outputs_dir, outcome=outcome)
            except SlurmUnavailable as exc:
                log.warning("cluster %s unavailable: %s", client.name, exc)
                outcome.unavailable = str(exc)
            except SlurmError as exc:
                log.warning("%s: %s", type(action).__name__, exc)
                task = action.key.task if isinstance(action, Submit) else action.task
                outcome.event(plan.uid, "Warning", "ActionFailed", f"{type(action).__name__} of {task}: {exc}")
    return outcome


def _submit(action: Submit, *, resolved: ResolvedWorkflow, client: SlurmClient, store: Store,
            submitted: dict[tuple[str, JobKey], str], outcome: ClusterOutcome, now: datetime) -> None:
    upstream = [submitted.get((action.uid, key)) for key in action.after_submits]
    if any(job_id is None for job_id in upstream):
        return  # its prerequisite did not go out this tick; the next tick plans it again
    meta = resolved.workflow.metadata
    task = resolved.tasks[action.key.task]
    tag = JobTag(uid=action.uid, task=action.key.task, attempt=action.key.attempt, part=action.key.part,
                 fingerprint=action.fingerprint)
    request = SubmitRequest(
        namespace=meta.namespace, workflow=meta.name, task=task, tag=tag, resources=action.resources,
        indices=action.indices, parallelism=action.parallelism,
        dependencies=tuple(sorted({*action.after_jobs, *(j for j in upstream if j)})),
        exclude_nodes=action.exclude_nodes,
    )
    store.record_intent(action.uid, key=action.key, fingerprint=action.fingerprint, indices=action.indices,
                        resources=action.resources.model_dump(mode="json", exclude_none=True),
                        cluster=client.name, now=now)
    try:
        job_id = client.submit(request)
    except SubmitRefused as exc:
        if exc.at_capacity:
            store.forget_intent(action.uid, key=action.key)
            outcome.at_capacity[(action.uid, action.key.task)] = str(exc)
            outcome.event(action.uid, "Normal", "ClusterAtCapacity", f"task {action.key.task} waits: {exc}")
        else:
            store.record_rejection(action.uid, key=action.key, reason="SubmitRejected", message=str(exc), now=now)
            outcome.event(action.uid, "Warning", "SubmitRejected", str(exc))
        return
    # SlurmUnavailable propagates with the intent left unconfirmed: sbatch may or may not have
    # created the job, and the next observation (by identity tag) tells which.
    store.confirm_submission(action.uid, key=action.key, job_id=job_id, now=now)
    submitted[(action.uid, action.key)] = job_id
    asked = action.resources
    what = ", ".join(filter(None, [f"attempt {action.key.attempt}",
                                   f"{action.elements} elements" if action.indices else "",
                                   f"time {asked.time}" if asked.time else "",
                                   f"memory {asked.memory}" if asked.memory else "",
                                   f"excluding {','.join(action.exclude_nodes)}" if action.exclude_nodes else ""]))
    outcome.event(action.uid, "Normal", "Submitted", f"task {action.key.task} ({what}) submitted as job {job_id}")


def _fetch(action: FetchOutputs, *, resolved: ResolvedWorkflow, client: SlurmClient, outputs_dir: Path,
           outcome: ClusterOutcome) -> None:
    meta = resolved.workflow.metadata
    task = resolved.tasks[action.task]
    paths = task_paths(cluster_workdir=client.cluster.spec.workdir, namespace=meta.namespace, workflow=meta.name,
                       task=task, tag=JobTag(uid=action.uid, task=task.name, attempt=1, part=0, fingerprint="0"))
    destination = outputs_dir / meta.namespace / meta.name / task.name
    fetched = client.fetch_outputs(run_dir=paths.run_dir, patterns=action.patterns, destination=destination)
    outcome.event(action.uid, "Normal" if fetched else "Warning", "OutputsFetched" if fetched else "OutputsMissing",
                  f"task {task.name}: fetched {len(fetched)} file(s) into {destination}" if fetched
                  else f"task {task.name}: no file matched {', '.join(action.patterns)}")


def adjust_status(status: WorkflowStatus, *, uid: str, outcome: ClusterOutcome) -> WorkflowStatus:
    """The planned status, corrected for what Slurm refused this tick: a task the cluster had no
    room for waits in the reconciler's queue instead of reading as submitted."""
    refused = {task: message for (owner, task), message in outcome.at_capacity.items() if owner == uid}
    if not refused:
        return status
    tasks = dict(status.tasks)
    for task, message in refused.items():
        current = tasks.get(task)
        if current is not None and current.phase is TaskPhase.SUBMITTED:
            tasks[task] = TaskStatus(**{**current.model_dump(), "phase": TaskPhase.QUEUED,
                                        "reason": "ClusterAtCapacity", "message": message})
    return status.model_copy(update={"tasks": tasks})
