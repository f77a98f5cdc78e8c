"""A SlurmCluster's status: worked out from what one tick saw (pure), handed to the publisher by
the controller for every cluster the tick looked at, and written by the Kubernetes publisher
by server-side apply only when it changed. The same against a real API server and the dev
cluster: tests/integration/test_kube_status.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler.api import API_VERSION, ConditionStatus, PartitionSeen, SlurmCluster, SlurmClusterStatus, TaskPhase
from reconciler.core.clusterstatus import NotReady, job_counts, observed_cluster_status, unready_cluster_status
from reconciler.core.observed import ClusterView, JobKey, JobOutcome, ObservedJob, PartitionLimits
from reconciler.engine.controller import ClusterReport, Controller
from reconciler.engine.metrics import Metrics
from reconciler.kube.publisher import KubernetesPublisher
from reconciler.kube.source import KubernetesSource
from reconciler.slurm.commands import command_name
from reconciler.store.database import Store
from tests.fakes import FakeCoreV1, FakeCustomObjects, LoginNodes, MemoryPublisher, MemorySource

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)


def job(phase: TaskPhase, indices: tuple[int, ...] | None = None) -> ObservedJob:
    return ObservedJob(key=JobKey("task", 1), job_id="1", fingerprint=None, indices=indices,
                       outcome=JobOutcome(phase=phase))


def view(**changes: Any) -> ClusterView:
    base: dict[str, Any] = {
        "name": "dev", "reachable": True, "accounting": True, "max_array_size": 1001, "slurm_version": "22.05.8",
        "partitions": (PartitionLimits(name="debug", max_time_seconds=3600, default=True, state="UP", total_cpus=4),
                       PartitionLimits(name="long", max_time_seconds=None, default=False, state="DOWN",
                                       total_cpus=4)),
    }
    return ClusterView(**{**base, **changes})


def ready(status: SlurmClusterStatus):
    return next(c for c in status.conditions if c.type == "Ready")


def test_jobs_queued_held_and_running_are_counted_by_element():
    jobs = [job(TaskPhase.SUBMITTED, (0, 1, 2)), job(TaskPhase.HELD), job(TaskPhase.RUNNING),
            job(TaskPhase.RUNNING, (7,)), job(TaskPhase.SUCCEEDED), job(TaskPhase.FAILED, (3, 4))]
    assert job_counts(jobs) == (4, 2)


def test_a_reachable_cluster_is_ready_with_what_was_seen():
    status = observed_cluster_status(view(), [job(TaskPhase.RUNNING)], generation=3, previous=None, now=NOW)

    assert (status.observed_generation, status.slurm_version, status.max_array_size) == (3, "22.05.8", 1001)
    assert status.partitions == [PartitionSeen(name="debug", state="UP"), PartitionSeen(name="long", state="DOWN")]
    assert (status.queued_jobs, status.running_jobs) == (0, 1)
    condition = ready(status)
    assert (condition.status, condition.reason, condition.message) == (
        ConditionStatus.TRUE, "Reachable", "Slurm 22.05.8 answered")
    assert (condition.last_transition_time, condition.observed_generation) == (NOW, 3)


def test_the_same_observation_later_gives_the_same_status():
    first = observed_cluster_status(view(), [], generation=1, previous=None, now=NOW)
    assert observed_cluster_status(view(), [], generation=1, previous=first, now=LATER) == first


def test_accounting_that_cannot_be_read_is_said_while_the_cluster_stays_ready():
    status = observed_cluster_status(view(accounting=False, error="sacct failed (1): slurmdbd down"), [],
                                     generation=1, previous=None, now=NOW)
    assert ready(status).status is ConditionStatus.TRUE
    assert ready(status).message == "Slurm 22.05.8 answered; finished jobs cannot be read: sacct failed (1): " \
                                    "slurmdbd down"


def test_an_unreachable_cluster_keeps_the_facts_seen_and_loses_the_counts():
    seen = observed_cluster_status(view(), [job(TaskPhase.SUBMITTED)], generation=1, previous=None, now=NOW)

    status = observed_cluster_status(view(reachable=False, error="squeue on ssh://login:2222: timed out"), [],
                                     generation=2, previous=seen, now=LATER)

    assert (status.slurm_version, status.max_array_size, status.partitions) == (
        seen.slurm_version, seen.max_array_size, seen.partitions)
    assert (status.queued_jobs, status.running_jobs, status.observed_generation) == (None, None, 2)
    condition = ready(status)
    assert (condition.status, condition.reason, condition.message, condition.last_transition_time) == (
        ConditionStatus.FALSE, "Unreachable", "squeue on ssh://login:2222: timed out", LATER)


def test_a_cluster_never_reached_says_why():
    status = unready_cluster_status(NotReady.CONNECTION_FAILED, "cannot connect to cluster hpc: refused",
                                    generation=1, previous=None, now=NOW)
    assert status.to_wire() == {
        "observedGeneration": 1, "partitions": [],
        "conditions": [{"type": "Ready", "status": "False", "reason": "ConnectionFailed",
                        "message": "cannot connect to cluster hpc: refused", "observedGeneration": 1,
                        "lastTransitionTime": "2026-01-01T12:00:00Z"}],
    }


# -- the controller hands each cluster's status to the publisher --------------------------------


CLUSTERS = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: SlurmCluster
metadata: {name: a}
spec: {workdir: /work/a}
---
apiVersion: hpc.reconciler.dev/v1alpha1
kind: SlurmCluster
metadata: {name: b}
spec: {workdir: /work/b}
---
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: one}
spec:
  cluster: a
  defaults: {resources: {partition: debug, time: "00:05:00"}}
  tasks: [{name: step, script: "true"}]
---
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: two}
spec:
  cluster: b
  defaults: {resources: {partition: debug, time: "00:05:00"}}
  tasks: [{name: step, script: "true"}]
"""


def test_a_tick_reports_every_cluster_it_looked_at(store: Store, tmp_path: Path, nodes: LoginNodes):
    publisher = MemoryPublisher()
    publisher.break_cluster("b", "Secret default/login-b not found: create it or fix spec.ssh.keySecretRef")
    loop = Controller(source=MemorySource(CLUSTERS), store=store, state_dir=tmp_path, interval=30.0,
                      publisher=publisher, connect=nodes)

    loop.tick()  # submits one.step on a: the queue was empty when the tick looked
    loop.tick()

    reports = {report.cluster.metadata.name: report.status for report in publisher.clusters}
    first, second = (report.status for report in publisher.clusters if report.cluster.metadata.name == "a")
    assert ready(first).last_transition_time == ready(second).last_transition_time  # Ready did not flip
    assert ready(reports["a"]).status is ConditionStatus.TRUE
    assert (reports["a"].slurm_version, reports["a"].queued_jobs, reports["a"].running_jobs) == ("22.05.8", 1, 0)
    assert [p.name for p in reports["a"].partitions] == ["debug"]
    b = ready(reports["b"])
    assert (b.status, b.reason) == (ConditionStatus.FALSE, "ConnectionFailed")
    assert "Secret default/login-b not found" in b.message
    # The counts come from each tick's one squeue, the version and partitions from the limits the
    # client reads every few minutes anyway, at once with the first tick's squeue and sacct (by
    # name, for the workflow the store holds no submission of): no Slurm call of their own.
    commands = [command_name(call) for call in nodes["/work/a"].calls if call[0] not in ("write_file", "make_dirs")]
    # (sacctmgr's answer is not waited for: its two calls may come before or after the sbatch.)
    assert sorted(commands) == ["sacct", "sacct", "sacctmgr", "sacctmgr", "sbatch", "scontrol", "scontrol",
                                "squeue", "squeue"]


# -- the Kubernetes publisher writes it -----------------------------------------------------------


def test_a_cluster_status_is_applied_once_while_it_does_not_change(tmp_path: Path, store: Store):
    custom = FakeCustomObjects()
    source = KubernetesSource(custom, namespace="default")  # informers never started
    wire = {"apiVersion": API_VERSION, "kind": "SlurmCluster",
            "metadata": {"name": "dev", "namespace": "default", "uid": "uid-dev", "generation": 1},
            "spec": {"workdir": "/work"}}
    source.informers["SlurmCluster"].remember(custom.add(wire))
    publisher = KubernetesPublisher(custom=custom, core=FakeCoreV1(), source=source, state_dir=tmp_path,
                                    metrics=Metrics(stale_after=60))
    status = observed_cluster_status(view(), [], generation=1, previous=None, now=NOW)
    report = ClusterReport(SlurmCluster.model_validate(wire), status)

    for _ in range(3):
        assert publisher.publish(statuses={}, events={}, pruned=[], store=store, clusters=[report]) == {}

    [call] = custom.status_calls
    assert (call["plural"], call["field_manager"], call["force"], call["_content_type"]) == (
        "slurmclusters", "slurm-reconciler", True, "application/apply-patch+yaml")
    assert call["body"] == {"apiVersion": API_VERSION, "kind": "SlurmCluster",
                            "metadata": {"name": "dev", "namespace": "default"}, "status": status.to_wire()}
    assert custom.objects[("default", "dev")]["status"] == status.to_wire()


def test_a_cluster_status_that_cannot_be_written_is_written_by_the_next_publish(tmp_path: Path, store: Store):
    custom = FakeCustomObjects()
    source = KubernetesSource(custom, namespace="default")
    wire = {"apiVersion": API_VERSION, "kind": "SlurmCluster",
            "metadata": {"name": "dev", "namespace": "default", "uid": "uid-dev", "generation": 1},
            "spec": {"workdir": "/work"}}
    source.informers["SlurmCluster"].remember(custom.add(wire))
    publisher = KubernetesPublisher(custom=custom, core=FakeCoreV1(), source=source, state_dir=tmp_path,
                                    metrics=Metrics(stale_after=60))
    report = ClusterReport(SlurmCluster.model_validate(wire),
                           observed_cluster_status(view(), [], generation=1, previous=None, now=NOW))
    custom.refuse("dev", call="status", status=403, reason="Forbidden")

    assert publisher.publish(statuses={}, events={}, pruned=[], store=store, clusters=[report]) == {}
    assert "status" not in custom.objects[("default", "dev")]

    custom.mend("dev", call="status")
    publisher.publish(statuses={}, events={}, pruned=[], store=store, clusters=[report])
    assert custom.objects[("default", "dev")]["status"] == report.status.to_wire()
