"""The end of a task's output for the dashboard, read from the cluster the job ran on, as
``reconciler logs`` reads it.

Called by :mod:`reconciler.dashboard.server` when ``reconciler serve`` was given ``--source`` (the
manifests that hold the SlurmClusters: the store keeps no connection details). Uses the choices
of :mod:`reconciler.cli.logs` (the latest attempt; an array's first element) and reads through
the cluster's transport, locally or over SSH, never running a Slurm command. Guarantees: at most
``READ_LIMIT`` bytes are read per request and ``TAIL_BYTES`` shown, so a huge output costs a page
little; a transport that cannot be reached is a message, not an error page.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..cli.logs import FOLLOW_CHUNK, Refused, _cluster, _task_refusal, select
from ..slurm.script import Stream, job_log_path, log_dir_of
from ..store.database import StoredWorkflow
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
    """Reads tails through the clusters named in the manifests under ``source``."""

    def __init__(self, source: Path) -> None:
        self.source = source

    def tail(self, stored: StoredWorkflow, history: list[AttemptHistory], task: str) -> Tail | str:
        """The tail of ``task``'s latest output, or why there is none."""
        name = f"{stored.namespace}/{stored.name}"
        refusal = _task_refusal(stored, name, task)
        if refusal is not None:
            return refusal
        chosen = select(history, workflow=name, task=task, attempt=None, index=None)
        if isinstance(chosen, Refused):
            return chosen.message
        cluster = _cluster(str(self.source), chosen.attempt.cluster)
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
