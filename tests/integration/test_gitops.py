"""Git mode end to end: plans pushed into a real bare repository, the real ``reconciler run``
loop, the real dev cluster."""

from __future__ import annotations

import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.devcluster import DevCluster
from reconciler.devcluster.cluster import cgroup_v1_memory
from tests.integration.gitops_world import (
    Loop,
    PlanRepo,
    gitops_world,
    sacct_jobs,
    sacct_states,
    squeue_jobs,
    squeue_reasons,
    unique,
    wait_until,
    watch_to_end,
    workflow_header,
)

pytestmark = pytest.mark.slurm

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HELD = {"JobHeldUser", "JobHeldAdmin"}  # squeue's reason for a job scontrol holds


def chain(name: str, *, steps: dict[str, str], extra_task: str = "", defaults: str = "", retry: str = "") -> str:
    """A workflow whose tasks run one after the other, in the order given."""
    lines = [
        "apiVersion: hpc.reconciler.dev/v1alpha1", "kind: Workflow", f"metadata: {{name: {name}}}", "spec:",
        "  defaults:", f'    resources: {{partition: debug, time: "00:05:00", memory: 50M}}{defaults}', "  tasks:",
    ]
    previous = None
    for task, script in steps.items():
        lines.append(f"    - name: {task}")
        if previous:
            lines.append(f"      dependsOn: [{previous}]")
        if retry:
            lines.append(f"      retry: {retry}")
        # A block scalar: the script's quotes need no escaping.
        lines.append("      script: |")
        lines.extend(f"        {line}" for line in script.splitlines())
        previous = task
    return "\n".join(lines) + "\n" + extra_task


def parallel(name: str, *, parts: int, script: str) -> str:
    """A workflow of independent tasks part-0 ... part-N."""
    tasks = "\n".join(f"    - name: part-{i}\n      script: {script}" for i in range(parts))
    return workflow_header(name) + tasks + "\n"


@pytest.fixture(scope="module")
def overtime_retry(tmp_path_factory: pytest.TempPathFactory, dev_cluster: DevCluster) -> Iterator[tuple[str, Loop]]:
    """A step that needs more time the first time, pushed and running in a loop of its own from
    the first test that asks for it. Slurm ends a job past its limit of a minute only 60 to 90 s
    after it started (it checks limits every half minute), so the tests in between run meanwhile
    instead of waiting; it is asked for only after the tests that count every job in the queue."""
    repo, loop, _ = gitops_world("local", tmp_path_factory.mktemp("overtime"), dev_cluster)
    name = unique("overtime")
    script = '[ "$RECONCILER_ATTEMPT" -ge 2 ] || sleep 300'
    repo.write("plans/overtime.yaml", chain(name, steps={"solve": script}, retry=(
        "{limit: 1, backoffSeconds: 0, onFailures: [TIMEOUT], escalate: {time: 2.0}}")).replace(
        'time: "00:05:00"', 'time: "00:01:00"'))
    repo.push("a step that needs more time the first time")
    loop.start()
    yield name, loop
    loop.stop()


def attempts_of(loop: Loop, name: str) -> dict[str, int]:
    return {task: s.get("attempts", 0) for task, s in loop.status(name).get("tasks", {}).items()}


def test_a_pushed_plan_runs_to_succeeded(world, dev_cluster: DevCluster):
    repo, loop = world
    plan = (EXAMPLES / "ultrasound-plan.yaml").read_text()
    repo.write("plans/ultrasound.yaml", plan)
    revision = repo.push("treatment plan for p-0042")

    assert loop.run_until_done(timeout=240) == 0, loop.log.read_text()[-3000:]
    status = loop.status("ultrasound-plan")
    assert status["phase"] == "Succeeded" and status["progress"] == "3/3"
    assert status["revision"] == revision
    assert {t["phase"] for t in status["tasks"].values()} == {"Succeeded"}
    assert status["coreHours"] >= 0
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    report = loop.state_dir / "outputs" / "default" / "ultrasound-plan" / "postprocess" / "latest" / "report.txt"
    assert "peak_pressure_mpa=1.83" in report.read_text()

    table = loop.cli("get", "workflows").stdout
    assert re.search(r"ultrasound-plan\s+Succeeded\s+3/3", table), table
    described = loop.cli("describe", "workflow", "ultrasound-plan").stdout
    assert "postprocess" in described and "Submitted" in described


@pytest.mark.usefixtures("quiet_queue")
def test_capacity_of_one_job_submits_part_of_the_dag_at_a_time(tmp_path: Path, dev_cluster: DevCluster):
    manifest = dev_cluster.manifest_path("local").read_text().replace(
        "spec:\n", "spec:\n  capacity: {maxSubmittedJobs: 1}\n", 1)
    repo = PlanRepo(tmp_path, manifest)
    name = unique("capacity")
    repo.write("plans/capacity.yaml", parallel(name, parts=4, script="sleep 2"))
    repo.push("four independent parts")
    loop = Loop(repo, tmp_path / "state").start()
    try:
        most, status, phases = watch_to_end(loop, name, sample=lambda: len(squeue_jobs(dev_cluster, name)),
                                            timeout=180)
        assert status.get("phase") == "Succeeded", status
    finally:
        loop.stop()
    assert most == 1
    assert "Queued" in phases
    assert set(attempts_of(loop, name).values()) == {1}


@pytest.mark.usefixtures("overtime_retry")  # from here on it times out while the tests below run
def test_a_task_that_fails_twice_then_succeeds_ends_with_three_attempts(world):
    repo, loop = world
    name = unique("flaky")
    script = ('n=$(cat ../tries 2>/dev/null || echo 0); echo $((n + 1)) > ../tries\n'
              '[ "$n" -ge 2 ] || exit 3')
    repo.write("plans/flaky.yaml", chain(name, steps={"flaky": script, "after": "echo ok"},
                                         retry="{limit: 2, backoffSeconds: 1, onFailures: [FAILED]}"))
    repo.push("a flaky step")
    assert loop.run_until_done(timeout=240) == 0, loop.log.read_text()[-3000:]
    assert attempts_of(loop, name) == {"flaky": 3, "after": 1}
    assert loop.status(name)["tasks"]["flaky"]["exitCode"] == 0


def test_retries_exhausted_fail_the_workflow_and_skip_downstream(world):
    repo, loop = world
    name = unique("doomed")
    repo.write("plans/doomed.yaml", chain(name, steps={"broken": "exit 3", "after": "echo never"},
                                          retry="{limit: 1, backoffSeconds: 0, onFailures: [FAILED]}"))
    repo.push("a step that always fails")
    assert loop.run_until_done(timeout=240) == 1
    status = loop.status(name)
    assert status["phase"] == "Failed"
    assert status["tasks"]["broken"]["phase"] == "Failed" and status["tasks"]["broken"]["exitCode"] == 3
    assert status["tasks"]["broken"]["attempts"] == 2
    assert status["tasks"]["after"]["phase"] == "Skipped"
    assert any(c["type"] == "Stalled" and c["status"] == "True" for c in status["conditions"])


@pytest.mark.skipif(not cgroup_v1_memory(), reason="the dev cluster confines memory with cgroup v1, not available here")
def test_out_of_memory_retry_escalates_the_memory_request(world):
    repo, loop = world
    name = unique("hungry")
    script = '[ "$RECONCILER_ATTEMPT" -ge 2 ] || python3 -c "import time; b = bytearray(300 << 20); time.sleep(3)"'
    repo.write("plans/hungry.yaml", chain(name, steps={"solve": script}, retry=(
        "{limit: 1, backoffSeconds: 0, onFailures: [OUT_OF_MEMORY], escalate: {memory: 1.5}}")).replace(
        "memory: 50M", "memory: 20M"))
    repo.push("a step that needs more memory the first time")
    assert loop.run_until_done(timeout=240) == 0, loop.log.read_text()[-3000:]
    attempts = loop.cli("describe", "workflow", name).stdout.split("Attempts:")[1].split("Events:")[0]
    assert re.search(r"solve\s+1\s+\d+\s+time=00:05:00 memory=20M .*\s+OUT_OF_MEMORY\s", attempts), attempts
    assert re.search(r"solve\s+2\s+\d+\s+time=00:05:00 memory=30M .*\s+Succeeded\s", attempts), attempts


def test_suspend_holds_pending_jobs_and_resume_releases_them(world, dev_cluster: DevCluster):
    repo, loop = world
    name = unique("suspended")
    plan = chain(name, steps={"first": "sleep 15", "second": "echo second"})
    repo.write("plans/suspend.yaml", plan)
    repo.push("a two-step plan")
    loop.start()
    loop.wait_for(name, lambda s: s.get("tasks", {}).get("first", {}).get("phase") == "Running", what="first runs")

    repo.write("plans/suspend.yaml", plan.replace("spec:\n", "spec:\n  suspend: true\n", 1))
    repo.push("hold it")
    status = loop.wait_for(name, lambda s: s.get("phase") == "Suspended"
                           and s["tasks"]["second"]["phase"] == "Held", what="second held")
    assert status["tasks"]["second"]["phase"] == "Held"
    # The held one must not run once the first step has ended: the loop has seen that end, and
    # has planned the workflow twice more since (what one tick does, the next one observes).
    loop.wait_for(name, lambda s: s["tasks"]["first"]["phase"] == "Succeeded", what="first succeeded")
    status = loop.later_ticks(name, 2)
    assert status["tasks"]["first"]["phase"] == "Succeeded" and status["tasks"]["second"]["phase"] == "Held"
    assert squeue_reasons(dev_cluster, f"{name}.second").get(f"{name}.second") in HELD

    repo.write("plans/suspend.yaml", plan)
    repo.push("let it go on")
    loop.wait_for_phase(name, "Succeeded")
    assert attempts_of(loop, name) == {"first": 1, "second": 1}


def test_an_approval_blocks_until_a_person_approves(world):
    repo, loop = world
    name = unique("reviewed")
    repo.write("plans/reviewed.yaml", chain(name, steps={"prepare": "echo prepared", "publish": "echo published"})
               .replace("      dependsOn: [prepare]", "      dependsOn: [review]").rstrip("\n") + """
    - name: review
      type: approval
      dependsOn: [prepare]
""")
    repo.push("needs a review")
    loop.start()
    status = loop.wait_for(name, lambda s: s.get("tasks", {}).get("review", {}).get("phase") == "AwaitingApproval",
                           what="awaiting approval")
    assert status["tasks"]["publish"]["phase"] == "Waiting"
    table = loop.cli("get", "workflows").stdout
    assert name in table and "review" in table  # the workflows waiting for a person are marked
    assert loop.later_ticks(name, 2)["tasks"]["publish"]["phase"] == "Waiting"

    assert "approved" in loop.cli("approve", name, "review").stdout
    loop.wait_for_phase(name, "Succeeded", timeout=120)


def test_a_changed_step_reruns_with_its_downstream_only(world, dev_cluster: DevCluster):
    repo, loop = world
    name = unique("rerun")
    steps = {"segment": "echo segment", "simulate": "echo grid=128", "report": "echo report"}
    repo.write("plans/rerun.yaml", chain(name, steps=steps))
    repo.push("first run")
    assert loop.run_until_done(timeout=240) == 0
    before = dict(sacct_jobs(dev_cluster, f"{name}.", at_least=3))
    assert len(before) == 3

    repo.write("plans/rerun.yaml", chain(name, steps={**steps, "simulate": "echo grid=256"}))
    revision = repo.push("finer grid")
    loop.start()
    loop.wait_for(name, lambda s: s.get("revision") == revision and s.get("phase") == "Succeeded",
                  what="rerun finished")
    loop.stop()
    after = sacct_jobs(dev_cluster, f"{name}.", at_least=5)
    names = subprocess.run(["sacct", "-X", "-P", "-n", "--starttime=now-2hours", "--format=JobName"],
                           env={**os.environ, **dev_cluster.env}, capture_output=True, text=True,
                           check=True).stdout.split()
    runs = {task: names.count(f"{name}.{task}") for task in steps}
    assert runs == {"segment": 1, "simulate": 2, "report": 2}, (runs, after)


def test_a_broken_commit_marks_only_that_workflow_invalid(world):
    repo, loop = world
    good, bad = unique("steady"), unique("fragile")
    repo.write("plans/steady.yaml", chain(good, steps={"wait": "sleep 8", "done": "echo done"}))
    repo.write("plans/fragile.yaml", chain(bad, steps={"only": "echo hi"}))
    repo.push("two plans")
    loop.start()
    loop.wait_for_phase(bad, "Succeeded")
    repo.write("plans/fragile.yaml", chain(bad, steps={"only": "echo hi"}).replace("name: only", "name: Not_Valid"))
    repo.push("a typo")
    status = loop.wait_for_phase(bad, "Invalid", timeout=60)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert re.search(r"plans/fragile\.yaml:\d+: spec\.tasks\[0\]\.name", ready["message"]), ready
    loop.wait_for_phase(good, "Succeeded")


def test_a_removed_workflow_is_pruned_and_its_jobs_cancelled(world, dev_cluster: DevCluster):
    repo, loop = world
    name = unique("pruned")
    repo.write("plans/pruned.yaml", chain(name, steps={"long": "sleep 300"}))
    repo.write("plans/other.yaml", chain(unique("kept"), steps={"quick": "echo hi"}))
    repo.push("a long job")
    loop.start()
    loop.wait_for(name, lambda s: s.get("tasks", {}).get("long", {}).get("phase") == "Running", what="running")
    jobs = squeue_jobs(dev_cluster, name)
    repo.remove("plans/pruned.yaml")
    repo.push("not needed any more")
    wait_until(lambda: not squeue_jobs(dev_cluster, name), timeout=60, what="the pruned job leaving the queue")
    assert name not in loop.cli("get", "workflows").stdout
    assert sacct_states(dev_cluster, jobs) == ["CANCELLED by 0"]  # waits for accounting to record the end
    assert [state for _, state in sacct_jobs(dev_cluster, f"{name}.")] == ["CANCELLED by 0"]


def test_until_done_fails_on_a_source_whose_manifests_cannot_be_read(world):
    repo, loop = world
    repo.write("plans/broken.yaml", "apiVersion: hpc.reconciler.dev/v1alpha1\nkind: Workflow\nmetadata: [\n")
    repo.push("a file that does not parse")
    assert loop.run_until_done(timeout=60) == 1
    assert "plans/broken.yaml:4: invalid YAML" in loop.log.read_text()


def test_the_loop_serves_metrics_with_its_squeue_latency(transport_world, request: pytest.FixtureRequest):
    repo, loop, _ = transport_world
    transport = request.node.callspec.params["transport_world"]
    name = unique("watched")
    repo.write("plans/watched.yaml", workflow_header(name) + "    - {name: review, type: approval}\n")
    repo.push("a workflow that waits for a person")
    loop.extra = ("--metrics-port", "0")
    loop.start()
    found = wait_until(lambda: re.search(r"serving metrics on http://127\.0\.0\.1:(\d+)/metrics", loop.log.read_text()),
                       timeout=30, what="the metrics port in the loop's log")
    base = f"http://127.0.0.1:{found.group(1)}"

    def squeue_timed() -> dict[tuple[str, str | None, str | None], float]:
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        samples = {(s.name, s.labels.get("command"), s.labels.get("le")): s.value
                   for family in text_string_to_metric_families(text) for s in family.samples
                   if s.labels.get("transport") in (None, transport)}
        return samples if samples.get(("reconciler_command_seconds_count", "squeue", None)) else {}

    samples = wait_until(squeue_timed, timeout=30, what=f"an squeue through {transport} timed by the loop")
    count = samples[("reconciler_command_seconds_count", "squeue", None)]
    assert samples[("reconciler_command_seconds_bucket", "squeue", "+Inf")] == count
    assert samples[("reconciler_command_seconds_sum", "squeue", None)] > 0
    with urllib.request.urlopen(f"{base}/healthz", timeout=5) as answer:
        assert answer.status == 200


def test_a_second_loop_on_the_same_state_refuses_to_start(world):
    repo, loop = world
    repo.push("empty")
    loop.start()
    wait_until(loop.holds_the_lock, timeout=30, what="the first loop locking its state directory")
    second = subprocess.run(loop.argv("--once"), capture_output=True, text=True, timeout=60)
    assert second.returncode == 2 and "in use by a running reconciler" in second.stderr


def test_kill_9_during_a_fifty_task_workflow_never_runs_a_task_twice(world, dev_cluster: DevCluster):
    repo, loop = world
    name = unique("crashy")
    tasks = []
    for i in range(50):
        after = f"\n      dependsOn: [t{i - 5:02d}]" if i >= 5 else ""
        tasks.append(f"    - name: t{i:02d}{after}\n      script: echo t{i:02d} >> ../runs.log; sleep 1")
    repo.write("plans/crashy.yaml", workflow_header(name) + "\n".join(tasks) + "\n")
    repo.push("fifty tasks")
    # Each kill lands right after the restarted loop was seen at work: a job newer than any
    # before it in the queue (job ids only grow), often in the middle of a burst of sbatch
    # calls, or a task more recorded as finished. Nothing left to do ends the rounds early.
    seen = {"job": 0, "finished": 0}

    def progress() -> tuple[int, int, bool]:
        status = loop.status(name)
        finished = sum(t.get("phase") == "Succeeded" for t in status.get("tasks", {}).values())
        newest = max((int(job) for job in squeue_jobs(dev_cluster, name)), default=0)
        return newest, finished, status.get("phase") == "Succeeded"

    def restarted_loop_worked() -> bool:
        newest, finished, done = progress()
        worked = newest > seen["job"] or finished > seen["finished"] or done
        seen["job"], seen["finished"] = max(seen["job"], newest), max(seen["finished"], finished)
        return worked

    for _ in range(6):
        restarted_loop_worked()  # what the killed loop left: not the restarted one's work
        loop.start()
        wait_until(restarted_loop_worked, timeout=60, what="the restarted loop submitting or recording a job",
                   every=0.05)
        loop.kill()
    loop.start()
    loop.wait_for_phase(name, "Succeeded", timeout=240)
    runs = (Path(dev_cluster.cluster("local").spec.workdir) / "default" / name / "runs.log").read_text().split()
    assert sorted(runs) == sorted(f"t{i:02d}" for i in range(50))
    assert len(sacct_jobs(dev_cluster, f"{name}.", at_least=50)) == 50
    assert set(attempts_of(loop, name).values()) == {1}


def test_stopping_slurmctld_mid_run_is_survived(world, dev_cluster: DevCluster):
    repo, loop = world
    name = unique("outage")
    repo.write("plans/outage.yaml", chain(name, steps={"before": "sleep 3", "during": "sleep 3", "after": "echo ok"}))
    repo.push("a plan across an outage")
    loop.start()
    loop.wait_for(name, lambda s: s.get("tasks", {}).get("before", {}).get("phase") == "Running", what="running")
    dev_cluster.stop("slurmctld")
    try:
        status = loop.wait_for(name, lambda s: any(c["type"] == "ClusterReachable" and c["status"] == "False"
                                                   for c in s.get("conditions", [])), timeout=60,
                               what="ClusterReachable=False")
        assert status["phase"] != "Failed"
        # The loop lives on and looks at the cluster again, once its backoff allows.
        status = loop.later_ticks(name, timeout=120)
        assert any(c["type"] == "ClusterReachable" and c["status"] == "False" for c in status["conditions"])
        assert status["phase"] != "Failed"
        assert loop.process is not None and loop.process.poll() is None
    finally:
        dev_cluster.start("slurmctld")
    loop.wait_for_phase(name, "Succeeded", timeout=240)
    assert set(attempts_of(loop, name).values()) == {1}
    status = loop.status(name)
    assert not any(c["type"] == "ClusterReachable" for c in status["conditions"])


def test_timeout_retry_escalates_the_time_request(overtime_retry: tuple[str, Loop], dev_cluster: DevCluster):
    name, loop = overtime_retry
    loop.wait_for_phase(name, "Succeeded", timeout=300)
    described = loop.cli("describe", "workflow", name).stdout
    assert loop.status(name)["tasks"]["solve"]["attempts"] == 2
    wanted = sorted([f"{name}.solve|1|TIMEOUT", f"{name}.solve|2|COMPLETED"])

    def requested() -> list[str]:
        return sorted(line for line in subprocess.run(
            ["sacct", "-X", "-P", "-n", "--starttime=now-1hours", "--format=JobName,TimelimitRaw,State"],
            env={**os.environ, **dev_cluster.env}, capture_output=True, text=True,
            check=True).stdout.splitlines() if line.startswith(f"{name}.solve|"))

    # sacct's time window lags a just-finished job by a second or so.
    wait_until(lambda: requested() == wanted, timeout=10, what=f"sacct showing {wanted}")
    attempts = described.split("Attempts:")[1].split("Events:")[0]
    assert re.search(r"solve\s+1\s+\d+\s+time=00:01:00 .*\s+TIMEOUT\s", attempts), described
    assert re.search(r"solve\s+2\s+\d+\s+time=00:02:00 .*\s+Succeeded\s", attempts), described


@pytest.mark.usefixtures("quiet_queue")
def test_slurms_own_submit_limit_is_a_wait_not_a_failure(world, dev_cluster: DevCluster):
    """The loop read the cluster's limits before the limit existed, so sbatch itself refuses."""
    repo, loop = world
    # A first workflow has the loop look at the cluster and read its limits (kept for minutes).
    first = unique("before-limit")
    repo.write("plans/first.yaml", parallel(first, parts=1, script="echo ready"))
    repo.push("a workflow before the limit")
    loop.start()
    loop.wait_for_phase(first, "Succeeded")
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    dev_cluster.sacctmgr(["--immediate", "modify", "user", "where", f"name={user}", "set", "MaxSubmitJobs=2"])
    try:
        name = unique("limited")
        repo.write("plans/limited.yaml", parallel(name, parts=5, script="sleep 3"))
        repo.push("five parts against a limit of two")
        # Slurm's own word for the refusal (AssocMaxSubmitJobLimit here) in the task's message.
        status = loop.wait_for(name, lambda s: any(t.get("reason") == "ClusterAtCapacity"
                                                   and "MaxSubmitJob" in t.get("message", "")
                                                   for t in s.get("tasks", {}).values()), what="sbatch's refusal")
        assert status["phase"] in ("Pending", "Running")
        assert len(squeue_jobs(dev_cluster, name)) <= 2
        status = loop.wait_for_phase(name, "Succeeded", timeout=180)
        assert {t["attempts"] for t in status["tasks"].values()} == {1}
    finally:
        dev_cluster.sacctmgr(["--immediate", "modify", "user", "where", f"name={user}", "set", "MaxSubmitJobs=-1"])
