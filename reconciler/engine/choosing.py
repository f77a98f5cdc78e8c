"""What the Orchestrator needs from the world, gathered at the edge: models fitted on the store's
history, each cluster's partitions, and Slurm's start estimates.

Called by the controller each tick for the workflows that choose something (a task with ``auto``
resources, a budget, candidate clusters). Guarantees: the history is refitted only when runs were
added; a start estimate (one ``sbatch --test-only``, which submits nothing) is asked at most once
per ``ESTIMATE_TTL_SECONDS`` per cluster and job size, and at most ``MAX_ESTIMATES_PER_TICK`` new
ones a tick per cluster, so a busy loop never floods slurmctld; a cluster that cannot be asked
leaves its estimates out, and the Optimizer falls back to the expected queue wait.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from datetime import datetime

from ..api import SlurmCluster, TaskPhase, WorkflowStatus
from ..core import observed
from ..core.assign import Choosing, Learned, learn, offers_of, optimizer_of, queries
from ..core.orchestrator import Offer, StartQuery
from ..manifests.resolve import ResolvedWorkflow
from ..slurm.client import SlurmClient, SlurmError
from ..store.database import Store

log = logging.getLogger(__name__)

ESTIMATE_TTL_SECONDS = 30.0
MAX_ESTIMATES_PER_TICK = 16
# A task in one of these phases goes out (again) soon: its start estimates are worth asking for.
_TO_SUBMIT = frozenset({TaskPhase.WAITING, TaskPhase.QUEUED, TaskPhase.RETRYING})


def needs_choosing(resolved: ResolvedWorkflow) -> bool:
    """Whether planning the workflow on its cluster chooses anything: a task's auto resources, or
    the predicted costs a budget needs (placing it among candidate clusters is done apart)."""
    return resolved.spec.budget is not None or any(task.resources.auto for task in resolved.tasks.values())


class HistoryModels:
    """The models fitted on the store's history, refitted when it grew."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._mark = -1
        self._learned = Learned()

    def learned(self) -> Learned:
        mark = self.store.history_mark()
        if mark != self._mark:
            self._learned = learn(self.store.runs())
            self._mark = mark
        return self._learned


class StartEstimates:
    """Slurm's start estimates, cached per cluster and job size."""

    def __init__(self) -> None:
        self._cache: dict[StartQuery, tuple[float | None, datetime, float]] = {}

    def seconds_until_start(self, client: SlurmClient, wanted: Iterable[StartQuery], *, now: datetime,
                            max_age: float = ESTIMATE_TTL_SECONDS) -> dict[StartQuery, float]:
        """Seconds from ``now`` until each size would start; sizes that cannot run there, or that
        could not be asked, are left out. An estimate older than ``max_age`` seconds is asked again."""
        wanted = list(wanted)
        fresh = time.monotonic()
        stale = [q for q in dict.fromkeys(wanted) if q not in self._cache or fresh - self._cache[q][2] >= max_age]
        if stale:
            self._ask(client, stale[:MAX_ESTIMATES_PER_TICK], now=now)
        found: dict[StartQuery, float] = {}
        for query in wanted:
            cached = self._cache.get(query)
            if cached is not None and cached[0] is not None:
                # An estimate asked a while ago is the same instant, now that much nearer.
                found[query] = max(0.0, cached[0] - (now - cached[1]).total_seconds())
        return found

    def _ask(self, client: SlurmClient, asked: list[StartQuery], *, now: datetime) -> None:
        sizes = {query: _slurm_size(query, client) for query in asked}
        try:
            answers = client.estimate_starts([size for size in sizes.values() if size is not None])
        except SlurmError as exc:
            log.warning("cluster %s: start estimates: %s (choosing without them)", client.name, exc)
            return
        for query, size in sizes.items():
            start = answers.get(size) if size is not None else None
            seconds = None if start is None else max(0.0, (start - now).total_seconds())
            self._cache[query] = (seconds, now, time.monotonic())


def _slurm_size(query: StartQuery, client: SlurmClient) -> observed.JobSize | None:
    """The size as ``sbatch --test-only`` is asked about it: a partition left to Slurm is the
    default one, a time left to Slurm the partition's default (else its limit)."""
    try:
        partitions = client.info().partitions
    except (SlurmError, ValueError):
        return None
    partition = next((p for p in partitions if p.name == query.partition), None) if query.partition else next(
        (p for p in partitions if p.default), None)
    if partition is None:
        return None
    seconds = query.time_seconds or partition.default_time_seconds or partition.max_time_seconds or 3600
    return observed.JobSize(partition=partition.name, nodes=query.nodes or 1, cpus=query.cpus or 1,
                               time_seconds=seconds)


def choosing_for(resolved: ResolvedWorkflow, *, clusters: Mapping[str, SlurmClient], learned: Learned,
                 estimates: StartEstimates, previous: WorkflowStatus | None, now: datetime,
                 max_age: float = ESTIMATE_TTL_SECONDS) -> Choosing:
    """What choosing needs for ``resolved`` on ``clusters`` (its own cluster, or every candidate
    to place it), with start estimates for the tasks still to be submitted, none older than
    ``max_age`` seconds."""
    cluster: SlurmCluster | None = resolved.cluster
    offers: list[Offer] = []
    for client in clusters.values():
        try:
            offers.extend(offers_of(client.cluster, client.info().partitions))
        except (SlurmError, ValueError) as exc:
            log.warning("cluster %s: partitions: %s (left out of the choice)", client.name, exc)
    choosing = Choosing(offers=tuple(offers), learned=learned, optimizer=optimizer_of(resolved.spec, cluster))
    # Placing the workflow weighs every job task; once placed, only a task with auto resources
    # has anything to choose that a start estimate could change.
    placing = resolved.cluster is None
    pending = {name for name, task in resolved.tasks.items()
               if _to_submit(previous, name) and (placing or task.resources.auto)}
    wanted = queries(resolved, choosing=choosing, tasks=pending)
    if not wanted:
        return choosing
    starts: dict[StartQuery, float] = {}
    for name, client in clusters.items():
        starts.update(estimates.seconds_until_start(client, [q for q in wanted if q.cluster == name], now=now,
                                                    max_age=max_age))
    return Choosing(offers=choosing.offers, learned=learned, starts=starts, optimizer=choosing.optimizer)


def _to_submit(previous: WorkflowStatus | None, name: str) -> bool:
    task = previous.tasks.get(name) if previous is not None else None
    return task is None or task.phase in _TO_SUBMIT
