"""Arrays sized at run time, at the edge: reading the size files on the cluster, and putting an
item list where its jobs read it.

Called by the controller once per workflow and tick (:func:`array_sizes`, before planning) and by
the executor before each submission of an ``itemsFrom`` array (:func:`items_file`). What it
guarantees:

* a size file is read once its writer's status shows it succeeded for the fingerprint it has now,
  and the reading (valid or not) is recorded in the store under that fingerprint before the
  planner sees it; so it is read once per run of the writer, and again after the writer reran
  with other parameters. A file that cannot be read (missing, unreadable) or cannot size the
  array is recorded as invalid with the reason: the array fails, visibly, until the writer
  changes. A cluster that cannot be reached is no answer: the file is read on a later tick.
* Kubernetes mode loses nothing with the operator's local store: the writer's status comes back
  from the Workflow's status and its run directory is still on the cluster, so the file is read
  again; a size that differs from the array total the status showed is logged.
* the item list a job reads is a read-only copy named by its SHA-256 under the cluster's
  ``.reconciler/items``: written from the store when it is not there, never changed once written.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Mapping
from datetime import datetime

from ..api import ArraySource, Task, TaskPhase, TaskStatus
from ..core.fanout import MAX_FILE_BYTES, ArraySize, InvalidSize, KnownSize, described, read_size
from ..manifests.resolve import ResolvedWorkflow
from ..slurm.client import FileUnreadable, SlurmClient, SlurmUnavailable
from ..slurm.script import run_dir_of
from ..store.database import Store, StoredWorkflow

log = logging.getLogger(__name__)


def array_sizes(client: SlurmClient | None, store: Store, *, stored: StoredWorkflow, resolved: ResolvedWorkflow,
                fingerprints: Mapping[str, str], now: datetime) -> dict[str, ArraySize]:
    """The sizes known for the workflow's arrays sized at run time (by task), after reading the
    files whose writers' status shows them succeeded as they are now (none without ``client``:
    the cluster cannot be reached this tick)."""
    writers = {name: fingerprints[task.array.source.task] for name, task in resolved.tasks.items()
               if task.array is not None and task.array.source is not None}
    if not writers:
        return {}
    sizes = store.array_sizes(stored.uid, writers)
    shown = stored.status.tasks if stored.status is not None else {}
    for name, writer_fingerprint in writers.items():
        source = _source(resolved.tasks[name])
        if client is None or name in sizes or not _succeeded(shown.get(source.task), writer_fingerprint):
            continue
        size = _read(client, resolved, resolved.tasks[name])
        if size is None:
            continue
        sizes[name] = store.record_array_size(stored.uid, name, upstream_fingerprint=writer_fingerprint, size=size,
                                              now=now)
        _compare(resolved, name, sizes[name], shown=shown.get(name), fingerprint=fingerprints[name])
    return sizes


def _source(task: Task) -> ArraySource:
    assert task.array is not None and task.array.source is not None
    return task.array.source


def _succeeded(writer: TaskStatus | None, fingerprint: str) -> bool:
    return writer is not None and writer.phase is TaskPhase.SUCCEEDED and writer.fingerprint == fingerprint


def _read(client: SlurmClient, resolved: ResolvedWorkflow, task: Task) -> ArraySize | None:
    """What the task's size file says; None when the cluster did not answer (read next tick)."""
    assert task.array is not None
    source = _source(task)
    meta = resolved.workflow.metadata
    path = posixpath.join(run_dir_of(cluster_workdir=client.cluster.spec.workdir, namespace=meta.namespace,
                                     workflow=meta.name, task=resolved.tasks[source.task]), source.file)
    try:
        text, size_bytes = client.read_head(path, max_bytes=MAX_FILE_BYTES)
    except FileUnreadable as exc:
        return InvalidSize(f"{described(source)} cannot be read: {exc}")
    except SlurmUnavailable as exc:
        log.warning("workflow %s/%s: cannot read %s yet (%s); next tick tries again", meta.namespace, meta.name,
                    path, exc)
        return None
    size = read_size(source, items=task.array.items_from is not None, text=text, size_bytes=size_bytes, path=path)
    if isinstance(size, InvalidSize):
        log.warning("workflow %s/%s: task %s: %s", meta.namespace, meta.name, task.name, size.message)
    else:
        log.info("workflow %s/%s: task %s has %d elements, from %s", meta.namespace, meta.name, task.name,
                 size.count, path)
    return size


def _compare(resolved: ResolvedWorkflow, name: str, size: ArraySize, *, shown: TaskStatus | None,
             fingerprint: str) -> None:
    """A size read again (the local store was lost) that differs from what the status showed
    for the same run: the file was changed on the cluster after it was first read."""
    if shown is None or shown.array is None or shown.fingerprint != fingerprint or not isinstance(size, KnownSize):
        return
    if shown.array.total != size.count:
        meta = resolved.workflow.metadata
        log.warning("workflow %s/%s: task %s had %d elements, but its size file now says %d: the file changed "
                    "after it was first read; planning with %d", meta.namespace, meta.name, name, shown.array.total,
                    size.count, size.count)


def items_path(cluster_workdir: str, digest: str) -> str:
    return posixpath.join(cluster_workdir, ".reconciler", "items", digest)


def items_file(client: SlurmClient, store: Store, *, uid: str, task: Task, size: ArraySize | None) -> str | None:
    """Where the jobs of an ``itemsFrom`` array read their items (put there when missing); None
    for any other task. Raises :class:`SlurmUnavailable` when the cluster cannot be reached."""
    if task.array is None or task.array.items_from is None:
        return None
    if not isinstance(size, KnownSize) or size.items_digest is None:
        raise ValueError(f"task {task.name} was planned without its item list")
    path = items_path(client.cluster.spec.workdir, size.items_digest)
    items = store.array_items(uid, task.name, items_digest=size.items_digest)
    if items is None:
        raise ValueError(f"the store holds no item list {size.items_digest[:12]} for task {task.name}")
    if client.ensure_file(path, items.encode()):
        log.info("task %s: wrote its %d items to %s", task.name, size.count, path)
    return path
