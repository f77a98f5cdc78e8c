"""The control loop of Git mode: one tick reads the source, observes every cluster once, lets
the pure core plan, carries the plans out and writes status once.

Called by ``reconciler run``. Guarantees:

* level-triggered: every tick starts from the whole declared and observed state, so a missed
  wake-up, a crash or a restart only delays work;
* one ``squeue`` and one ``sacct`` per cluster per tick, whatever the number of jobs;
* nothing in a tick crashes the loop: a source that cannot be read keeps the last good
  snapshot, a cluster that does not answer is retried with jittered exponential backoff (its
  workflows keep their status, with ``ClusterReachable=False``), an unexpected error is logged
  and the next tick tries again;
* one loop per state directory (a lock), and a stop request (SIGINT/SIGTERM) is honoured
  between two actions.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

from .executor import adjust_status, carry_out
from ..api import SlurmCluster, SlurmClusterSpec, WorkflowPhase, WorkflowStatus
from ..core.desired import DesiredState, classify_desired
from ..manifests.loader import ManifestError
from ..core.plan import Event
from ..core.planner import DesiredWorkflow, prune, plan_cluster
from ..manifests.resolve import ResolvedWorkflow
from ..slurm.client import SlurmClient, SlurmError
from ..slurm.transport import open_transport
from ..sources.base import Snapshot, Source, SourceError
from ..core.status import invalid_status
from ..store.database import Store, StoredWorkflow

log = logging.getLogger(__name__)

# How far back sacct is asked when no job is unfinished: covers jobs that finished while a
# restarted loop was down, whose submission it may not have confirmed.
DISCOVERY_WINDOW = timedelta(minutes=15)
MAX_BACKOFF_SECONDS = 60.0


class StateLocked(RuntimeError):
    pass


class StateLock:
    """An exclusive lock on a state directory, held for the life of the loop (flock: released
    by the kernel when the process dies, so a kill -9 never leaves a stale lock)."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / "lock"
        self._file = open(self.path, "a+")  # noqa: SIM115 - held open on purpose
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise StateLocked(f"{state_dir} is in use by a running reconciler (pid {holder}); "
                              "stop it or give another --state-dir") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(str(os.getpid()))
        self._file.flush()

    def release(self) -> None:
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()


@dataclass
class Backoff:
    failures: int = 0
    retry_at: float = 0.0

    def failed(self, *, base: float) -> float:
        self.failures += 1
        delay = min(MAX_BACKOFF_SECONDS, base * 2 ** (self.failures - 1)) * random.uniform(0.8, 1.2)
        self.retry_at = time.monotonic() + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.retry_at = 0.0

    @property
    def waiting(self) -> bool:
        return time.monotonic() < self.retry_at


@dataclass
class TickReport:
    workflows: int = 0
    source_error: str | None = None
    unreachable: dict[str, str] = field(default_factory=dict)
    requeue_after: float | None = None


class Publisher(Protocol):
    """Where a tick's results go besides the store: Kubernetes mode writes them to the API."""

    def prepare(self, snapshot: Snapshot, store: Store, *, now: datetime) -> None:
        """Before planning: bring the store in line with what the source holds (runs, status,
        approvals), so a lost local state loses nothing."""

    def publish(self, *, statuses: dict[str, WorkflowStatus], events: dict[str, list[Event]],
                pruned: list[StoredWorkflow], store: Store) -> None: ...

    def connection(self, cluster: SlurmCluster) -> tuple[SlurmClusterSpec, str | None]:
        """How to reach ``cluster``: its spec (with any file it needs put in place) and the SSH
        private key, when the key comes from somewhere other than a file."""


class Controller:
    def __init__(self, *, source: Source, store: Store, state_dir: Path, interval: float,
                 publisher: Publisher | None = None) -> None:
        self.source = source
        self.store = store
        self.publisher = publisher
        self.outputs_dir = state_dir / "outputs"
        self.interval = interval
        self.stop = threading.Event()
        self._snapshot: Snapshot | None = None
        self._manifest_errors: list[ManifestError] = []  # errors of the last snapshot tied to no workflow
        self._clients: dict[str, SlurmClient] = {}
        self._backoff: dict[str, Backoff] = {}

    # -- the loop ----------------------------------------------------------------------------

    def run(self, *, once: bool = False, until_done: bool = False) -> int:
        failures = 0
        while not self.stop.is_set():
            delay = self.interval
            try:
                report = self.tick()
                failures = 0
                if report.requeue_after is not None:
                    delay = min(delay, max(0.5, report.requeue_after))
            except Exception:  # the loop must outlive any one bad tick
                failures += 1
                delay = min(MAX_BACKOFF_SECONDS, self.interval * 2 ** failures)
                log.exception("tick failed; next attempt in %.0fs", delay)
            if once:
                return 0 if failures == 0 else 1
            if until_done:
                verdict = self.verdict()
                if verdict is not None:
                    return verdict
            self.source.wait(delay)
        return 0

    def request_stop(self) -> None:
        self.stop.set()
        self.source.wake()

    def verdict(self) -> int | None:
        """For --until-done: 0 once every workflow succeeded, 1 once every workflow ended and
        one did not succeed (or the source holds only manifests that cannot be read), None while
        any is still going, or none is declared yet."""
        phases = [w.status.phase if w.status else WorkflowPhase.PENDING for w in self.store.active_workflows()]
        if not phases:
            # Nothing declared can finish; a source that only holds broken manifests never will.
            return 1 if self._manifest_errors else None
        ended = {WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED, WorkflowPhase.INVALID}
        if all(phase is WorkflowPhase.SUCCEEDED for phase in phases):
            return 0
        if all(phase in ended for phase in phases):
            return 1
        return None

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    # -- one tick ----------------------------------------------------------------------------

    def tick(self) -> TickReport:
        now = datetime.now(timezone.utc)
        report = TickReport()
        try:
            self._snapshot = self.source.read()
        except SourceError as exc:
            report.source_error = str(exc)
            log.warning("cannot read %s: %s (keeping the last good state)", self.source.description, exc)
        if self._snapshot is None:
            return report
        snapshot = self._snapshot
        if self.publisher is not None:
            self.publisher.prepare(snapshot, self.store, now=now)
        active = {(w.namespace, w.name): w for w in self.store.active_workflows()}
        desired = classify_desired(snapshot.load, active={key: w.source_file for key, w in active.items()})
        self._manifest_errors = list(desired.errors)
        for error in desired.errors:
            log.warning("%s", error)

        statuses: dict[str, WorkflowStatus] = {}
        events: dict[str, list[Event]] = {}
        self._invalid(desired, active, snapshot, statuses, now=now)
        groups: dict[str, list[tuple[StoredWorkflow, ResolvedWorkflow]]] = {}
        for resolved in desired.valid:
            meta = resolved.workflow.metadata
            stored = self.store.upsert_workflow(
                namespace=meta.namespace, name=meta.name, resource=resolved.workflow.to_wire(),
                revision=snapshot.revision, source_file=resolved.location.file if resolved.location else None, now=now,
                uid=meta.uid,
            )
            assert resolved.cluster is not None
            groups.setdefault(resolved.cluster.metadata.name, []).append((stored, resolved))
        pruned: dict[str, list[StoredWorkflow]] = {}
        for identity in desired.prune:
            stored = active[identity]
            pruned.setdefault(_cluster_of(stored, desired), []).append(stored)
        report.workflows = len(desired.valid) + len(desired.invalid)

        removed: list[StoredWorkflow] = []
        for name in sorted(set(groups) | set(pruned)):
            cluster = desired.clusters.get(name)
            if cluster is None:
                for stored in pruned.get(name, []):
                    log.warning("workflow %s/%s removed, but its cluster %r is no longer declared: its jobs are "
                                "left as they are", stored.namespace, stored.name, name)
                    self.store.mark_removed(stored.uid, now=now)
                    removed.append(stored)
                continue
            requeue = self._tick_cluster(cluster, groups.get(name, []), pruned.get(name, []),
                                              statuses, events, report, removed, now=now)
            if requeue is not None:
                report.requeue_after = min(requeue, report.requeue_after or requeue)
            if self.stop.is_set():
                break
        for uid, items in events.items():
            self.store.add_events(uid, items, now=now)
        self.store.save_statuses(statuses)
        if self.publisher is not None:
            self.publisher.publish(statuses=statuses, events=events, pruned=removed, store=self.store)
        return report

    def _invalid(self, desired: DesiredState, active: dict[tuple[str, str], StoredWorkflow], snapshot: Snapshot,
                 statuses: dict[str, WorkflowStatus], *, now: datetime) -> None:
        for invalid in desired.invalid:
            stored = active.get((invalid.namespace, invalid.name))
            if stored is None:
                if invalid.resource is None:
                    continue  # nothing readable to show yet: the error is logged with the others
                # Never good so far: kept so `reconciler get` shows it and why it does not run.
                stored = self.store.upsert_workflow(namespace=invalid.namespace, name=invalid.name,
                                                    resource=invalid.resource, revision=snapshot.revision,
                                                    source_file=invalid.errors[0].file if invalid.errors else None,
                                                    now=now)
            for message in invalid.messages:
                log.warning("%s", message)
            generation = ((invalid.resource or {}).get("metadata") or {}).get("generation") or stored.generation
            statuses[stored.uid] = invalid_status(previous=stored.status, errors=invalid.messages,
                                                  generation=generation, revision=snapshot.revision, now=now)

    def _tick_cluster(
        self,
        cluster: SlurmCluster,
        workflows: list[tuple[StoredWorkflow, ResolvedWorkflow]],
        removed: list[StoredWorkflow],
        statuses: dict[str, WorkflowStatus],
        events: dict[str, list[Event]],
        report: TickReport,
        pruned: list[StoredWorkflow],
        *,
        now: datetime,
    ) -> float | None:
        name = cluster.metadata.name
        backoff = self._backoff.setdefault(name, Backoff())
        if backoff.waiting:
            report.unreachable[name] = "backing off"
            return max(0.0, backoff.retry_at - time.monotonic())
        client = self._client(cluster)
        since = self._observation_start(name, workflows, now=now)
        observation = client.observe(since=since, job_ids=self.store.unfinished_job_ids(name))
        view = client.view(observation)
        if not (observation.queue_ok and observation.accounting_ok):
            delay = backoff.failed(base=self.interval)
            report.unreachable[name] = observation.error or "cannot be observed"
            log.warning("cluster %s cannot be observed (%s); next look in %.0fs", name, observation.error, delay)
        else:
            backoff.succeeded()
        jobs = observation.jobs_by_workflow()

        desired: list[DesiredWorkflow] = []
        resolved_by_uid: dict[str, ResolvedWorkflow] = {}
        for stored, resolved in workflows:
            self.store.update_from_observation(stored.uid, jobs.get(stored.uid, []), now=now, cluster=name)
            resolved_by_uid[stored.uid] = resolved
            desired.append(DesiredWorkflow(
                uid=stored.uid, resolved=resolved, generation=resolved.workflow.metadata.generation or stored.generation,
                revision=stored.revision,
                approvals=self.store.approvals(stored.uid), previous=stored.status,
                observed=tuple(jobs.get(stored.uid, [])), records=tuple(self.store.attempts(stored.uid)),
            ))
        plans = plan_cluster(desired, view=view, capacity=cluster.spec.capacity, now=now)
        outcome = carry_out(plans, workflows=resolved_by_uid, client=client, store=self.store,
                            outputs_dir=self.outputs_dir, stop=self.stop, now=now)
        if outcome.unavailable:
            backoff.failed(base=self.interval)
            report.unreachable[name] = outcome.unavailable
        requeue = None
        for plan in plans:
            statuses[plan.uid] = adjust_status(plan.status, uid=plan.uid, outcome=outcome)
            events[plan.uid] = [*plan.events, *outcome.events.get(plan.uid, [])]
            if plan.requeue_after is not None:
                requeue = min(plan.requeue_after, requeue if requeue is not None else plan.requeue_after)
        if view.reachable:
            pruned.extend(self._prune(removed, jobs, client, now=now))
        return requeue

    def _observation_start(self, cluster: str, workflows: list[tuple[StoredWorkflow, ResolvedWorkflow]], *,
                           now: datetime) -> datetime:
        """Where sacct's window starts: the oldest unfinished attempt, and the start of every run
        the store has no attempt of (a fresh or lost local state: its jobs are found by their
        identity tags, however long ago they ran)."""
        starts = [now - DISCOVERY_WINDOW]
        oldest = self.store.oldest_unfinished_at(cluster)
        if oldest is not None:
            starts.append(oldest)
        for stored, resolved in workflows:
            if not self.store.has_attempts(stored.uid):
                starts.append(resolved.workflow.metadata.creation_timestamp or stored.created_at)
        return min(starts) - timedelta(minutes=1)

    def _prune(self, removed: list[StoredWorkflow], jobs: dict, client: SlurmClient, *,
               now: datetime) -> list[StoredWorkflow]:
        done = []
        for stored in removed:
            try:
                for cancel in prune(stored.uid, jobs.get(stored.uid, [])):
                    client.cancel(cancel.job_ids)
                    self.store.mark_cancelled(stored.uid, job_ids=cancel.job_ids)
            except SlurmError as exc:
                log.warning("pruning %s/%s: %s (next tick tries again)", stored.namespace, stored.name, exc)
                continue
            self.store.add_events(stored.uid, [Event("Normal", "Pruned", "removed from the source: its jobs were "
                                                     "cancelled")], now=now)
            self.store.mark_removed(stored.uid, now=now)
            done.append(stored)
            log.info("pruned %s/%s", stored.namespace, stored.name)
        return done

    def _client(self, cluster: SlurmCluster) -> SlurmClient:
        name = cluster.metadata.name
        client = self._clients.get(name)
        if client is not None and client.cluster.spec == cluster.spec:
            return client
        if client is not None:
            client.close()
        spec, key = self.publisher.connection(cluster) if self.publisher is not None else (cluster.spec, None)
        client = SlurmClient(cluster, open_transport(spec, private_key=key))
        self._clients[name] = client
        return client


def _cluster_of(stored: StoredWorkflow, desired: DesiredState) -> str:
    """The cluster a removed workflow ran on: its manifest's, or the only one declared."""
    named = (stored.resource.get("spec") or {}).get("cluster")
    if named:
        return str(named)
    if len(desired.clusters) == 1:
        return next(iter(desired.clusters))
    return ""

