"""The Slurm backend against the real dev cluster, through both transports (local and ssh)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from reconciler.api import FailureKind, SlurmCluster, TaskPhase
from reconciler.cli.submit import Submission, follow, new_uid, submit_workflow
from reconciler.core.observed import DONE_PHASES, ObservedJob
from reconciler.devcluster import DevCluster
from reconciler.devcluster.cluster import cgroup_v1_memory
from reconciler.manifests.loader import load_text
from reconciler.manifests.resolve import ResolvedWorkflow, resolve
from reconciler.slurm.client import SlurmClient, SubmitRequest
from reconciler.slurm.commands import command_name
from reconciler.slurm.tags import JobTag
from reconciler.slurm.transport import CommandResult, Transport, open_transport
from tests.integration.gitops_world import unique, wait_until, workflow_header

pytestmark = pytest.mark.slurm

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WAIT = 120.0


def resolved_from(text: str, cluster: SlurmCluster) -> ResolvedWorkflow:
    manifest = cluster_yaml(cluster) + "---\n" + text
    loaded = load_text(manifest, filename="plan.yaml")
    assert not loaded.errors, loaded.errors
    resolution = resolve(loaded.resources)
    assert not resolution.invalid, resolution.invalid[0].errors
    [workflow] = resolution.workflows
    return workflow


def cluster_yaml(cluster: SlurmCluster) -> str:
    import io

    from ruamel.yaml import YAML

    stream = io.StringIO()
    YAML(typ="safe", pure=True).dump(cluster.to_wire(), stream)
    return stream.getvalue()


def one_task(name: str, body: str, *, extra: str = "") -> str:
    return workflow_header(name, memory="50M") + f"""\
    - name: main
      script: |
        {body}
{extra}"""


@pytest.fixture(scope="session")
def client(slurm_cluster: SlurmCluster) -> Iterator[SlurmClient]:
    client = SlurmClient(slurm_cluster, open_transport(slurm_cluster.spec))
    yield client
    client.close()


def follow_all(client: SlurmClient, submission: Submission):
    return follow(client, submission, poll_seconds=1.0, timeout=WAIT)


def wait_for(client: SlurmClient, submission: Submission, predicate, *, timeout: float = WAIT) -> list[ObservedJob]:
    deadline = time.monotonic() + timeout
    since = submission.submitted_at - timedelta(minutes=1)
    ids = {j for ids in submission.jobs.values() for j in ids}
    while time.monotonic() < deadline:
        observation = client.observe(since=since, job_ids=sorted(ids))
        jobs = [j for j in observation.jobs() if j.job_id in ids]
        if predicate(jobs):
            return jobs
        time.sleep(0.5)
    raise AssertionError(f"condition not reached within {timeout}s; last seen: {jobs}")


def test_cluster_limits_and_partitions_are_read(client: SlurmClient):
    info = client.info(refresh=True)
    assert info.limits is not None and info.limits.max_array_size == 201
    [debug] = [p for p in info.partitions if p.name == "debug"]
    assert debug.default and debug.max_time_seconds == 3600


def test_three_step_chain_runs_to_completion_with_native_dependencies(client: SlurmClient, dev_cluster: DevCluster,
                                                                        overtime):
    text = (EXAMPLES / "ultrasound-plan.yaml").read_text()
    workflow = resolved_from(text, client.cluster)
    submission = submit_workflow(workflow, client)
    assert set(submission.jobs) == {"preprocess", "simulate", "postprocess"} and not submission.blocked

    # All three are in Slurm's queue at once: the chain is Slurm's, not the loop's.
    ids = sorted(i for job_ids in submission.jobs.values() for i in job_ids)
    observation = client.observe(since=submission.submitted_at - timedelta(minutes=1), job_ids=ids)
    queued = {j.key.task: j for j in observation.jobs() if j.key.task in submission.jobs and j.job_id in ids}
    assert set(queued) == set(submission.jobs)
    assert queued["postprocess"].phase is TaskPhase.SUBMITTED
    # slurmctld states the pending reason once it has evaluated the job (reason None until then);
    # the short chain may be past this step by the time it does, and then the times below speak.
    [waiting] = wait_for(client, Submission(uid=submission.uid, jobs={"postprocess": submission.jobs["postprocess"]}),
                         lambda jobs: len(jobs) == 1 and (jobs[0].outcome.reason is not None
                                                          or jobs[0].phase is not TaskPhase.SUBMITTED), timeout=30)
    if waiting.phase is TaskPhase.SUBMITTED:
        assert waiting.outcome.reason == "Dependency"

    outcomes = follow_all(client, submission)
    assert {t: o.phase for t, o in outcomes.items()} == dict.fromkeys(submission.jobs, TaskPhase.SUCCEEDED)
    # Each step started only once the one before it had ended: Slurm held them, not the loop.
    ended = {j.key.task: j.outcome for j in client.observe(since=submission.submitted_at - timedelta(minutes=1),
                                                             job_ids=ids).jobs() if j.job_id in ids}
    for before, after in (("preprocess", "simulate"), ("simulate", "postprocess")):
        assert ended[before].finished_at is not None and ended[after].started_at is not None
        assert ended[after].started_at >= ended[before].finished_at, (before, after, ended)
    report = Path(client.cluster.spec.workdir) / "default" / "ultrasound-plan" / "postprocess" / "report.txt"
    assert report.read_text() == "dose report for plan p-0042\npeak_pressure_mpa=1.83\n"


def test_ten_element_array_runs_every_element(client: SlurmClient):
    workflow = resolved_from(f"""\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {{name: fan-{client.cluster.spec.transport.value}}}
spec:
  tasks:
    - name: tiles
      resources: {{partition: debug, time: "00:05:00", memory: 20M}}
      array: {{count: 10, parallelism: 4}}
      script: echo "$TASK_INDEX" > "tile-$TASK_INDEX.txt"
""", client.cluster)
    submission = submit_workflow(workflow, client)
    [array_id] = submission.jobs["tiles"]
    jobs = wait_for(client, submission, lambda jobs: sum(len(j.indices or ()) for j in jobs
                                                         if j.phase is TaskPhase.SUCCEEDED) == 10)
    assert {i for j in jobs for i in (j.indices or ())} == set(range(10))
    assert all(j.job_id == array_id for j in jobs)
    run_dir = Path(client.cluster.spec.workdir) / "default" / workflow.workflow.metadata.name / "tiles"
    assert sorted(p.read_text() for p in run_dir.glob("tile-*.txt")) == sorted(f"{i}\n" for i in range(10))


def test_exit_code_three_is_a_failure_with_that_exit_code(client: SlurmClient):
    submission = submit_workflow(resolved_from(one_task("exits-three", "exit 3"), client.cluster), client)
    outcomes = follow_all(client, submission)
    assert outcomes["main"].phase is TaskPhase.FAILED
    [job] = wait_for(client, submission, lambda jobs: len(jobs) == 1 and jobs[0].phase in DONE_PHASES)
    assert job.phase is TaskPhase.FAILED and job.outcome.failure is FailureKind.FAILED and job.outcome.exit_code == 3


def test_finished_jobs_are_observed_from_accounting(client: SlurmClient):
    submission = submit_workflow(resolved_from(one_task("quick", "echo done"), client.cluster), client)
    follow_all(client, submission)
    [job_id] = submission.jobs["main"]
    # squeue holds the ended job for MinJobAge too; sacct's record speaks for it once it has one.
    deadline = time.monotonic() + 30
    while True:
        observation = client.observe(since=submission.submitted_at - timedelta(minutes=1), job_ids=[job_id])
        if any(r.job_id == job_id and r.source == "sacct" for r in observation.records):
            break
        assert time.monotonic() < deadline, "sacct never reported the job"
        time.sleep(0.5)
    assert observation.queue_ok and observation.accounting_ok
    from_queue = [r for r in observation.records if r.job_id == job_id and r.source == "squeue"]
    from_accounting = [r for r in observation.records if r.job_id == job_id and r.source == "sacct"]
    assert all(r.state == "COMPLETED" for r in from_queue) and len(from_accounting) == 1
    [job] = [j for j in observation.jobs() if j.job_id == job_id]
    assert job.phase is TaskPhase.SUCCEEDED and job.outcome.exit_code == 0 and job.outcome.core_hours >= 0
    assert job.key.task == "main" and job.key.attempt == 1 and job.fingerprint


class CountingTransport:
    """The dev cluster's transport, keeping every command it runs."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.calls: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], **kwargs: Any) -> CommandResult:
        self.calls.append(tuple(argv))
        return self.inner.run(argv, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_job_that_recorded_its_end_is_read_by_id_with_its_usage_beside_it(client: SlurmClient):
    submission = submit_workflow(resolved_from(one_task("ending", "echo done"), client.cluster), client)
    follow_all(client, submission)
    [job_id] = submission.jobs["main"]
    counting = CountingTransport(open_transport(client.cluster.spec))
    ending = SlurmClient(client.cluster, cast(Transport, counting))
    try:
        # A window that starts after the job ended (sacct's lags a job that just ended): by id it
        # is found, asked for at once beside the window, not after its answer, and only once.
        ending.ask_usage_ahead([job_id])
        observation = ending.observe(since=datetime.now(UTC), job_ids=[job_id], ending=[job_id])
        [job] = [j for j in observation.jobs() if j.job_id == job_id]
        assert job.phase is TaskPhase.SUCCEEDED and job.outcome.exit_code == 0
        by_id = [c for c in counting.calls if c[-1] == f"--jobs={job_id}"]
        assert len(by_id) == 2, counting.calls  # the record and the usage, each asked once
        [usage] = ending.usage([job_id])
        assert usage.state == "COMPLETED" and usage.finished_at is not None
        assert len([c for c in counting.calls if c[-1] == f"--jobs={job_id}"]) == 2  # taken, not asked again
    finally:
        ending.close()


def accounted_as(cluster: DevCluster, job_id: str) -> str:
    """"State|Partition" of one job as sacct reports it."""
    done = subprocess.run(["sacct", "-X", "-P", "-n", f"--jobs={job_id}", "--format=State,Partition"],
                          env={**os.environ, **cluster.env}, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_a_job_on_a_partition_without_weights_is_read_without_alloc_tres(client: SlurmClient,
                                                                         dev_cluster: DevCluster):
    """debug has no TRESBillingWeights: Slurm bills a job there its CPUs, so neither its
    observation nor its usage asks sacct for AllocTRES (a second round trip to slurmdbd)."""
    task = '    - name: main\n      command: [sleep, "1"]\n      resources: {cpus: 2}\n'
    submission = submit_workflow(resolved_from(workflow_header(unique("lean")) + task, client.cluster), client)
    follow_all(client, submission)
    [job_id] = submission.jobs["main"]
    counting = CountingTransport(open_transport(client.cluster.spec))
    lean = SlurmClient(client.cluster, cast(Transport, counting))
    try:
        # For a second or two after a short job ends, slurmdbd may show it without its partition:
        # slurmctld, which still holds it, says where it ran.
        wait_until(lambda: accounted_as(dev_cluster, job_id).startswith("COMPLETED|"), timeout=20,
                   what=f"slurmdbd recording job {job_id}'s end")
        lean.info()
        lean.ask_usage_ahead([job_id])
        observation = lean.observe(since=None, job_ids=[job_id], ending=[job_id])
        [record] = [r for r in observation.records if r.job_id == job_id and r.source == "sacct"]
        [usage] = lean.usage([job_id])
        sacct = [call for call in counting.calls if command_name(call) == "sacct"]
        assert len(sacct) == 2 and not [call for call in sacct if any("AllocTRES" in word for word in call)], sacct
        [job] = [j for j in observation.jobs() if j.job_id == job_id]
        assert {record.partition, usage.partition} <= {"debug", None} and record.cpus == usage.cpus == 2
        assert record.billing is None and record.elapsed_seconds >= 1
        # As Slurm bills it: elapsed x the billing TRES, which is the CPU count here.
        tres = subprocess.run(["sacct", "-X", "-P", "-n", f"--jobs={job_id}", "--format=AllocTRES"],
                              env={**os.environ, **dev_cluster.env}, capture_output=True, text=True, check=True)
        billing = dict(item.split("=", 1) for item in tres.stdout.strip().split(","))["billing"]
        assert job.outcome.core_seconds == usage.billed_core_seconds == record.elapsed_seconds * int(billing) \
            == record.elapsed_seconds * 2
    finally:
        lean.close()


def test_hold_release_and_cancel(client: SlurmClient):
    workflow = resolved_from(one_task("held", "sleep 1"), client.cluster)
    task = workflow.tasks["main"]
    uid = new_uid()
    job_id = client.submit(SubmitRequest(namespace="default", workflow="held", task=task, resources=task.resources,
                                         tag=JobTag(uid=uid, task="main", attempt=1, part=0, fingerprint="f" * 16),
                                         hold=True))
    submission = Submission(uid=uid, jobs={"main": [job_id]})
    wait_for(client, submission, lambda jobs: [j.phase for j in jobs] == [TaskPhase.HELD])
    client.release([job_id])
    wait_for(client, submission, lambda jobs: [j.phase for j in jobs] == [TaskPhase.SUCCEEDED])

    long = resolved_from(one_task("cancelled", "sleep 300"), client.cluster)
    submission = submit_workflow(long, client)
    wait_for(client, submission, lambda jobs: [j.phase for j in jobs] == [TaskPhase.RUNNING])
    client.cancel(submission.jobs["main"])
    [job] = wait_for(client, submission, lambda jobs: [j.phase for j in jobs] == [TaskPhase.CANCELLED])
    assert job.outcome.failure is None
    # Acting on a job that already ended is not an error: the next observation shows the truth.
    client.cancel(submission.jobs["main"])
    client.hold(submission.jobs["main"])


def test_a_job_past_its_time_limit_times_out(client: SlurmClient, overtime: Submission):
    [job] = wait_for(client, overtime, lambda jobs: len(jobs) == 1 and jobs[0].phase in DONE_PHASES, timeout=180)
    assert job.phase is TaskPhase.FAILED and job.outcome.failure is FailureKind.TIMEOUT


def test_since_bounds_what_accounting_reports(client: SlurmClient):
    """Old finished jobs are not read again every tick: sacct is asked from ``since`` on."""
    time.sleep(1.0)  # sacct's window has a resolution of one second
    observation = client.observe(since=datetime.now(UTC))
    assert observation.accounting_ok
    assert not [r for r in observation.records if r.source == "sacct" and r.state == "COMPLETED"]


@pytest.mark.skipif(not cgroup_v1_memory(), reason="the dev cluster confines memory with cgroup v1, not available here")
def test_a_job_over_its_memory_request_is_out_of_memory(client: SlurmClient):
    hog = "python3 -c 'import time; block = bytearray(300 * 1024 * 1024); time.sleep(3)'"
    submission = submit_workflow(resolved_from(one_task("hungry", hog).replace("memory: 50M", "memory: 20M"),
                                               client.cluster), client)
    [job] = wait_for(client, submission, lambda jobs: len(jobs) == 1 and jobs[0].phase in DONE_PHASES)
    assert job.phase is TaskPhase.FAILED and job.outcome.failure is FailureKind.OUT_OF_MEMORY
