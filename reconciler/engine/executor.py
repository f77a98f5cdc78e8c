"""Carrying out the plans of one cluster: submissions, holds, releases, cancellations, output
fetches and cleanups, recorded in the store as they happen.

Called by the controller once per cluster and tick, after the pure core has planned. What it
guarantees, which is what makes a ``kill -9`` at any moment harmless:

* the intent of a submission is in the store *before* ``sbatch`` runs, and its job id right
  after; a restarted loop finds the job by its identity tag whether or not the id was recorded,
  so a task is never submitted twice;
* when Slurm cannot be reached, or refuses for capacity, nothing more is attempted on that
  cluster this tick (the next tick looks again); a terminal refusal fails only that task;
* when the store cannot record (the state directory is full: ``StateWriteFailed``), nothing
  more is attempted this tick and the error goes up to the loop: a submission whose intent
  could not be recorded never reaches ``sbatch``;
* any other failure of one action (Slurm's error, or an unexpected one, logged with its
  traceback) is an ``ActionFailed`` Warning event on its workflow, and the other actions go on;
* a submission that depends on another one planned this tick goes out only after that one did;
* a task's inputs are staged into its run directory before its intent is recorded: staging is
  idempotent, so a crash or a failed staging leaves nothing to undo, and the next tick stages
  and submits again;
* a failed output fetch is recorded with when to try again and stops nothing else
  (``reconciler.engine.outputs``); a fetch this tick never reached is planned again next tick.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..api import TaskPhase, TaskStatus, WorkflowStatus
from ..core.approval_values import with_approved
from ..core.fanout import ArraySize
from ..core.observed import JobKey
from ..core.plan import Action, Cancel, Cleanup, Event, FetchOutputs, Hold, Release, Submit, WorkflowPlan
from ..manifests.resolve import ResolvedWorkflow
from ..slurm.client import SlurmClient, SlurmError, SlurmUnavailable, SubmitRefused, SubmitRequest
from ..slurm.script import run_dir_of, upstream_files
from ..slurm.tags import JobTag
from ..store.connection import StateWriteFailed
from ..store.database import Store
from .fanout import items_file
from .logcontext import log_context
from .outputs import clean_up, fetch_outputs
from .staging import FoundInputs, stage, staged_files

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterOutcome:
    """What happened while acting on one cluster."""

    unavailable: str | None = None  # Slurm stopped answering: the rest waits for the next tick
    at_capacity: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (uid, task) -> sbatch's words
    events: Mapping[str, Sequence[Event]] = field(default_factory=dict)
    submitted: tuple[Submit, ...] = ()  # the submissions sbatch accepted


@dataclass(frozen=True)
class _Done:
    """What one action did: the events it leaves, and for a submission the job id it got or
    the cluster's refusal for lack of room."""

    events: tuple[Event, ...] = ()
    job_id: str | None = None
    at_capacity: str | None = None


def carry_out(
    plans: list[WorkflowPlan],
    *,
    workflows: Mapping[str, ResolvedWorkflow],
    client: SlurmClient,
    store: Store,
    outputs_dir: Path,
    stop: threading.Event,
    now: datetime,
    inputs: Mapping[str, Mapping[str, FoundInputs]] | None = None,
    array_sizes: Mapping[str, Mapping[str, ArraySize]] | None = None,
) -> ClusterOutcome:
    events: dict[str, list[Event]] = {}
    at_capacity: dict[tuple[str, str], str] = {}
    submitted: dict[tuple[str, JobKey], str] = {}
    went_out: list[Submit] = []
    for plan, action in ((p, a) for p in plans for a in p.actions):
        if stop.is_set():
            break
        if isinstance(action, Submit) and at_capacity:
            # The cluster said it is full: later submissions would be refused too.
            at_capacity.setdefault((plan.uid, action.key.task), "the cluster is at capacity")
            continue
        resolved = workflows[plan.uid]
        with _action_context(action, resolved):  # its log lines, the failures' too, name what it acts on
            try:
                done = _carry_out_one(action, resolved=resolved, client=client, store=store, outputs_dir=outputs_dir,
                                      submitted=submitted, now=now, inputs=(inputs or {}).get(plan.uid),
                                      sizes=(array_sizes or {}).get(plan.uid, {}))
            except SlurmUnavailable as exc:
                log.warning("cluster %s unavailable: %s", client.name, exc)
                return ClusterOutcome(unavailable=str(exc), at_capacity=at_capacity, events=events,
                                      submitted=tuple(went_out))
            except StateWriteFailed:
                raise  # what could not be recorded must not be followed by more actions
            except SlurmError as exc:
                log.warning("%s: %s", type(action).__name__, exc)
                done = _Done(events=(Event("Warning", "ActionFailed", f"{_described(action)}: {exc}"),))
            except Exception as exc:  # one workflow's fault must not stop the other workflows' actions
                meta = resolved.workflow.metadata
                log.exception("workflow %s/%s: %s failed unexpectedly", meta.namespace, meta.name, _described(action))
                done = _Done(events=(Event("Warning", "ActionFailed",
                                           f"{_described(action)}: unexpected {type(exc).__name__}: {exc}"),))
        events.setdefault(plan.uid, []).extend(done.events)
        if isinstance(action, Submit) and done.job_id is not None:
            submitted[(plan.uid, action.key)] = done.job_id
            went_out.append(action)
        if isinstance(action, Submit) and done.at_capacity is not None:
            at_capacity[(plan.uid, action.key.task)] = done.at_capacity
    return ClusterOutcome(at_capacity=at_capacity, events=events, submitted=tuple(went_out))


def _action_context(action: Action, resolved: ResolvedWorkflow) -> AbstractContextManager[None]:
    """The log context of one action: its workflow, task and (for one on jobs) job ids."""
    meta = resolved.workflow.metadata
    task = None if isinstance(action, Cleanup) else action.key.task if isinstance(action, Submit) else action.task
    job_ids = action.job_ids if isinstance(action, Cancel | Hold | Release) else ()
    return log_context(workflow=f"{meta.namespace}/{meta.name}", task=task, job_id=",".join(job_ids) or None)


def _described(action: Action) -> str:
    if isinstance(action, Cleanup):
        return "Cleanup of the workflow's files"
    task = action.key.task if isinstance(action, Submit) else action.task
    return f"{type(action).__name__} of {task}"


def _carry_out_one(action: Action, *, resolved: ResolvedWorkflow, client: SlurmClient, store: Store,
                   outputs_dir: Path, submitted: Mapping[tuple[str, JobKey], str], now: datetime,
                   inputs: Mapping[str, FoundInputs] | None, sizes: Mapping[str, ArraySize]) -> _Done:
    if isinstance(action, Submit):
        return _submit(action, resolved=resolved, client=client, store=store, submitted=submitted, now=now,
                       inputs=inputs, size=sizes.get(action.key.task))
    if isinstance(action, Cancel):
        client.cancel(action.job_ids)
        store.mark_cancelled(action.uid, job_ids=action.job_ids)
        return _Done(events=(Event("Normal", "Cancelled", f"cancelled job(s) {', '.join(action.job_ids)} of task "
                                                          f"{action.task}: {action.reason}"),))
    if isinstance(action, Hold):
        client.hold(action.job_ids)
        return _Done(events=(Event("Normal", "Held", f"held job(s) {', '.join(action.job_ids)} of {action.task}"),))
    if isinstance(action, Release):
        client.release(action.job_ids)
        return _Done(events=(Event("Normal", "Released",
                                   f"released job(s) {', '.join(action.job_ids)} of {action.task}"),))
    if isinstance(action, FetchOutputs):
        return _Done(events=fetch_outputs(action, resolved=resolved, client=client, store=store,
                                          outputs_dir=outputs_dir, now=now))
    return _Done(events=clean_up(action, resolved=resolved, client=client, store=store, outputs_dir=outputs_dir,
                                 now=now))


def _submit(action: Submit, *, resolved: ResolvedWorkflow, client: SlurmClient, store: Store,
            submitted: Mapping[tuple[str, JobKey], str], now: datetime,
            inputs: Mapping[str, FoundInputs] | None = None, size: ArraySize | None = None) -> _Done:
    upstream = [submitted.get((action.uid, key)) for key in action.after_submits]
    if any(job_id is None for job_id in upstream):
        return _Done()  # its prerequisite did not go out this tick; the next tick plans it again
    meta = resolved.workflow.metadata
    # Approved values are known only now, at submission: the stored spec keeps its references.
    task = with_approved(resolved.tasks[action.key.task], action.approved)
    tag = JobTag(uid=action.uid, task=action.key.task, attempt=action.key.attempt, part=action.key.part,
                 fingerprint=action.fingerprint)
    request = SubmitRequest(
        namespace=meta.namespace, workflow=meta.name, task=task, tag=tag, resources=action.resources,
        indices=action.indices, parallelism=action.parallelism,
        dependencies=tuple(sorted({*action.after_jobs, *(j for j in upstream if j)})),
        exclude_nodes=action.exclude_nodes,
        inputs_from=upstream_files(task, resolved.tasks, cluster_workdir=client.cluster.spec.workdir,
                                   namespace=meta.namespace, workflow=meta.name),
        items_file=items_file(client, store, uid=action.uid, task=task, size=size),
    )
    files = tuple(staged_files(inputs, task.name))
    if files:
        run_dir = run_dir_of(cluster_workdir=client.cluster.spec.workdir, namespace=meta.namespace,
                             workflow=meta.name, task=task)
        stage(client.transport, cluster_workdir=client.cluster.spec.workdir, run_dir=run_dir, files=files)
    if action.choice is not None:
        store.record_choice(action.uid, action.choice, now=now)
    store.record_intent(action.uid, key=action.key, fingerprint=action.fingerprint, indices=action.indices,
                        resources=action.resources.model_dump(mode="json", exclude_none=True),
                        cluster=client.name, now=now)
    try:
        job_id = client.submit(request)
    except SubmitRefused as exc:
        if exc.at_capacity:
            store.forget_intent(action.uid, key=action.key)
            return _Done(events=(Event("Normal", "ClusterAtCapacity", f"task {action.key.task} waits: {exc}"),),
                         at_capacity=str(exc))
        store.record_rejection(action.uid, key=action.key, reason="SubmitRejected", message=str(exc), now=now)
        return _Done(events=(Event("Warning", "SubmitRejected", str(exc)),))
    # SlurmUnavailable propagates with the intent left unconfirmed: sbatch may or may not have
    # created the job, and the next observation (by identity tag) tells which.
    store.confirm_submission(action.uid, key=action.key, job_id=job_id, now=now)
    asked = action.resources
    what = ", ".join(filter(None, [f"attempt {action.key.attempt}",
                                   f"{action.elements} elements" if action.indices else "",
                                   f"time {asked.time}" if asked.time else "",
                                   f"memory {asked.memory}" if asked.memory else "",
                                   f"excluding {','.join(action.exclude_nodes)}" if action.exclude_nodes else ""]))
    return _Done(events=(Event("Normal", "Submitted", f"task {action.key.task} ({what}) submitted as job {job_id}"),),
                 job_id=job_id)


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
