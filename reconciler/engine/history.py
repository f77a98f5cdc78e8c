"""The recording edge of the run history: from Slurm's accounting into the store's history book.

Called by the controller once per cluster and tick, after the tick's observation was stored. It
guarantees:

- it costs one indexed store query when no attempt ended since the last tick; otherwise one
  by-id sacct per 500 jobs (steps included, for the batch step's MaxRSS), whatever the number of
  workflows;
- what a run requested (partition, nodes, CPUs, memory, time) is what Slurm granted, as its
  accounting reports it, not what the manifest asked for;
- an attempt is taken into the history once accounting reports all its jobs ended, or, when it
  reports fewer, once the attempt ended longer ago than accounting may lag (``ACCOUNTING_MAX_LAG``);
  until then it is asked for again on later ticks;
- nothing here fails the tick: an error is logged and the attempts wait for the next one.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from ..core.history import RunSample, kind_of
from ..manifests.resolve import ResolvedWorkflow
from ..slurm.client import SlurmClient, SlurmError
from ..slurm.commands import JobUsage
from ..slurm.observation import ACCOUNTING_MAX_LAG
from ..store.database import Store
from ..store.history import RecordedRun, UnrecordedAttempt

log = logging.getLogger(__name__)


def record_history(store: Store, client: SlurmClient, workflows: Mapping[str, ResolvedWorkflow], *,
                   now: datetime) -> None:
    """Take the attempts of ``workflows`` (by uid) that ended on the client's cluster into the history."""
    cluster = client.name
    try:
        attempts = store.unrecorded_attempts(cluster, sorted(workflows))
        if not attempts:
            return
        usage = client.usage([attempt.job_id for attempt in attempts])
        runs, taken = runs_of(attempts, usage, workflows, cluster=cluster, now=now)
        store.record_runs(runs, attempts=taken)
    except (SlurmError, ValueError) as exc:
        log.warning("cluster %s: the history of finished jobs cannot be read now (%s); trying again next tick",
                    cluster, exc)
    except Exception:
        log.exception("cluster %s: recording the history of finished jobs failed; trying again next tick", cluster)


def runs_of(attempts: Iterable[UnrecordedAttempt], usage: Sequence[JobUsage],
            workflows: Mapping[str, ResolvedWorkflow], *, cluster: str,
            now: datetime) -> tuple[list[RecordedRun], list[UnrecordedAttempt]]:
    """The runs to record, and the attempts they complete (some leave no run: a job cancelled
    before it ever started taught nothing)."""
    plain = {u.job_id: u for u in usage if u.array_job_id is None}
    elements: dict[str, list[JobUsage]] = {}
    for u in usage:
        if u.array_job_id is not None:
            elements.setdefault(u.array_job_id, []).append(u)
    runs: list[RecordedRun] = []
    taken: list[UnrecordedAttempt] = []
    for attempt in attempts:
        found = elements.get(attempt.job_id, []) if attempt.array else \
            [u for u in (plain.get(attempt.job_id),) if u is not None]
        settled = attempt.finished_at is not None and now - attempt.finished_at > ACCOUNTING_MAX_LAG
        heard = len(found) >= attempt.elements and all(u.steps_ended or u.elapsed_seconds == 0 for u in found)
        if not heard and not settled:
            continue  # accounting has not heard of every job, or of every step of one that ran, yet
        taken.append(attempt)
        ran = [u for u in found if not (u.state == "CANCELLED" and u.elapsed_seconds == 0)]
        resolved = workflows.get(attempt.uid)
        if ran and resolved is not None and attempt.key.task in resolved.tasks:
            runs.append(RecordedRun(uid=attempt.uid, fingerprint=attempt.fingerprint,
                                    sample=_sample(attempt, ran, resolved, cluster=cluster)))
    return runs, taken


def _sample(attempt: UnrecordedAttempt, ran: Sequence[JobUsage], resolved: ResolvedWorkflow, *,
            cluster: str) -> RunSample:
    """One run of a job (or an array chunk's elements, which share one request)."""
    workflow = resolved.workflow
    task = resolved.tasks[attempt.key.task]
    first = ran[0]
    waits = [(u.started_at - u.submitted_at).total_seconds() for u in ran
             if u.started_at is not None and u.submitted_at is not None]
    rss = [u.max_rss_mib for u in ran if u.max_rss_mib is not None]
    cpu = [u.total_cpu_seconds for u in ran if u.total_cpu_seconds is not None]
    failed = Counter(u.state for u in ran if u.state != "COMPLETED")
    return RunSample(
        kind=kind_of(resolved, task.name),
        workflow=f"{workflow.metadata.namespace}/{workflow.metadata.name}",
        task=task.name,
        attempt=attempt.key.attempt,
        job_id=attempt.job_id,
        cluster=cluster,
        partition=first.partition,
        nodes=first.nodes,
        cpus=first.cpus,
        memory_mib=first.memory_mib,
        time_limit_seconds=first.time_limit_seconds,
        size_hint=task.size_hint,
        # An array chunk that did not wholly succeed is remembered by how most of its failures ended.
        state=failed.most_common(1)[0][0] if failed else "COMPLETED",
        elements=len(ran),
        elapsed_seconds=sum(u.elapsed_seconds for u in ran) / len(ran),
        queue_wait_seconds=sum(waits) / len(waits) if waits else None,
        max_rss_mib=max(rss) if rss else None,
        total_cpu_seconds=sum(cpu) if cpu else None,
        billed_core_seconds=sum(u.billed_core_seconds for u in ran),
        finished_at=max(u.finished_at for u in ran),
    )
