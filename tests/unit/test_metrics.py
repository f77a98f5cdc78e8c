"""The loop's metrics after whole ticks over in-memory edges (tests/fakes.py): names, labels and
values as a scrape of ``/metrics`` shows them, for Git mode and Kubernetes mode alike (the same
controller records them). The endpoint itself is served by a real HTTP server here, and by a
real ``reconciler run`` against the dev cluster in tests/integration/test_gitops.py."""

from __future__ import annotations

import socket
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.api import FailureKind, TaskPhase, TaskStatus, WorkflowPhase, WorkflowStatus
from reconciler.api.meta import Condition, ConditionStatus
from reconciler.api.workflow import Resources
from reconciler.cli.main import main
from reconciler.core.observed import AttemptRecord, JobKey, JobOutcome
from reconciler.core.plan import Submit
from reconciler.engine.controller import Controller
from reconciler.engine.metrics import Metrics, attention_reason, retry_reason
from reconciler.slurm.transport import CommandTimeout, LocalTransport, TransportError
from reconciler.store.database import Store
from tests.fakes import FakeSlurm, LoginNodes, MemorySource

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def cluster(name: str, *, capacity: str = "") -> str:
    return f"""\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: SlurmCluster
metadata: {{name: {name}}}
spec: {{workdir: /work/{name}{capacity}}}
"""


def workflow(name: str, *, on: str, labels: str = "{}", approval: bool = False) -> str:
    review = "    - {name: review, type: approval, dependsOn: [step]}\n" if approval else ""
    return f"""\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {{name: {name}, labels: {labels}}}
spec:
  cluster: {on}
  defaults: {{resources: {{partition: debug, time: "00:05:00"}}}}
  tasks:
    - {{name: step, script: "echo {name}"}}
{review}"""


def manifests(*documents: str) -> str:
    return "---\n".join(documents)


def loop(store: Store, tmp_path: Path, nodes: LoginNodes, text: str, metrics: Metrics | None = None) -> Controller:
    return Controller(source=MemorySource(text), store=store, state_dir=tmp_path, interval=30.0, connect=nodes,
                      metrics=metrics)


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_tick_records_its_duration_phases_submissions_and_every_command(store, tmp_path, nodes):
    text = manifests(cluster("a"), cluster("b"), workflow("one", on="a", approval=True), workflow("two", on="b"))
    controller = loop(store, tmp_path, nodes, text)
    controller.tick()
    metrics = controller.metrics

    assert sample(metrics, "reconciler_ticks_total") == 1
    assert sample(metrics, "reconciler_tick_seconds_count") == 1
    assert sample(metrics, "reconciler_workflows", phase="Running") == 2
    assert sample(metrics, "reconciler_workflows", phase="Failed") == 0  # every phase, zero or not
    assert sample(metrics, "reconciler_tasks", phase="Submitted") == 2
    assert sample(metrics, "reconciler_tasks", phase="Waiting") == 1  # the approval, after its step
    assert sample(metrics, "reconciler_submissions_total", cluster="a") == 1
    assert sample(metrics, "reconciler_submissions_total", cluster="b") == 1
    assert sample(metrics, "reconciler_events_total", reason="Submitted") == 2
    # sacct once: the jobs of a workflow the store holds no submission of, by name (and no time
    # window, as the store holds no submission on the cluster at all).
    for name, cluster_name, times in (("squeue", "a", 1), ("sacct", "a", 1), ("sbatch", "a", 1), ("squeue", "b", 1)):
        count = sample(metrics, "reconciler_command_seconds_count", cluster=cluster_name, transport="local",
                       command=name)
        assert count == times, (name, cluster_name, count)
    assert sample(metrics, "reconciler_command_seconds_count", cluster="a", transport="local",
                  command="write_file") == 1  # the batch script
    assert sample(metrics, "reconciler_queue_depth", cluster="a") == 0
    assert sample(metrics, "reconciler_seconds_since_observation", cluster="a") is not None
    # The step ran; the approval after it waits for it, not yet for a person.
    assert sample(metrics, "reconciler_workflows_needing_attention", reason="AwaitingApproval") is None


def test_a_failing_command_is_counted_by_kind_and_its_cluster_goes_stale(store, tmp_path, nodes):
    nodes["/work/b"].fail("squeue", TransportError("connection reset"))
    nodes["/work/b"].fail("sacct", CommandTimeout("sacct did not finish within 60s"))
    text = manifests(cluster("a"), cluster("b"), workflow("one", on="a"), workflow("two", on="b"))
    controller = loop(store, tmp_path, nodes, text)
    controller.tick()
    controller.tick()
    metrics = controller.metrics

    assert sample(metrics, "reconciler_command_errors_total", cluster="b", transport="local", command="squeue",
                  kind="transport") == 1  # the second tick waits out b's backoff
    assert sample(metrics, "reconciler_command_errors_total", cluster="b", transport="local", command="sacct",
                  kind="timeout") == 1  # the new workflow's jobs by name (b has no window yet)
    assert sample(metrics, "reconciler_command_seconds_count", cluster="b", transport="local",
                  command="squeue") == 1  # a failed command's time counts too
    assert sample(metrics, "reconciler_submissions_total", cluster="b") is None
    fresh = sample(metrics, "reconciler_seconds_since_observation", cluster="a")
    stale = sample(metrics, "reconciler_seconds_since_observation", cluster="b")
    assert fresh is not None and stale is not None and stale > fresh  # a was looked at again, b not


def test_a_slurm_command_that_exits_non_zero_is_an_error_and_other_commands_answers_are_not():
    metrics = Metrics()
    transport = metrics.metered(FakeSlurm(), cluster="a", kind="ssh")
    assert transport.run(["scontrol", "frobnicate"]).exit_code == 1
    assert transport.run(["test", "-f", "/nowhere"]).exit_code == 127

    assert sample(metrics, "reconciler_command_errors_total", cluster="a", transport="ssh", command="scontrol",
                  kind="exit") == 1
    assert sample(metrics, "reconciler_command_errors_total", cluster="a", transport="ssh", command="test",
                  kind="exit") is None
    assert sample(metrics, "reconciler_command_seconds_count", cluster="a", transport="ssh", command="test") == 1


def test_tasks_beyond_the_clusters_capacity_are_the_queue_depth(store, tmp_path, nodes):
    text = manifests(cluster("a", capacity=", capacity: {maxSubmittedJobs: 1}"), workflow("one", on="a"),
                     workflow("two", on="a"), workflow("three", on="a"))
    controller = loop(store, tmp_path, nodes, text)
    controller.tick()

    assert sample(controller.metrics, "reconciler_queue_depth", cluster="a") == 2
    assert sample(controller.metrics, "reconciler_tasks", phase="Queued") == 2


def test_core_hours_are_split_by_the_chosen_label_and_by_partition(store):
    metrics = Metrics(group_label="team")
    for name, team, seconds in (("one", "optics", 7200), ("two", "optics", 3600), ("three", "", 1800)):
        labels = {"team": team} if team else {}
        stored = store.upsert_workflow(namespace="default", name=name, now=NOW, revision=None, source_file=None,
                                       resource={"metadata": {"name": name, "labels": labels},
                                                 "spec": {"defaults": {"resources": {"partition": "debug"}},
                                                          "tasks": [{"name": "step"}]}})
        status = WorkflowStatus(phase=WorkflowPhase.SUCCEEDED, tasks={
            "step": TaskStatus(phase=TaskPhase.SUCCEEDED, billed_core_seconds=seconds)})
        store.save_statuses({stored.uid: status})

    # A task's own partition wins over the workflow's defaults.
    tasks = [{"name": "prep"}, {"name": "step", "resources": {"partition": "billed"}}]
    stored = store.upsert_workflow(namespace="default", name="four", now=NOW, revision=None, source_file=None,
                                   resource={"metadata": {"name": "four"},
                                             "spec": {"defaults": {"resources": {"partition": "debug"}},
                                                      "tasks": tasks}})
    store.save_statuses({stored.uid: WorkflowStatus(phase=WorkflowPhase.SUCCEEDED, tasks={
        "prep": TaskStatus(phase=TaskPhase.SUCCEEDED, billed_core_seconds=360),
        "step": TaskStatus(phase=TaskPhase.SUCCEEDED, billed_core_seconds=3600)})})

    metrics.tick(seconds=0.1, events={}, workflows=store.active_workflows())

    assert sample(metrics, "reconciler_core_hours", group="optics", partition="debug") == 3.0
    assert sample(metrics, "reconciler_core_hours", group="", partition="debug") == 0.6
    assert sample(metrics, "reconciler_core_hours", group="", partition="billed") == 1.0
    assert sample(metrics, "reconciler_workflows", phase="Succeeded") == 4


def test_a_workflow_needs_attention_by_its_condition_else_by_an_approval_or_stalled():
    def condition(kind: str, status: ConditionStatus, reason: str) -> Condition:
        return Condition(type=kind, status=status, reason=reason, last_transition_time=NOW)

    waiting = {"review": TaskStatus(phase=TaskPhase.AWAITING_APPROVAL)}
    assert attention_reason(WorkflowStatus(tasks=waiting)) == "AwaitingApproval"
    assert attention_reason(WorkflowStatus(conditions=[condition("Stalled", ConditionStatus.TRUE,
                                                                 "BudgetExceeded")])) == "BudgetExceeded"
    assert attention_reason(WorkflowStatus()) is None
    # Where the loop sets NeedsAttention, it alone decides.
    marked = condition("NeedsAttention", ConditionStatus.TRUE, "ApprovalWaiting")
    assert attention_reason(WorkflowStatus(conditions=[marked])) == "ApprovalWaiting"
    cleared = condition("NeedsAttention", ConditionStatus.FALSE, "NothingToDo")
    assert attention_reason(WorkflowStatus(conditions=[cleared], tasks=waiting)) is None


def test_a_later_attempt_is_a_retry_named_by_the_failure_before_it():
    def record(attempt: int, fingerprint: str, outcome: JobOutcome | None) -> AttemptRecord:
        return AttemptRecord(key=JobKey("step", attempt), fingerprint=fingerprint, indices=None, job_id=str(attempt),
                             recorded_at=NOW, outcome=outcome)

    timed_out = JobOutcome(phase=TaskPhase.FAILED, failure=FailureKind.TIMEOUT)
    records = [record(1, "f1", timed_out), record(2, "f1", JobOutcome(phase=TaskPhase.CANCELLED))]
    assert retry_reason(records, JobKey("step", 1), "f1") is None
    assert retry_reason(records, JobKey("step", 2), "f1") == "TIMEOUT"
    assert retry_reason(records, JobKey("step", 3), "f1") == "Cancelled"
    assert retry_reason(records, JobKey("step", 2), "f2") is None  # the spec changed: a new run, no retry

    metrics = Metrics()

    def submit(attempt: int) -> Submit:
        return Submit(uid="u1", key=JobKey("step", attempt), fingerprint="f1", resources=Resources(), indices=None,
                      parallelism=None)

    metrics.submitted("a", [submit(1), submit(2), submit(3)], attempts=lambda uid: records if uid == "u1" else [])
    assert sample(metrics, "reconciler_submissions_total", cluster="a") == 3
    assert sample(metrics, "reconciler_retries_total", cluster="a", reason="TIMEOUT") == 1
    assert sample(metrics, "reconciler_retries_total", cluster="a", reason="Cancelled") == 1


def test_the_endpoint_serves_metrics_and_health(store, tmp_path, nodes):
    metrics = Metrics(stale_after=60)
    server = metrics.serve(port=0)
    try:
        loop(store, tmp_path, nodes, manifests(cluster("a"), workflow("one", on="a")), metrics=metrics).tick()
        base = f"http://127.0.0.1:{server.server_port}"
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as answer:
            assert answer.status == 200
    finally:
        server.shutdown()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    squeue = [s for s in families["reconciler_command_seconds"].samples
              if s.name == "reconciler_command_seconds_count" and s.labels.get("command") == "squeue"]
    assert [(s.labels["cluster"], s.value) for s in squeue] == [("a", 1.0)]
    assert server.server_address[0] == "127.0.0.1"  # loopback unless told otherwise


def test_every_file_operation_of_a_transport_is_timed_too(tmp_path: Path):
    metrics = Metrics()
    transport = metrics.metered(LocalTransport(), cluster="a", kind="local")
    target = tmp_path / "out" / "log.txt"
    transport.make_dirs(str(target.parent))
    transport.write_file(str(target), b"hello\n")
    assert transport.read_file(str(target), offset=1, limit=3) == b"ell"
    assert transport.fetch(str(target.parent), ["*.txt"], tmp_path / "fetched") == [tmp_path / "fetched" / "log.txt"]
    for operation in ("make_dirs", "write_file", "read_file", "fetch"):
        assert sample(metrics, "reconciler_command_seconds_count", cluster="a", transport="local",
                      command=operation) == 1, operation
    with pytest.raises(TransportError):
        transport.write_file(str(target / "under-a-file"), b"")  # its parent is a file
    assert sample(metrics, "reconciler_command_errors_total", cluster="a", transport="local", command="write_file",
                  kind="transport") == 1


def test_a_cluster_left_without_work_is_no_longer_shown_as_stale(store, tmp_path, nodes):
    source_text = manifests(cluster("a"), cluster("b"), workflow("one", on="a"), workflow("two", on="b"))
    controller = loop(store, tmp_path, nodes, source_text)
    controller.tick()
    assert sample(controller.metrics, "reconciler_seconds_since_observation", cluster="b") is not None

    controller.source.text = manifests(cluster("a"), cluster("b"), workflow("one", on="a"))
    controller.tick()  # prunes two: b is looked at once more
    assert sample(controller.metrics, "reconciler_seconds_since_observation", cluster="b") is not None
    controller.tick()
    assert sample(controller.metrics, "reconciler_seconds_since_observation", cluster="b") is None
    assert sample(controller.metrics, "reconciler_seconds_since_observation", cluster="a") is not None


def test_run_refuses_a_metrics_port_in_use_and_leaves_its_state_unlocked(tmp_path, capsys):
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "cluster.yaml").write_text(cluster("a"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        argv = ["run", "--source", str(plans), "--state-dir", str(tmp_path / "state"), "--once"]
        assert main([*argv, "--metrics-port", str(taken.getsockname()[1])]) == 2
    assert "cannot serve metrics on 127.0.0.1:" in capsys.readouterr().err
    assert main(argv) == 0  # the state directory was not left locked
