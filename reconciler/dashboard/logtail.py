"""The end of a task's output for the dashboard, read from the cluster the job ran on, as
``reconciler logs`` reads it.

Called by :mod:`reconciler.dashboard.server` for the workflow pages. The cluster a job ran on is
the one the loop recorded in the store, or the one the manifests under ``--source`` declare when
``reconciler serve`` was given them (see :func:`reconciler.cli.logs.cluster_of`). Uses the choices
of :mod:`reconciler.cli.logs` (the latest attempt; an array's first element) and reads through
the cluster's transport, locally or over SSH, never running a Slurm command. Guarantees: at most
``READ_LIMIT`` bytes are read per request and ``TAIL_BYTES`` shown, so a huge output costs a page
little; a transport that cannot be reached is a message, not an error page.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..cli.logs import FOLLOW_CHUNK, Refused, cluster_of, select, task_refusal
from ..slurm.script import Stream, job_log_path, log_dir_of
from ..store.database import Store, StoredWorkflow
from ..store.rows import AttemptHistory
from .model import Tail

TAIL_BYTES = 16 * 1024
READ_LIMIT = 1024 * 1024


def read_tail(read: Callable[[int], bytes | None], *, limit: int = READ_LIMIT,
              keep: int = TAIL_BYTES) -> tuple[bytes, bool, bool] | None:
    """The last ``keep`` bytes of the first ``limit`` a bounded reader gives (None: no file),
    whether the start was cut, and whether the file goes on."""
    offset, kept, cut = 0, b"", False
    while offset < limit:
        chunk = read(offset)
        if chunk is None:
            return None if offset == 0 else (kept, cut, False)
        kept += chunk
        if len(kept) > keep:
            kept, cut = kept[-keep:], True
        offset += len(chunk)
        if len(chunk) < FOLLOW_CHUNK:
            return kept, cut, False
    return kept, cut, True


class LogReader:
    """Reads tails through the clusters the loop recorded, or those the manifests under
    ``source`` name when given."""

    def __init__(self, store: Store, source: Path | None = None) -> None:
        self.store = store
        self.source = source

    def tail(self, stored: StoredWorkflow, history: list[AttemptHistory], task: str) -> Tail | str:
        """The tail of ``task``'s latest output, or why there is none."""
        name = f"{stored.namespace}/{stored.name}"
        refusal = task_refusal(stored, name, task)
        if refusal is not None:
            return refusal
        chosen = select(history, workflow=name, task=task, attempt=None, index=None)
        if isinstance(chosen, Refused):
            return chosen.message
        cluster = cluster_of(chosen.attempt.cluster, source=None if self.source is None else str(self.source),
                             store=self.store)
        if isinstance(cluster, str):
            return cluster
        key = chosen.attempt.key
        path = job_log_path(log_dir=log_dir_of(cluster_workdir=cluster.spec.workdir, namespace=stored.namespace,
                                               workflow=stored.name),
                            task=key.task, attempt=key.attempt, part=key.part, job_id=chosen.job_id,
                            index=chosen.index, stream=Stream.OUT)
        from ..slurm.client import SlurmClient, SlurmError
        from ..slurm.transport import TransportError, open_transport

        try:
            client = SlurmClient(cluster, open_transport(cluster.spec))
        except TransportError as exc:
            return f"cannot reach cluster {cluster.metadata.name}: {exc}"
        try:
            found = read_tail(lambda offset: client.read_part(path, offset=offset, limit=FOLLOW_CHUNK))
        except SlurmError as exc:
            return f"cannot read the output on cluster {cluster.metadata.name}: {exc}"
        finally:
            client.close()
        if found is None:
            return f"job {chosen.job_id} has no output file yet ({path}): it has not started, or the file was removed"
        data, cut, unread = found
        return Tail(task=task, job_id=chosen.job_id, index=chosen.index, path=path,
                    text=data.decode("utf-8", "replace"), cut=cut, unread=unread)
