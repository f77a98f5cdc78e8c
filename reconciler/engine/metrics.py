"""The loop's Prometheus metrics and its health endpoint, on one port, in both modes.

Called by the controller (every tick: its duration, the events it recorded, the state of every
workflow the store holds, each cluster's observation and submissions), by the transports the
controller opens (wrapped in :class:`MeteredTransport`: every Slurm and SSH command's latency
and errors), by the Kubernetes publisher (the events it adds) and by
``reconciler run`` and ``reconciler operator``, which serve ``/metrics`` and ``/healthz``.

What a scraper can rely on:

* the gauges that describe the workflows (phases, queue depth, core-hours, attention) are
  computed once per tick from the store and swapped in whole, so one scrape never mixes two
  ticks, and a label set that no longer applies disappears instead of keeping its last value;
* label values come from bounded sets: phases, cluster and partition names, the commands the
  reconciler itself runs, failure kinds, and the values of at most one workflow label
  (``group_label``, chosen by the operator of the loop), never workflow or task names;
* ``/healthz`` is 200 while the process is sound: before the loop starts (a standby replica)
  always, afterwards as long as a tick finished within ``stale_after`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from ..api import TaskPhase, WorkflowPhase, WorkflowStatus
from ..core.observed import AttemptRecord, JobKey
from ..core.plan import Event, Submit
from ..slurm.commands import command_name
from ..slurm.transport import CommandResult, CommandTimeout, Transport, TransportError
from ..store.database import StoredWorkflow

# Seconds: from a local squeue (milliseconds) to an sbatch over a slow SSH link.
COMMAND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
TICK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# A non-zero exit of these is Slurm refusing or failing; of anything else (``test -f``,
# ``realpath -e``) it is an answer, not an error.
SLURM_COMMANDS = frozenset({"sbatch", "squeue", "sacct", "scontrol", "scancel", "sacctmgr", "sinfo", "sprio"})
# The condition another part of the loop sets on a workflow that waits for a person; where it is
# absent, an approval waiting or a Stalled condition is counted instead.
NEEDS_ATTENTION = "NeedsAttention"

_T = TypeVar("_T")


class Metrics:
    """Every metric of one loop, in a registry of its own (so tests and two loops in one process
    never share counters). ``group_label``: the workflow label whose values split core-hours."""

    def __init__(self, *, stale_after: float = 300.0, group_label: str | None = None) -> None:
        self.registry = CollectorRegistry()
        self.stale_after = stale_after
        self.group_label = group_label
        r = self.registry
        self.leader = Gauge("reconciler_leader", "1 while this replica holds the leader lease", registry=r)
        self.ticks = PromCounter("reconciler_ticks", "control-loop ticks carried out", registry=r)
        self.tick_failures = PromCounter("reconciler_tick_failures", "ticks that failed as a whole (retried with "
                                         "backoff)", registry=r)
        self.tick_seconds = Histogram("reconciler_tick_seconds", "time one tick took", registry=r,
                                      buckets=TICK_BUCKETS)
        self.events = PromCounter("reconciler_events", "events recorded, by reason", ["reason"], registry=r)
        self.submissions = PromCounter("reconciler_submissions", "jobs submitted (sbatch accepted them)",
                                       ["cluster"], registry=r)
        self.retries = PromCounter("reconciler_retries", "submissions of a task's next attempt after a failed one, "
                                   "by the failure kind of the attempt before", ["cluster", "reason"], registry=r)
        self.command_seconds = Histogram("reconciler_command_seconds", "time one Slurm or SSH command took, by "
                                         "command", ["cluster", "transport", "command"], registry=r,
                                         buckets=COMMAND_BUCKETS)
        self.command_errors = PromCounter("reconciler_command_errors", "Slurm and SSH commands that failed: exit "
                                          "(a Slurm command exited non-zero), timeout, or transport (no answer)",
                                          ["cluster", "transport", "command", "kind"], registry=r)
        self.state_write_failures = PromCounter("reconciler_state_write_failures", "ticks stopped because the state "
                                                "directory had no room for a write (retried each interval)",
                                                registry=r)
        self._state = _StateCollector()
        r.register(self._state)
        self._last_tick = time.monotonic()
        self._looping = False

    # -- what the controller reports ---------------------------------------------------------

    def tick(self, *, seconds: float, events: Mapping[str, Sequence[Event]],
             workflows: Iterable[StoredWorkflow], clusters: Iterable[str] | None = None) -> None:
        """One tick done: how long it took, the events it recorded, every active workflow as the
        store holds it now, and the clusters it had work on (a cluster left with none is no
        longer observed, and no longer shown as growing stale; None keeps them all)."""
        self.ticks.inc()
        self.tick_seconds.observe(seconds)
        self.count_events(events)
        self._state.swap(workflow_state(workflows, group_label=self.group_label),
                         clusters=None if clusters is None else frozenset(clusters))
        self._last_tick = time.monotonic()

    def count_events(self, events: Mapping[str, Sequence[Event]]) -> None:
        for items in events.values():
            for event in items:
                self.events.labels(reason=event.reason).inc()

    def observed(self, cluster: str, *, ok: bool) -> None:
        """A look at ``cluster`` (squeue and sacct); ``ok`` when both answered."""
        self._state.observed(cluster, ok=ok, at=time.monotonic())

    def submitted(self, cluster: str, submits: Iterable[Submit],
                  attempts: Callable[[str], Sequence[AttemptRecord]]) -> None:
        """Submissions that went out on ``cluster``; ``attempts`` reads a workflow's recorded
        attempts, which say what a retry follows (read only for later attempts)."""
        for submit in submits:
            self.submissions.labels(cluster=cluster).inc()
            if submit.key.attempt <= 1:
                continue
            reason = retry_reason(attempts(submit.uid), submit.key, submit.fingerprint)
            if reason is not None:
                self.retries.labels(cluster=cluster, reason=reason).inc()

    def metered(self, transport: Transport, *, cluster: str, kind: str) -> MeteredTransport:
        return MeteredTransport(transport, metrics=self, cluster=cluster, kind=kind)

    # -- health ------------------------------------------------------------------------------

    def loop_started(self) -> None:
        """From now on /healthz says whether ticks keep finishing."""
        self._looping = True
        self._last_tick = time.monotonic()

    def became_leader(self) -> None:
        self.leader.set(1)
        self.loop_started()

    def healthy(self) -> bool:
        if not self._looping:  # a standby has no loop to be stuck in
            return True
        return time.monotonic() - self._last_tick < self.stale_after

    def serve(self, *, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
        """Serve /metrics and /healthz on a thread of their own; the server (``server_port`` is
        the port bound, for port 0). Stop it with ``shutdown()``."""
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/metrics":
                    body, status, kind = generate_latest(metrics.registry), 200, CONTENT_TYPE_LATEST
                elif self.path.split("?")[0] == "/healthz":
                    ok = metrics.healthy()
                    body, status, kind = (b"ok\n" if ok else b"stalled\n"), (200 if ok else 503), "text/plain"
                else:
                    body, status, kind = b"not found\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # probes every few seconds
                pass

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        return server


# -- the state of the workflows, as one snapshot per tick --------------------------------------


@dataclass(frozen=True)
class WorkflowState:
    """What the per-tick gauges show, computed from the store in one go."""

    workflows: Mapping[str, int] = field(default_factory=dict)  # phase -> count
    tasks: Mapping[str, int] = field(default_factory=dict)  # phase -> count
    queued: Mapping[str, int] = field(default_factory=dict)  # cluster -> tasks in the reconciler's queue
    core_hours: Mapping[tuple[str, str], float] = field(default_factory=dict)  # (group, partition) -> hours
    attention: Mapping[str, int] = field(default_factory=dict)  # reason -> workflows


def workflow_state(workflows: Iterable[StoredWorkflow], *, group_label: str | None) -> WorkflowState:
    phases: Counter[str] = Counter()
    tasks: Counter[str] = Counter()
    queued: Counter[str] = Counter()
    hours: dict[tuple[str, str], float] = {}
    attention: Counter[str] = Counter()
    for stored in workflows:
        status = stored.status or WorkflowStatus()
        phases[status.phase.value] += 1
        cluster = cluster_of(stored)
        group = stored.labels.get(group_label, "") if group_label else ""
        partition = _Partitions(stored)
        for name, task in status.tasks.items():
            tasks[task.phase.value] += 1
            if task.phase is TaskPhase.QUEUED:
                queued[cluster] += 1
            if task.billed_core_seconds:
                key = (group, partition.of(name))
                hours[key] = hours.get(key, 0.0) + task.billed_core_seconds / 3600
        reason = attention_reason(status)
        if reason is not None:
            attention[reason] += 1
    return WorkflowState(workflows=dict(phases), tasks=dict(tasks), queued=dict(queued), core_hours=dict(hours),
                         attention=dict(attention))


def cluster_of(stored: StoredWorkflow) -> str:
    """Where a workflow runs: where it was placed, else the cluster its spec names."""
    if stored.status is not None and stored.status.cluster:
        return stored.status.cluster
    named = (stored.resource.get("spec") or {}).get("cluster")
    return named if isinstance(named, str) else ""


class _Partitions:
    """The partition each task of one workflow runs in: as chosen for it, else as declared on it
    or in the workflow's defaults; "" for the cluster's default partition. The declared tasks
    are indexed once per workflow, not searched once per task."""

    def __init__(self, stored: StoredWorkflow) -> None:
        self._status = stored.status
        spec = stored.resource.get("spec") or {}
        self._declared: dict[str, dict] = {}
        for declared in spec.get("tasks") or []:
            self._declared.setdefault(declared.get("name"), declared)
        self._defaults = (spec.get("defaults") or {}).get("resources") or {}

    def of(self, task: str) -> str:
        status = self._status.tasks.get(task) if self._status is not None else None
        if status is not None and status.choice is not None and status.choice.partition:
            return status.choice.partition
        for resources in ((self._declared.get(task) or {}).get("resources") or {}, self._defaults):
            partition = resources.get("partition")
            if isinstance(partition, str) and partition != "auto":
                return partition
        return ""


def attention_reason(status: WorkflowStatus) -> str | None:
    """Why a workflow waits for a person, None when it does not: the NeedsAttention condition's
    reason where the status carries that condition, else an approval waiting or a Stalled
    condition."""
    conditions = {c.type: c for c in status.conditions}
    marked = conditions.get(NEEDS_ATTENTION)
    if marked is not None:
        return marked.reason if marked.status.value == "True" else None
    if any(task.phase is TaskPhase.AWAITING_APPROVAL for task in status.tasks.values()):
        return "AwaitingApproval"
    stalled = conditions.get("Stalled")
    if stalled is not None and stalled.status.value == "True":
        return stalled.reason
    return None


def retry_reason(records: Sequence[AttemptRecord], key: JobKey, fingerprint: str) -> str | None:
    """Why a submission of ``key`` is a retry: the failure kind (else the phase) of the task's
    attempt before, with the same inputs; None for a first attempt, or one after a change."""
    if key.attempt <= 1:
        return None
    before = [r for r in records if r.key.task == key.task and r.key.attempt == key.attempt - 1
              and r.fingerprint == fingerprint]
    if not before:
        return None
    failures = [r.outcome.failure.value for r in before if r.outcome is not None and r.outcome.failure is not None]
    if failures:
        return failures[0]
    ended = [r.outcome.phase.value for r in before if r.outcome is not None]
    return ended[0] if ended else "Unknown"


class _StateCollector(Collector):
    """The per-tick gauges, and each cluster's time since it was last observed (computed at
    scrape time, so it grows between ticks as a stale cluster's should)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = WorkflowState()
        self._since: dict[str, float] = {}  # cluster -> monotonic time of its last good look (or first try)

    def swap(self, state: WorkflowState, *, clusters: frozenset[str] | None) -> None:
        with self._lock:
            self._state = state
            if clusters is not None:
                self._since = {name: at for name, at in self._since.items() if name in clusters}

    def observed(self, cluster: str, *, ok: bool, at: float) -> None:
        with self._lock:
            if ok or cluster not in self._since:
                self._since[cluster] = at

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            state, since = self._state, dict(self._since)
        workflows = GaugeMetricFamily("reconciler_workflows", "workflows by phase", labels=["phase"])
        for phase in WorkflowPhase:
            workflows.add_metric([phase.value], state.workflows.get(phase.value, 0))
        yield workflows
        tasks = GaugeMetricFamily("reconciler_tasks", "tasks of the active workflows by phase", labels=["phase"])
        for task_phase in TaskPhase:
            tasks.add_metric([task_phase.value], state.tasks.get(task_phase.value, 0))
        yield tasks
        queued = GaugeMetricFamily("reconciler_queue_depth", "tasks waiting in the reconciler's own queue for "
                                   "the cluster's capacity (phase Queued)", labels=["cluster"])
        for cluster in sorted({*since, *state.queued}):
            queued.add_metric([cluster], state.queued.get(cluster, 0))
        yield queued
        hours = GaugeMetricFamily("reconciler_core_hours", "core-hours billed so far to the active workflows' tasks, "
                                  "by the value of the group label and by partition", labels=["group", "partition"])
        for (group, partition), value in sorted(state.core_hours.items()):
            hours.add_metric([group, partition], value)
        yield hours
        attention = GaugeMetricFamily("reconciler_workflows_needing_attention", "workflows waiting for a person, "
                                      "by reason", labels=["reason"])
        for reason, count in sorted(state.attention.items()):
            attention.add_metric([reason], count)
        yield attention
        stale = GaugeMetricFamily("reconciler_seconds_since_observation", "seconds since the cluster was last "
                                  "observed successfully (squeue and sacct)", labels=["cluster"])
        now = time.monotonic()
        for cluster, at in sorted(since.items()):
            stale.add_metric([cluster], now - at)
        yield stale


# -- every command's latency and errors -------------------------------------------------------


class MeteredTransport:
    """A transport that times every command and file operation of the one it wraps, and counts
    the ones that fail; otherwise exactly the transport it wraps."""

    def __init__(self, inner: Transport, *, metrics: Metrics, cluster: str, kind: str) -> None:
        self.inner = inner
        self.description = inner.description
        self._metrics = metrics
        self._labels = {"cluster": cluster, "transport": kind}

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, stdin: str | None = None,
            timeout: float = 60.0) -> CommandResult:
        command = command_name(argv)
        result = self._timed(command, lambda: self.inner.run(argv, env=env, stdin=stdin, timeout=timeout))
        if result.exit_code != 0 and command in SLURM_COMMANDS:
            self._metrics.command_errors.labels(**self._labels, command=command, kind="exit").inc()
        return result

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        self._timed("write_file", lambda: self.inner.write_file(path, data, mode=mode))

    def make_dirs(self, *paths: str) -> None:
        self._timed("make_dirs", lambda: self.inner.make_dirs(*paths))

    def fetch(self, directory: str, patterns: Sequence[str], destination: Path) -> list[Path]:
        return self._timed("fetch", lambda: self.inner.fetch(directory, patterns, destination))

    def read_file(self, path: str, *, offset: int, limit: int) -> bytes | None:
        return self._timed("read_file", lambda: self.inner.read_file(path, offset=offset, limit=limit))

    def watch_names(self, directory: str, found: Callable[[list[str]], None], stop: threading.Event) -> None:
        self.inner.watch_names(directory, found, stop)  # runs for hours: timing it would say nothing

    def close(self) -> None:
        self.inner.close()

    def _timed(self, command: str, call: Callable[[], _T]) -> _T:
        started = time.monotonic()
        try:
            return call()
        except TransportError as exc:
            kind = "timeout" if isinstance(exc, CommandTimeout) else "transport"
            self._metrics.command_errors.labels(**self._labels, command=command, kind=kind).inc()
            raise
        finally:
            self._metrics.command_seconds.labels(**self._labels, command=command).observe(time.monotonic() - started)
