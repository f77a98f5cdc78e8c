"""The control loop: one tick reads the desired state, observes every cluster once, lets the
pure core plan, carries the plans out and writes status once.

Called by ``reconciler run`` (Git mode: a directory or Git repository as source, status in the
local store) and by ``reconciler operator`` (Kubernetes mode: the informers' caches as source,
and a :class:`Publisher` that also writes status, events and finalizers to the API and hands
out the credentials of each cluster). Guarantees:

* every cluster a tick looks at gets a status from what it saw there (``Ready``, the version,
  the partitions, our jobs queued and running), handed to the publisher with the workflows';

* level-triggered: every tick starts from the whole declared and observed state, so a missed
  wake-up, a crash or a restart only delays work;
* one ``squeue`` and one ``sacct`` per cluster per tick, whatever the number of jobs;
* a job's end wakes the loop at once: each cluster with a client has an :class:`EndWatch` that
  rings the source's ``wake`` when a job writes its end record, and the tick that follows
  observes and carries out what the end made due (the records only wake; Slurm stays the truth);
* a fault stays where it happened, and is logged with the cluster or workflow named. A cluster
  that cannot be observed, whose connection cannot be set up (a Secret missing), or whose part of
  the tick fails unexpectedly is retried with jittered exponential backoff; its workflows show
  ``ClusterReachable=False`` with the reason and keep their last status otherwise. One action
  that fails is a Warning event on its workflow. A status the publisher could not write is a
  ``StatusWriteFailed`` event on its workflow and is written again next tick. Every other cluster
  and workflow goes on in the same tick, and the statuses are saved and published;
* nothing in a tick crashes the loop: a source that cannot be read keeps the last good
  snapshot, and a tick that fails as a whole (the store) is logged and tried again with backoff;
* one loop per state directory (a lock), and a stop request (SIGINT/SIGTERM) is honoured
  between two actions;
* a workflow new since the loop started acting is not looked for in accounting by name: every
  job of it can only be the loop's own, recorded in the store before ``sbatch`` (see
  ``Controller._accounting_window``).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from ..api import SlurmCluster, SlurmClusterSpec, SlurmClusterStatus, TaskType, WorkflowPhase, WorkflowStatus
from ..api.orchestration import AUTO
from ..backoff import NO_JITTER, Backoff, backoff_delay
from ..core.approvals import declared_decisions
from ..core.assign import place
from ..core.clusterstatus import NotReady, observed_cluster_status, unready_cluster_status
from ..core.desired import DesiredState, classify_desired
from ..core.observed import ClusterView, ObservedJob
from ..core.plan import Event, WorkflowPlan
from ..core.planner import DesiredWorkflow, LastPlans, plan_cluster, prune, task_fingerprints
from ..core.status import invalid_status
from ..manifests.loader import ManifestError
from ..manifests.resolve import ResolvedWorkflow
from ..slurm.client import Discovery, Observation, SlurmClient, SlurmError
from ..slurm.observation import ACCOUNTING_MAX_LAG
from ..slurm.script import job_name
from ..slurm.transport import Transport, TransportError, open_transport
from ..sources.base import Snapshot, Source, SourceError
from ..store.connection import StateWriteFailed
from ..store.database import Store, StoredWorkflow
from .choosing import HistoryModels, StartEstimates, choosing_for, needs_choosing
from .endwatch import EndWatch
from .executor import ClusterOutcome, adjust_status, carry_out
from .fanout import array_sizes
from .history import record_history
from .logcontext import log_context
from .metrics import Metrics
from .staging import FoundInputs, find_inputs, input_states

log = logging.getLogger(__name__)

# How far back accounting is asked for the jobs of a workflow the store holds no submission of
# (a fresh or lost local state), when its creation time says less.
DISCOVERY_WINDOW = timedelta(minutes=15)
# sacct's windows start this much earlier than they must: clocks of the loop's machine and of
# slurmdbd may differ a little.
WINDOW_MARGIN = timedelta(minutes=1)
MAX_BACKOFF_SECONDS = 60.0
# Clusters behind one network fault should not all be retried in the same tick.
CLUSTER_JITTER = (0.8, 1.2)


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


class ClusterConnectionError(Exception):
    """A cluster's connection cannot be set up (its credentials are missing or unreadable); the
    message says what to fix. Retried with the cluster's backoff like any unreachable cluster."""


class Connect(Protocol):
    """Opens the transport to a cluster's login node: ``open_transport``, or another way there."""

    def __call__(self, spec: SlurmClusterSpec, *, private_key: str | None) -> Transport: ...


@dataclass(frozen=True)
class ClusterReport:
    """A cluster a tick looked at, and the status that gives it."""

    cluster: SlurmCluster
    status: SlurmClusterStatus


class Publisher(Protocol):
    """Where a tick's results go besides the store: Kubernetes mode writes them to the API."""

    def prepare(self, snapshot: Snapshot, store: Store, *, now: datetime) -> None:
        """Before planning: bring the store in line with what the source holds (runs, status,
        approvals), so a lost local state loses nothing."""

    def publish(self, *, statuses: Mapping[str, WorkflowStatus], events: Mapping[str, Sequence[Event]],
                pruned: Sequence[StoredWorkflow], store: Store,
                clusters: Sequence[ClusterReport] = ()) -> Mapping[str, str]:
        """Write every status (the workflows' and the clusters'), event and prune; the workflow
        statuses that could not be written, by workflow uid, with the reason (the others are
        written whatever happened to these)."""
        ...

    def connection(self, cluster: SlurmCluster) -> tuple[SlurmClusterSpec, str | None]:
        """How to reach ``cluster``: its spec (with any file it needs put in place) and the SSH
        private key, when the key comes from somewhere other than a file. Raises
        :class:`ClusterConnectionError` when its credentials cannot be had."""
        ...


def status_write_failed(reason: str) -> Event:
    """The event on a workflow whose status the publisher could not write."""
    return Event("Warning", "StatusWriteFailed", f"status not written: {reason}; the next tick writes it again")


@dataclass(frozen=True)
class ClusterWork:
    """One cluster's share of a tick: its declared workflows, and the removed ones to prune."""

    workflows: tuple[tuple[StoredWorkflow, ResolvedWorkflow], ...] = ()
    prune: tuple[StoredWorkflow, ...] = ()


@dataclass(frozen=True)
class TickResult:
    """What part of a tick produced (one cluster's workflows, or the invalid ones), and what
    the tick folds them into before recording it."""

    statuses: Mapping[str, WorkflowStatus] = field(default_factory=dict)
    events: Mapping[str, tuple[Event, ...]] = field(default_factory=dict)
    pruned: tuple[StoredWorkflow, ...] = ()
    requeue_after: float | None = None  # seconds until something planned is due (a retry, a backoff's end)
    clusters: tuple[ClusterReport, ...] = ()  # the clusters looked at, with what was seen there
    # The statuses of workflows not planned again (nothing changed): saved already, so only
    # published, since what a publisher wrote may have been edited by someone else since.
    unchanged: Mapping[str, WorkflowStatus] = field(default_factory=dict)

    @classmethod
    def combine(cls, parts: Iterable[TickResult]) -> TickResult:
        statuses: dict[str, WorkflowStatus] = {}
        unchanged: dict[str, WorkflowStatus] = {}
        events: dict[str, tuple[Event, ...]] = {}
        pruned: list[StoredWorkflow] = []
        clusters: list[ClusterReport] = []
        requeue: float | None = None
        for part in parts:
            statuses.update(part.statuses)
            unchanged.update(part.unchanged)
            for uid, items in part.events.items():
                events[uid] = (*events.get(uid, ()), *items)
            pruned.extend(part.pruned)
            clusters.extend(part.clusters)
            requeue = _earliest(requeue, part.requeue_after)
        return cls(statuses=statuses, events=events, pruned=tuple(pruned), requeue_after=requeue,
                   clusters=tuple(clusters), unchanged=unchanged)


@dataclass(frozen=True)
class TickReport:
    """What the loop needs to know of a tick: when to run the next one."""

    requeue_after: float | None = None


def utc_now() -> datetime:
    return datetime.now(UTC)


class Controller:
    """The loop over one source and one store. ``connect`` opens the transport of each cluster
    (with the spec and key the publisher hands out, in Kubernetes mode); clients are kept across
    ticks and opened again after a fault. ``clock`` tells each tick's time (UTC).

    A controller takes itself for the only one acting on its clusters from its first tick on, so
    it is built once the right to act is had and dropped when that is lost: ``reconciler run``
    takes the state directory's lock before building it, and the operator builds it once its
    replica leads and exits when leadership is lost."""

    def __init__(self, *, source: Source, store: Store, state_dir: Path, interval: float,
                 publisher: Publisher | None = None, connect: Connect = open_transport,
                 metrics: Metrics | None = None, clock: Callable[[], datetime] = utc_now) -> None:
        self.source = source
        self.clock = clock
        self.metrics = metrics if metrics is not None else Metrics()
        self.store = store
        self.publisher = publisher
        self.connect = connect
        self.outputs_dir = state_dir / "outputs"
        self.interval = interval
        self.stop = threading.Event()
        self._snapshot: Snapshot | None = None
        self._manifest_errors: list[ManifestError] = []  # errors of the last snapshot tied to no workflow
        self._clients: dict[str, SlurmClient] = {}
        self._watches: dict[str, EndWatch] = {}
        self._backoff: dict[str, Backoff] = {}
        self._models = HistoryModels(store)
        self._estimates = StartEstimates()
        # Each cluster's last observation that had accounting's answer: where the next sacct
        # window may start (see _accounting_window).
        self._accounted_at: dict[str, datetime] = {}
        # When this controller started acting (its first tick): every job submitted since is in
        # its store, so the jobs of a workflow newer than that need no search (_accounting_window).
        self._acting_since: datetime | None = None
        # Each cluster's last status, so Ready's transition time moves only when it flips (the
        # object's own status is the reconciler's output, never read back as desired state).
        self._cluster_statuses: dict[str, SlurmClusterStatus] = {}
        # Plans with nothing to do, handed back while none of their inputs change (in memory
        # only: a loop that starts afresh plans everything).
        self._last_plans = LastPlans()

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
            except StateWriteFailed as exc:  # no backoff: the tick is cheap to retry, space may return any moment
                failures += 1
                self.metrics.state_write_failures.inc()
                log.error("%s; nothing is submitted until it can be written again, next try in %.0fs", exc, delay)
            except Exception:  # the loop must outlive any one bad tick
                failures += 1
                self.metrics.tick_failures.inc()
                # Twice the interval after the first failed tick, doubling up to the cap.
                delay = backoff_delay(failures, base=2 * self.interval, cap=MAX_BACKOFF_SECONDS, jitter=NO_JITTER)
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
        for name in list(self._clients):
            self._drop_client(name)

    # -- one tick ----------------------------------------------------------------------------

    def tick(self) -> TickReport:
        started = time.monotonic()
        now = self.clock()
        if self._acting_since is None:
            self._acting_since = now
        snapshot = self._read_source()
        if snapshot is None:
            return TickReport()
        with log_context(revision=snapshot.revision):
            if self.publisher is not None:
                self.publisher.prepare(snapshot, self.store, now=now)
            active = {(w.namespace, w.name): w for w in self.store.active_workflows()}
            desired = self._classify(snapshot, active)
            invalid = self._invalid(desired, active, snapshot, now=now)
            work = self._share_out(desired, active, snapshot, now=now)
            result = TickResult.combine([invalid, *self._tick_clusters(desired.clusters, work, now=now)])
            self._record(result, now=now)
        self.metrics.tick(seconds=time.monotonic() - started, events=result.events,
                          workflows=self.store.active_workflows(), clusters=work)
        return TickReport(requeue_after=result.requeue_after)

    def _read_source(self) -> Snapshot | None:
        """The source's content, or the last good one when it cannot be read (None before any)."""
        try:
            self._snapshot = self.source.read()
        except SourceError as exc:
            log.warning("cannot read %s: %s (keeping the last good state)", self.source.description, exc)
        return self._snapshot

    def _classify(self, snapshot: Snapshot, active: Mapping[tuple[str, str], StoredWorkflow]) -> DesiredState:
        desired = classify_desired(snapshot.load, active={key: w.source_file for key, w in active.items()})
        self._manifest_errors = list(desired.errors)
        for error in desired.errors:
            log.warning("%s", error)
        return desired

    def _invalid(self, desired: DesiredState, active: Mapping[tuple[str, str], StoredWorkflow], snapshot: Snapshot,
                 *, now: datetime) -> TickResult:
        """The Invalid status of every workflow whose manifest is broken."""
        statuses: dict[str, WorkflowStatus] = {}
        for invalid in desired.invalid:
            stored = active.get((invalid.namespace, invalid.name))
            for message in invalid.messages:
                log.warning("%s", message)
            if stored is None:
                if invalid.resource is None:
                    continue  # nothing readable to show yet: the log line above is all there is
                # Never good so far: kept so `reconciler get` shows it and why it does not run.
                stored = self.store.upsert_workflow(namespace=invalid.namespace, name=invalid.name,
                                                    resource=invalid.resource, revision=snapshot.revision,
                                                    source_file=invalid.errors[0].file if invalid.errors else None,
                                                    now=now)
            generation = ((invalid.resource or {}).get("metadata") or {}).get("generation") or stored.generation
            statuses[stored.uid] = invalid_status(previous=stored.status, errors=invalid.messages,
                                                  generation=generation, revision=snapshot.revision, now=now)
        return TickResult(statuses=statuses)

    def _share_out(self, desired: DesiredState, active: Mapping[tuple[str, str], StoredWorkflow],
                   snapshot: Snapshot, *, now: datetime) -> dict[str, ClusterWork]:
        """Each cluster's work: the valid workflows (recorded in the store) and those to prune."""
        workflows: dict[str, list[tuple[StoredWorkflow, ResolvedWorkflow]]] = {}
        for resolved in desired.valid:
            meta = resolved.workflow.metadata
            stored = self.store.upsert_workflow(
                namespace=meta.namespace, name=meta.name, resource=resolved.workflow.to_wire(),
                revision=snapshot.revision, source_file=resolved.location.file if resolved.location else None, now=now,
                uid=meta.uid, task_labels={name: task.labels for name, task in resolved.tasks.items()},
            )
            placed = resolved if resolved.cluster is not None else self._placed(stored, resolved, now=now)
            if placed is None or placed.cluster is None:
                continue
            workflows.setdefault(placed.cluster.metadata.name, []).append((stored, placed))
        removed: dict[str, list[StoredWorkflow]] = {}
        for identity in desired.prune:
            stored = active[identity]
            removed.setdefault(_cluster_of(stored, desired), []).append(stored)
        return {name: ClusterWork(workflows=tuple(workflows.get(name, ())), prune=tuple(removed.get(name, ())))
                for name in sorted(set(workflows) | set(removed))}

    def _placed(self, stored: StoredWorkflow, resolved: ResolvedWorkflow, *, now: datetime) -> ResolvedWorkflow | None:
        """``_place``, with whatever goes wrong kept to this workflow: it waits for the next tick."""
        try:
            with log_context(workflow=f"{stored.namespace}/{stored.name}"):
                return self._place(stored, resolved, now=now)
        except StateWriteFailed:
            raise  # the store's fault, not this workflow's: the tick stops
        except Exception:  # one workflow's placement must not stop the others
            log.exception("workflow %s/%s: placing it failed; next tick tries again", stored.namespace, stored.name)
            return None

    def _place(self, stored: StoredWorkflow, resolved: ResolvedWorkflow, *, now: datetime) -> ResolvedWorkflow | None:
        """A workflow that names candidate clusters, on the one it was placed on; placed now, on
        the one where its tasks score best, when it has not been yet (or its cluster is no
        longer a candidate). None when no candidate can be asked: it waits for the next tick."""
        candidates = {cluster.metadata.name: cluster for cluster in resolved.candidates}
        placement = self.store.placement(stored.uid)
        if placement is not None and placement.cluster in candidates:
            return replace(resolved, cluster=candidates[placement.cluster])
        clients = {}
        for name, cluster in candidates.items():
            try:
                clients[name] = self._client(cluster)
            except Exception as exc:  # a cluster that cannot be reached is no candidate this tick
                log.warning("workflow %s/%s: cluster %s is left out of its placement: %s", stored.namespace,
                            stored.name, name, exc)
        # Placed once for good: worth asking each cluster afresh rather than trusting a cached answer.
        choosing = choosing_for(resolved, clusters=clients, learned=self._models.learned(),
                                estimates=self._estimates, previous=stored.status, now=now, max_age=0.0)
        if not choosing.offers:
            log.warning("workflow %s/%s: none of its clusters can be asked; placed next tick", stored.namespace,
                        stored.name)
            return None
        placement = place(resolved, choosing=choosing)
        self.store.place(stored.uid, placement, now=now)
        self.store.add_events(stored.uid, [Event("Normal", "Placed", placement.message)], now=now)
        log.info("workflow %s/%s %s", stored.namespace, stored.name, placement.message)
        return replace(resolved, cluster=candidates[placement.cluster])

    def _tick_clusters(self, clusters: Mapping[str, SlurmCluster], work: Mapping[str, ClusterWork], *,
                       now: datetime) -> list[TickResult]:
        results = []
        for name, share in work.items():
            cluster = clusters.get(name)
            results.append(self._tick_cluster(cluster, share, now=now) if cluster is not None
                           else self._forsake(name, share.prune, now=now))
            if self.stop.is_set():
                break
        return results

    def _record(self, result: TickResult, *, now: datetime) -> None:
        """Save the tick's events and statuses, then publish them; a status the publisher could
        not write is a StatusWriteFailed event (the next tick writes it again)."""
        for uid, items in result.events.items():
            self.store.add_events(uid, items, now=now)
        self.store.save_statuses(result.statuses)
        if self.publisher is None:
            return
        failed = self.publisher.publish(statuses={**result.unchanged, **result.statuses}, events=result.events,
                                        pruned=result.pruned, store=self.store, clusters=result.clusters)
        for uid, reason in failed.items():
            stored = self.store.workflow_by_uid(uid)
            name = f"{stored.namespace}/{stored.name}" if stored is not None else uid
            log.warning("workflow %s: status not written (%s); the next tick writes it again", name, reason)
            self._last_plans.forget(uid)
            self.store.add_events(uid, [status_write_failed(reason)], now=now)

    # -- one cluster -------------------------------------------------------------------------

    def _tick_cluster(self, cluster: SlurmCluster, work: ClusterWork, *, now: datetime) -> TickResult:
        """One cluster's part of the tick. Whatever goes wrong here stays here: the cluster is
        backed off and its workflows marked, and the tick goes on with the next cluster."""
        name = cluster.metadata.name
        backoff = self._backoff.setdefault(name, Backoff(base=self.interval, cap=MAX_BACKOFF_SECONDS,
                                                         jitter=CLUSTER_JITTER))
        if backoff.waiting:
            return TickResult(requeue_after=backoff.remaining())
        with log_context(cluster=name):
            try:
                client = self._client(cluster)
                return self._reconcile_cluster(cluster, client, work, backoff, now=now)
            except StateWriteFailed:
                raise  # not the cluster's fault: the whole tick stops, nothing more may go out unrecorded
            except Exception as exc:  # one cluster's fault must not stop the others
                return self._failed_cluster(cluster, work, backoff, exc, now=now)

    def _failed_cluster(self, cluster: SlurmCluster, work: ClusterWork, backoff: Backoff, exc: Exception, *,
                        now: datetime) -> TickResult:
        """A cluster whose part of the tick failed: backed off, its client dropped, its workflows
        marked with why."""
        name = cluster.metadata.name
        self.metrics.observed(name, ok=False)
        delay = backoff.failed()
        self._drop_client(name)
        if isinstance(exc, ClusterConnectionError | TransportError):  # set-up: the message says what to fix
            reason = f"cannot connect to cluster {name}: {exc}"
            why = NotReady.CONNECTION_FAILED
            log.warning("%s; next try in %.0fs", reason, delay)
        else:
            reason = f"unexpected {type(exc).__name__} on cluster {name}: {exc} (see the reconciler's log)"
            why = NotReady.ERROR
            log.error("cluster %s: its part of the tick failed; next try in %.0fs", name, delay, exc_info=exc)
        status = unready_cluster_status(why, reason, generation=cluster.metadata.generation,
                                        previous=self._cluster_statuses.get(name), now=now)
        return replace(self._unreachable(cluster, work, reason, now=now), clusters=(self._report(cluster, status),))

    def _reconcile_cluster(self, cluster: SlurmCluster, client: SlurmClient, work: ClusterWork, backoff: Backoff, *,
                           now: datetime) -> TickResult:
        """Observe the cluster once, plan its workflows, carry the plans out, prune."""
        name = cluster.metadata.name
        assert self._acting_since is not None, "the tick records it before any cluster's part"
        since, discover = self._accounting_window(name, work.workflows, now=now, acting_since=self._acting_since)
        watch = self._watches.get(name)
        ending = watch.ending_jobs if watch is not None else set()
        client.ask_usage_ahead(ending)  # for record_history below, if they did end
        observation = client.observe(since=since, job_ids=self.store.unfinished_job_ids(name), discover=discover,
                                     ending=ending, names=self._window_names(name, work))
        if observation.accounting_ok:
            self._accounted_at[name] = observation.observed_at
        if observation.accounting_ok and watch is not None:
            watch.settle(observation.records)
        view = client.view(observation)
        self._judge(name, observation, backoff)
        self.metrics.observed(name, ok=observation.queue_ok and observation.accounting_ok)
        jobs = observation.jobs_by_workflow()
        status = observed_cluster_status(view, [job for found in jobs.values() for job in found],
                                         generation=cluster.metadata.generation,
                                         previous=self._cluster_statuses.get(name), now=now)
        for stored, _ in work.workflows:
            self.store.update_from_observation(stored.uid, jobs.get(stored.uid, []), now=now, cluster=name)
        if observation.accounting_ok:
            record_history(self.store, client, {stored.uid: resolved for stored, resolved in work.workflows}, now=now)
        inputs = self._inputs(work)
        desired = [self._desired(stored, resolved, jobs.get(stored.uid, ()), inputs.get(stored.uid), now=now)
                   for stored, resolved in work.workflows]
        desired = self._with_sizes(client, work, desired, now=now)
        desired = [self._with_choosing(item, client, now=now) for item in desired]
        plans = plan_cluster(desired, view=view, capacity=cluster.spec.capacity, now=now, last=self._last_plans)
        outcome = carry_out(plans, workflows={stored.uid: resolved for stored, resolved in work.workflows},
                            client=client, store=self.store, outputs_dir=self.outputs_dir, stop=self.stop, now=now,
                            inputs=inputs, array_sizes={item.uid: item.array_sizes for item in desired})
        self.metrics.submitted(name, outcome.submitted, attempts=self.store.attempts)
        if outcome.unavailable:
            backoff.failed()
        pruned = self._prune(work.prune, jobs, client, now=now) if view.reachable else ()
        return replace(_result(plans, outcome, pruned=pruned), clusters=(self._report(cluster, status),))

    def _report(self, cluster: SlurmCluster, status: SlurmClusterStatus) -> ClusterReport:
        self._cluster_statuses[cluster.metadata.name] = status
        return ClusterReport(cluster, status)

    @staticmethod
    def _judge(name: str, observation: Observation, backoff: Backoff) -> None:
        if observation.queue_ok and observation.accounting_ok:
            backoff.succeeded()
            return
        delay = backoff.failed()
        log.warning("cluster %s cannot be observed (%s); next look in %.0fs", name, observation.error, delay)

    def _unreachable(self, cluster: SlurmCluster, work: ClusterWork, reason: str, *, now: datetime) -> TickResult:
        """The status of a cluster's workflows when nothing could be done on it: planned against
        a view that says it cannot be observed, and why, with no action carried out."""
        name = cluster.metadata.name
        view = ClusterView(name=name, reachable=False, accounting=False, error=reason)
        try:
            inputs = self._inputs(work)
            desired = [self._desired(stored, resolved, (), inputs.get(stored.uid), now=now)
                       for stored, resolved in work.workflows]
            desired = self._with_sizes(None, work, desired, now=now)
            plans = plan_cluster(desired, view=view, capacity=cluster.spec.capacity, now=now)
        except Exception:
            log.exception("cluster %s: the status of its workflows cannot be worked out either; they keep their "
                          "last status", name)
            return TickResult()
        return _result(plans, ClusterOutcome())

    def _inputs(self, work: ClusterWork) -> dict[str, dict[str, FoundInputs]]:
        """The inputs of each workflow's tasks, read from the snapshot this tick planned with."""
        snapshot = self._snapshot
        content = snapshot.content if snapshot is not None else None
        config_maps = snapshot.config_maps if snapshot is not None else None
        return {stored.uid: find_inputs(resolved, content=content, config_maps=config_maps)
                for stored, resolved in work.workflows}

    def _desired(self, stored: StoredWorkflow, resolved: ResolvedWorkflow, observed: Iterable[ObservedJob],
                 inputs: Mapping[str, FoundInputs] | None, *, now: datetime) -> DesiredWorkflow:
        return self._with_approvals(stored, now=now, desired=DesiredWorkflow(
            uid=stored.uid, resolved=resolved, generation=resolved.workflow.metadata.generation or stored.generation,
            revision=stored.revision, previous=stored.status,
            observed=tuple(observed), records=tuple(self.store.attempts(stored.uid)),
            inputs=input_states(inputs or {}),
            requests=self.store.requests(stored.uid),
            outputs=self.store.outputs(stored.uid), cleanup=self.store.cleanup(stored.uid),
            usage=self.store.usage(stored.uid),
        ))

    def _with_sizes(self, client: SlurmClient | None, work: ClusterWork, desired: Sequence[DesiredWorkflow], *,
                    now: datetime) -> list[DesiredWorkflow]:
        """Each workflow with the sizes of its arrays sized at run time, reading the files that
        can be read now (none without ``client``: the cluster cannot be reached)."""
        return [replace(item, array_sizes=array_sizes(client, self.store, stored=stored, resolved=resolved,
                                                      fingerprints=task_fingerprints(item), now=now))
                for (stored, resolved), item in zip(work.workflows, desired, strict=True)]

    def _with_choosing(self, desired: DesiredWorkflow, client: SlurmClient, *, now: datetime) -> DesiredWorkflow:
        """``desired`` with what choosing its tasks' resources needs, when it chooses any."""
        resolved = desired.resolved
        if not needs_choosing(resolved):
            return desired
        choosing = choosing_for(resolved, clusters={client.name: client}, learned=self._models.learned(),
                                estimates=self._estimates, previous=desired.previous, now=now)
        return replace(desired, choosing=choosing, choices=self.store.choices(desired.uid))

    def _with_approvals(self, stored: StoredWorkflow, *, desired: DesiredWorkflow, now: datetime) -> DesiredWorkflow:
        """``desired`` with its approvals, after recording the manifest's new ``approved:``
        values for the tasks as they are in this revision (their fingerprints fold in the values
        of the approvals given before)."""
        desired = replace(desired, approvals=self.store.approvals(stored.uid))
        if self.store.record_declared(stored.uid, declared_decisions(desired.resolved.tasks),
                                      fingerprints=task_fingerprints(desired), revision=stored.revision, now=now):
            desired = replace(desired, approvals=self.store.approvals(stored.uid))
        return desired

    def _accounting_window(self, cluster: str, workflows: Sequence[tuple[StoredWorkflow, ResolvedWorkflow]], *,
                           now: datetime, acting_since: datetime) -> tuple[datetime | None, Discovery | None]:
        """Where sacct's window starts (None: no window), and which jobs accounting is asked for
        by name.

        The window covers every job whose end the loop may not have seen yet: on its first look
        at the cluster, back to the oldest unfinished attempt (a restart may have missed any
        end); afterwards, back to its last look that had accounting's answer, less the time
        accounting may lag, and to any submission whose sbatch never answered (its job can only be
        found by its tag). A tick's sacct so costs what ran lately, not all that ran since the
        oldest job still going. Ended jobs leave the window; the store remembers them.

        Workflows the store holds no submission of have their jobs asked for by name, back to
        their creation (DISCOVERY_WINDOW at least): another incarnation (a process whose state
        directory was lost or replaced, the previous leader with its own store) may have
        submitted them. Not when that range, with its margin for the clocks (creationTimestamp is
        the API server's), starts after ``acting_since``, the moment this controller started
        acting: any job of it was then submitted by this controller, which records each
        submission in the store before sbatch, so the store would know it. A workflow pushed to a
        loop that has run a while is so submitted without slurmdbd scanning every job of the last
        minutes. A first look from a store that holds no submission on the cluster asks by name
        alone: the window could find nothing the store knows, and with others' jobs in it, it
        costs sacct a lookup of TRES names."""
        last = self._accounted_at.get(cluster)
        window: datetime | None = None
        if last is not None:
            starts = [last - ACCOUNTING_MAX_LAG, self.store.oldest_unconfirmed_at(cluster)]
            window = min(start for start in starts if start is not None) - WINDOW_MARGIN
        elif self.store.has_attempts_on(cluster):
            window = (self.store.oldest_unfinished_at(cluster) or now) - WINDOW_MARGIN
        search_from = {stored.uid: min(now - DISCOVERY_WINDOW, resolved.workflow.metadata.creation_timestamp
                                       or stored.created_at) - WINDOW_MARGIN for stored, resolved in workflows}
        unknown = [(stored, resolved) for stored, resolved in workflows
                   if search_from[stored.uid] <= acting_since and not self.store.has_attempts(stored.uid)]
        if not unknown:
            return window, None
        names = sorted({job_name(resolved.workflow.metadata.name, task) for _, resolved in unknown
                        for task in resolved.tasks})
        return window, Discovery(min(search_from[stored.uid] for stored, _ in unknown), tuple(names))

    def _window_names(self, cluster: str, work: ClusterWork) -> list[str]:
        """The job names sacct's window asks for: every job task of the workflows planned on the
        cluster (a state restored from an older copy lacks the submissions made since, whose jobs
        only their tags tell), and every task the store holds a submission of there (of workflows
        not planned this tick too: a manifest broken meanwhile, say)."""
        names = {job_name(resolved.workflow.metadata.name, name) for _, resolved in work.workflows
                 for name, task in resolved.tasks.items() if task.type is TaskType.JOB}
        names.update(job_name(workflow, task) for workflow, task in self.store.submitted_task_names(cluster))
        return sorted(names)

    def _prune(self, removed: Iterable[StoredWorkflow], jobs: Mapping[str, list[ObservedJob]], client: SlurmClient,
               *, now: datetime) -> list[StoredWorkflow]:
        """Cancel the jobs of each removed workflow; those done with (the others wait a tick)."""
        done = []
        for stored in removed:
            try:
                for cancel in prune(stored.uid, jobs.get(stored.uid, [])):
                    with log_context(workflow=f"{stored.namespace}/{stored.name}", task=cancel.task,
                                     job_id=",".join(cancel.job_ids)):
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

    def _forsake(self, cluster: str, removed: Iterable[StoredWorkflow], *, now: datetime) -> TickResult:
        """Removed workflows whose cluster is no longer declared: forgotten, their jobs left alone."""
        for stored in removed:
            log.warning("workflow %s/%s removed, but its cluster %r is no longer declared: its jobs are left as they "
                        "are", stored.namespace, stored.name, cluster)
            self.store.mark_removed(stored.uid, now=now)
        return TickResult(pruned=tuple(removed))

    def _client(self, cluster: SlurmCluster) -> SlurmClient:
        name = cluster.metadata.name
        client = self._clients.get(name)
        if client is not None and client.cluster.spec == cluster.spec:
            return client
        self._drop_client(name)
        spec, key = self.publisher.connection(cluster) if self.publisher is not None else (cluster.spec, None)
        transport = self.metrics.metered(self.connect(spec, private_key=key), cluster=name, kind=spec.transport.value)
        client = SlurmClient(cluster, transport)
        self._clients[name] = client
        self._watches[name] = EndWatch(transport, workdir=cluster.spec.workdir, wake=self.source.wake, name=name)
        # As declared, for reading job output later (reconciler logs, the dashboard).
        self.store.record_cluster(cluster, now=self.clock())
        return client

    def _drop_client(self, name: str) -> None:
        """Close a cluster's client, so the next tick connects afresh."""
        watch = self._watches.pop(name, None)
        if watch is not None:
            watch.close()
        client = self._clients.pop(name, None)
        if client is None:
            return
        try:
            client.close()
        except Exception as exc:  # a connection that is already broken may fail to close
            log.warning("cluster %s: closing its connection: %s", name, exc)


def _result(plans: Iterable[WorkflowPlan], outcome: ClusterOutcome,
            pruned: Iterable[StoredWorkflow] = ()) -> TickResult:
    """A cluster's plans, as carried out, as its part of the tick."""
    plans = list(plans)
    events = {plan.uid: (*plan.events, *outcome.events.get(plan.uid, ())) for plan in plans}
    return TickResult(
        statuses={plan.uid: adjust_status(plan.status, uid=plan.uid, outcome=outcome) for plan in plans
                  if not plan.unchanged},  # an unchanged plan's status is the one saved already
        unchanged={plan.uid: plan.status for plan in plans if plan.unchanged},
        events={uid: items for uid, items in events.items() if items},
        pruned=tuple(pruned),
        requeue_after=min((plan.requeue_after for plan in plans if plan.requeue_after is not None), default=None),
    )


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _cluster_of(stored: StoredWorkflow, desired: DesiredState) -> str:
    """The cluster a removed workflow ran on: as its status says, its manifest's, or the only
    one declared."""
    if stored.status is not None and stored.status.cluster:
        return stored.status.cluster
    named = (stored.resource.get("spec") or {}).get("cluster")
    if isinstance(named, str) and named != AUTO:
        return named
    if len(desired.clusters) == 1:
        return next(iter(desired.clusters))
    return ""
