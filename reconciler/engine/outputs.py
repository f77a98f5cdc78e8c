"""Carrying out what a finished task or workflow leaves to do: fetching declared outputs, and
removing a finished workflow's files once its ``ttlSecondsAfterFinished`` has passed.

Called by the executor for the FetchOutputs and Cleanup actions the planner made
(``reconciler.core.outputs``, ``reconciler.core.cleanup``). Guarantees:

* each variant of a task's outputs has a directory of its own,
  ``<state dir>/outputs/<namespace>/<workflow>/<task>/<fingerprint>/``, and ``latest`` beside
  them points at the newest one fetched; a rerun never overwrites an earlier variant's files;
* a fetch is recorded as pending before it is tried and as fetched, missing or failed after it;
  a failure of any kind (the cluster unreachable, a file unreadable, the destination unwritable)
  is recorded with the number of tries and when to try again, and does not stop the other
  actions of the tick;
* a cleanup removes the workflow's directory under the cluster's workdir (never anything
  outside it, see ``SlurmClient.remove_tree``) and its outputs' copies under the state
  directory, then records that it was done; a cleanup refused as unsafe is recorded too, so it
  is not tried again. A task whose ``workdir`` is an absolute path outside the workflow's
  directory keeps that directory: it was the user's before the task ran in it.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
from datetime import datetime
from pathlib import Path

from ..core.cleanup import CleanupOutcome
from ..core.outputs import retry_delay
from ..core.plan import Cleanup, Event, FetchOutputs
from ..manifests.resolve import ResolvedWorkflow
from ..slurm.client import SlurmClient, SlurmError, UnsafePath
from ..slurm.script import run_dir_of
from ..store.database import Store

log = logging.getLogger(__name__)

LATEST = "latest"


def variant_dir(outputs_dir: Path, *, namespace: str, workflow: str, task: str, fingerprint: str) -> Path:
    return outputs_dir / namespace / workflow / task / fingerprint


def fetch_outputs(action: FetchOutputs, *, resolved: ResolvedWorkflow, client: SlurmClient, store: Store,
                  outputs_dir: Path, now: datetime) -> tuple[Event, ...]:
    meta = resolved.workflow.metadata
    task = resolved.tasks[action.task]
    run_dir = run_dir_of(cluster_workdir=client.cluster.spec.workdir, namespace=meta.namespace, workflow=meta.name,
                         task=task)
    destination = variant_dir(outputs_dir, namespace=meta.namespace, workflow=meta.name, task=task.name,
                              fingerprint=action.fingerprint)
    store.outputs_pending(action.uid, action.task, fingerprint=action.fingerprint, attempt=action.attempt, now=now)
    try:
        fetched, unmatched = client.fetch_declared(run_dir=run_dir, patterns=action.patterns, destination=destination)
        _point_latest(destination)
    except (SlurmError, OSError, ValueError) as exc:
        tries = action.tries + 1
        next_try = now + retry_delay(tries)
        store.outputs_failed(action.uid, action.task, fingerprint=action.fingerprint, attempt=action.attempt,
                             error=str(exc), tries=tries, next_try_at=next_try, now=now)
        return (Event("Warning", "OutputsFetchFailed", f"task {task.name}: fetching its outputs failed (try {tries}): "
                                                       f"{exc}; next try at {next_try.isoformat()}"),)
    store.outputs_fetched(action.uid, action.task, fingerprint=action.fingerprint, attempt=action.attempt,
                          files=len(fetched), location=str(destination), unmatched=unmatched, now=now)
    if unmatched:
        return (Event("Warning", "OutputsMissing", f"task {task.name}: no file matched {', '.join(unmatched)} in "
                                                   f"{run_dir}"),)
    return (Event("Normal", "OutputsFetched", f"task {task.name}: fetched {len(fetched)} file(s) into {destination}"),)


def _point_latest(destination: Path) -> None:
    """Point ``latest`` beside the variants at ``destination``, replacing the old link in one step."""
    destination.mkdir(parents=True, exist_ok=True)
    link = destination.parent / LATEST
    temporary = destination.parent / f".{LATEST}.{os.getpid()}"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(destination.name)
    os.replace(temporary, link)


def clean_up(action: Cleanup, *, resolved: ResolvedWorkflow, client: SlurmClient, store: Store, outputs_dir: Path,
             now: datetime) -> tuple[Event, ...]:
    meta = resolved.workflow.metadata
    workdir = client.cluster.spec.workdir
    workflow_dir = posixpath.join(workdir, meta.namespace, meta.name)
    copies = outputs_dir / meta.namespace / meta.name
    try:
        removed = client.remove_tree(workflow_dir, inside=workdir)
        _remove_local(copies, inside=outputs_dir)
    except UnsafePath as exc:
        store.record_cleanup(action.uid, finished_at=action.finished_at, outcome=CleanupOutcome.REFUSED,
                             message=str(exc), now=now)
        return (Event("Warning", "CleanupRefused", f"ttlSecondsAfterFinished passed, but {exc}"),)
    where = f"{removed} on cluster {client.name}" if removed else f"nothing left in {workflow_dir} on {client.name}"
    message = (f"ttlSecondsAfterFinished ({action.ttl_seconds}s) passed: removed {where} and the outputs' copies "
               f"in {copies}; status and history are kept")
    store.record_cleanup(action.uid, finished_at=action.finished_at, outcome=CleanupOutcome.CLEANED, message=message,
                         now=now)
    return (Event("Normal", "Cleaned", message),)


def _remove_local(path: Path, *, inside: Path) -> None:
    """Remove the directory ``path``, which must lie strictly inside ``inside`` once resolved; a
    symlink in its place is removed, never followed."""
    if path.is_symlink():
        path.unlink()
        return
    if not path.exists():
        return
    root = inside.resolve()
    if root == Path("/") or root not in path.resolve().parents:
        raise UnsafePath(f"refusing to remove {path}: it is not strictly inside {inside}")
    shutil.rmtree(path)
