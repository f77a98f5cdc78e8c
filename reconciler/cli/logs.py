"""``reconciler logs``: a task's output (or error) stream, read from the cluster it ran on, the
way ``kubectl logs`` prints a container's.

Called by :mod:`reconciler.cli.main` with parsed arguments. The store says which job an attempt
was (its job id, the cluster it went to, an array's indices per part); the SlurmCluster of that
name is the one the loop recorded when it last connected to it (``reconciler.store.clusters``),
or the one in the manifests under ``--source`` when given; the file is read through that
cluster's transport, locally or over SSH. What it guarantees:

* it never runs a Slurm command: it reads files. ``--follow`` reads at most ``FOLLOW_CHUNK``
  bytes at a time, once a second while nothing is new, and stops once the store says the
  attempt (an array: the element) has finished, after reading what the job wrote last;
* the latest attempt by default; an array without ``--index`` shows its first element and says
  so on stderr, as kubectl does for a pod of several containers;
* jobs submitted before the error stream had a file of its own wrote both streams into the
  output file: ``--stderr`` says so and names that file;
* a refusal says what to do next. Exit codes: 0 printed, 1 nothing to print (the message says
  why), 130 interrupted (Ctrl-C while following).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..api import SlurmCluster, TaskPhase, WorkflowStatus
from ..core.indexranges import compress, expand
from ..core.observed import DONE_PHASES
from ..slurm.script import Stream, job_log_path, log_dir_of
from ..store.array_outcomes import MAX_ELEMENTS
from ..store.database import Store, StoredWorkflow
from ..store.rows import AttemptHistory
from .commands import open_store, state_dir

# One read through the transport: a follower catching up reads again at once, an idle one waits.
FOLLOW_CHUNK = 64 * 1024
POLL_SECONDS = 1.0
INTERRUPTED = 130


@dataclass(frozen=True)
class Selected:
    """The part of an attempt whose file to print, and the element of an array."""

    attempt: AttemptHistory
    job_id: str
    index: int | None  # the task index of an array element; None for a plain job
    note: str | None = None  # what was chosen for the user, printed on stderr


@dataclass(frozen=True)
class Refused:
    message: str


def select(history: Sequence[AttemptHistory], *, workflow: str, task: str, attempt: int | None,
           index: int | None) -> Selected | Refused:
    """The submission ``reconciler logs`` prints for ``task``: attempt ``attempt`` (default the
    latest), and for an array the part holding element ``index`` (default the first element)."""
    mine = [a for a in history if a.key.task == task]
    if not mine:
        return Refused(f"task {task} of workflow {workflow} has not been submitted yet: it has no logs until its "
                       f"job starts (see `reconciler describe workflow {workflow}`)")
    numbers = sorted({a.key.attempt for a in mine})
    chosen = numbers[-1] if attempt is None else attempt
    if chosen not in numbers:
        return Refused(f"task {task} has no attempt {attempt} (its attempts: {', '.join(map(str, numbers))})")
    parts = sorted((a for a in mine if a.key.attempt == chosen), key=lambda a: a.key.part)
    if parts[0].indices is None:
        if index is not None:
            return Refused(f"task {task} is not an array: leave out --index")
        return _submitted(parts[0], index=None, note=None)
    elements = {i: part for part in parts if part.indices for i in expand(part.indices, limit=MAX_ELEMENTS)}
    note = None
    if index is None:
        index = min(elements)
        if len(elements) > 1:
            note = (f"Defaulted index {index} out of: {compress(elements)} of task {task} attempt {chosen} "
                    "(choose one with --index)")
    if index not in elements:
        return Refused(f"task {task} attempt {chosen} has no index {index} (its indices: {compress(elements)})")
    return _submitted(elements[index], index=index, note=note)


def _submitted(attempt: AttemptHistory, *, index: int | None, note: str | None) -> Selected | Refused:
    key = attempt.key
    if attempt.job_id is None:
        if attempt.message:
            return Refused(f"attempt {key.attempt} of task {key.task} never ran: sbatch refused it "
                           f"({attempt.message}), so it has no logs")
        return Refused(f"attempt {key.attempt} of task {key.task} is being submitted (no job id yet): try again "
                       "in a moment")
    return Selected(attempt=attempt, job_id=attempt.job_id, index=index, note=note)


def element_phase(attempt: AttemptHistory, index: int | None) -> TaskPhase | None:
    """The phase of the job (an array: of element ``index``) as the store last saw it; None
    while nothing was observed of it."""
    if index is None or attempt.states is None:
        return attempt.outcome.phase if attempt.outcome is not None else None
    return next((phase for phase, ranges in attempt.states.items() if index in expand(ranges, limit=MAX_ELEMENTS)),
                None)


def finished(attempt: AttemptHistory, index: int | None) -> bool:
    """Whether the store shows the job (an array: element ``index``) ended, so its files are
    complete."""
    return (attempt.outcome is not None and attempt.outcome.done) or element_phase(attempt, index) in DONE_PHASES


_NAMES = {Stream.OUT: "output", Stream.ERR: "error"}
# Before Slurm starts a job, it has no files.
_NOT_STARTED = frozenset({None, TaskPhase.SUBMITTED, TaskPhase.HELD, TaskPhase.QUEUED})


def task_refusal(stored: StoredWorkflow, name: str, task: str) -> str | None:
    """Why ``task`` of the stored workflow has no logs at all, or None."""
    declared = {t.get("name"): t.get("type", "job") for t in (stored.resource.get("spec") or {}).get("tasks") or []}
    known = [*(stored.status.tasks if stored.status else {}), *stored.task_labels]
    if task not in known and task not in declared:
        names = ", ".join(dict.fromkeys([*known, *declared])) or "none"
        return f"workflow {name} has no task {task!r} (its tasks: {names})"
    if declared.get(task) == "approval":
        return f"task {task} is an approval: it runs no job, so it has no logs"
    return None


def cluster_of(name: str, *, source: str | None, store: Store) -> SlurmCluster | str:
    """The SlurmCluster ``name``: from the manifests under ``source`` when given, else as the loop
    recorded it when it last connected; or why it cannot be had."""
    if source is None:
        return _recorded_cluster(name, store)
    from ..manifests.loader import load_paths

    loaded = load_paths([Path(source)])
    clusters = [r.resource for r in loaded.resources if isinstance(r.resource, SlurmCluster)]
    for cluster in clusters:
        if cluster.metadata.name == name:
            return cluster
    known = ", ".join(sorted(c.metadata.name for c in clusters)) or "none"
    return (f"the job ran on cluster {name}, and {source} holds no SlurmCluster of that name (it holds: {known}): "
            "give --source the folder of the manifests the loop reads")


def _recorded_cluster(name: str, store: Store) -> SlurmCluster | str:
    cluster = store.cluster(name)
    if cluster is None:
        return (f"the job ran on cluster {name}, which this state has no record of (a loop records each cluster "
                "when it connects): give --source the folder of the manifests that declare it")
    ssh = cluster.spec.ssh
    if ssh is not None and ssh.key_file is None and ssh.key_secret_ref is not None:
        return (f"cluster {name} is reached with the SSH key of Secret {ssh.key_secret_ref}, which is not on this "
                "machine: run this where the operator runs, or give --source manifests that name a key file")
    return cluster


def logs(*, state: str | None, name: str, task: str, source: str | None, attempt: int | None, index: int | None,
         follow: bool, stream: Stream) -> int:
    namespace, _, short = name.rpartition("/")
    with open_store(state_dir(state)) as store:
        stored = store.workflow(namespace or "default", short)
        if stored is None:
            return _refuse(f'workflow "{name}" not found')
        refusal = task_refusal(stored, name, task)
        if refusal is not None:
            return _refuse(refusal)
        chosen = select(store.history(stored.uid), workflow=name, task=task, attempt=attempt, index=index)
        cluster = cluster_of(chosen.attempt.cluster, source=source, store=store) if isinstance(chosen, Selected) \
            else None
    if isinstance(chosen, Refused):
        return _refuse(chosen.message)
    assert cluster is not None
    if isinstance(cluster, str):
        return _refuse(cluster)
    if chosen.note:
        print(chosen.note, file=sys.stderr)
    key = chosen.attempt.key
    log_dir = log_dir_of(cluster_workdir=cluster.spec.workdir, namespace=stored.namespace, workflow=stored.name)

    def path_of(which: Stream) -> str:
        return job_log_path(log_dir=log_dir, task=key.task, attempt=key.attempt, part=key.part,
                            job_id=chosen.job_id, index=chosen.index, stream=which)

    from ..slurm.client import SlurmClient, SlurmError
    from ..slurm.transport import open_transport

    # Held open while following: the loop records the end, each look reads what it committed.
    watched = open_store(state_dir(state)) if follow else None

    def ended() -> bool:
        assert watched is not None
        now = next((a for a in watched.history(stored.uid) if a.key == key), chosen.attempt)
        return finished(now, chosen.index)

    client = SlurmClient(cluster, open_transport(cluster.spec))
    sys.stdout.flush()
    try:
        printed = copy_stream(lambda offset: client.read_part(path_of(stream), offset=offset, limit=FOLLOW_CHUNK),
                              out=sys.stdout.buffer, ended=ended if follow else None)
        if printed:
            return 0
        return _refuse(_missing(stored, chosen, stream=stream, path=path_of(stream),
                                merged=stream is Stream.ERR and client.read_part(
                                    path_of(Stream.OUT), offset=0, limit=1) is not None))
    except SlurmError as exc:
        return _refuse(f"cannot read the logs on cluster {cluster.metadata.name}: {exc}")
    except KeyboardInterrupt:
        return INTERRUPTED
    finally:
        client.close()
        if watched is not None:
            watched.close()


def copy_stream(read: Callable[[int], bytes | None], *, out: BinaryIO, ended: Callable[[], bool] | None) -> bool:
    """Copy the file ``read`` reads (bounded reads from an offset; None: no such file yet) to
    ``out``; whether there was a file. With ``ended`` (follow), keep reading once a second as
    the file grows, until ``ended()`` said so before a read that found nothing new: what the
    job wrote last is printed."""
    offset = 0
    seen = False
    while True:
        done = ended() if ended is not None else True
        while (chunk := read(offset)) is not None:
            seen = True
            out.write(chunk)
            out.flush()
            offset += len(chunk)
            if len(chunk) < FOLLOW_CHUNK:
                break
        if done:
            return seen
        time.sleep(POLL_SECONDS)


def _missing(stored: StoredWorkflow, chosen: Selected, *, stream: Stream, path: str, merged: bool) -> str:
    """Why a stream's file is not there, and what to do."""
    status: WorkflowStatus | None = stored.status
    job = chosen.job_id + (f" (element {chosen.index})" if chosen.index is not None else "")
    if status is not None and status.cleaned_at is not None:
        return (f"the files of workflow {stored.name} were removed at {status.cleaned_at:%Y-%m-%d %H:%M:%SZ} "
                f"(ttlSecondsAfterFinished): the logs of job {job} are gone; its status and history are kept")
    if merged:
        return (f"job {job} was submitted before the error stream had a file of its own: both streams are in "
                f"its output, which `reconciler logs` without --stderr prints")
    if not finished(chosen.attempt, chosen.index) and element_phase(chosen.attempt, chosen.index) in _NOT_STARTED:
        return (f"job {job} has not started yet, so it has no {_NAMES[stream]} file: try again once it "
                "runs, or add --follow to wait for it")
    return f"job {job} left no file {path} (it never started, or the file was removed)"


def _refuse(message: str) -> int:
    print(f"Error: {message}", file=sys.stderr)
    return 1
