"""A ``kill -9`` of the loop around sub-second jobs never runs a task twice: the real ``reconciler
run`` loop, the real dev cluster, and an ``sbatch`` on the loop's PATH that holds its answer back
the way a busy login node's does, so the loop dies between the job's creation and its id."""

from __future__ import annotations

import os
import random
import stat
import time
from pathlib import Path

import pytest

from reconciler.devcluster import DevCluster
from tests.integration.gitops_world import Loop, PlanRepo, jobs_per_task, squeue_state, unique, wait_until

pytestmark = pytest.mark.slurm

ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}


def slow_sbatch(directory: Path, *, hold_seconds: float) -> Path:
    """An ``sbatch`` that notes each call in ``calls``, submits through the real one, notes the
    job id in ``submitted`` (the test's witness that the job exists), and only then,
    ``hold_seconds`` later, answers. Returns the ``submitted`` file."""
    real = next(Path(d) / "sbatch" for d in os.environ["PATH"].split(os.pathsep) if (Path(d) / "sbatch").is_file())
    directory.mkdir(parents=True, exist_ok=True)
    submitted = directory / "submitted"
    script = directory / "sbatch"
    script.write_text(f"""#!/bin/sh
echo "$$" >> "{directory / 'calls'}"
answer=$("{real}" "$@")
status=$?
[ $status -eq 0 ] && echo "$answer" >> "{submitted}"
sleep {hold_seconds}
printf '%s\\n' "$answer"
exit $status
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return submitted


def workflow(name: str, tasks: dict[str, list[str]]) -> str:
    """Sub-second tasks: each name with the tasks it depends on."""
    lines = ["apiVersion: hpc.reconciler.dev/v1alpha1", "kind: Workflow", f"metadata: {{name: {name}}}", "spec:",
             "  defaults:", '    resources: {partition: debug, time: "00:05:00", memory: 20M}', "  tasks:"]
    for task, after in tasks.items():
        lines.append(f"    - name: {task}")
        if after:
            lines.append(f"      dependsOn: [{', '.join(after)}]")
        lines.append(f"      script: echo {task}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def repo(tmp_path: Path, dev_cluster: DevCluster) -> PlanRepo:
    return PlanRepo(tmp_path, dev_cluster.manifest_path("local").read_text())


def test_a_job_that_ends_while_sbatch_holds_its_answer_is_not_submitted_again(
        repo: PlanRepo, tmp_path: Path, dev_cluster: DevCluster, monkeypatch: pytest.MonkeyPatch):
    submitted = slow_sbatch(tmp_path / "bin", hold_seconds=5)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    name = unique("slow-sbatch")
    repo.write("plans/quick.yaml", workflow(name, {"free0": []}))
    repo.push("one sub-second task")
    loop = Loop(repo, tmp_path / "state").start()
    try:
        job_id = wait_until(lambda: submitted.exists() and submitted.read_text().split(), timeout=60,
                            what="the job submitted", every=0.05)[0]
        loop.kill()  # while sbatch still holds the job id back
    finally:
        loop.stop()
    wait_until(lambda: squeue_state(dev_cluster, job_id) in ENDED, timeout=60, what=f"job {job_id} ended",
               every=0.05)
    # At once: squeue's default listing no longer shows the job, slurmdbd has not recorded it yet.
    assert loop.run_until_done(timeout=120) == 0, loop.log.read_text()[-3000:]
    assert loop.status(name)["phase"] == "Succeeded"
    assert jobs_per_task(dev_cluster, name, tasks=1) == {"free0": 1}
    assert submitted.read_text().split() == [job_id]


def test_a_kill_storm_around_sub_second_jobs_runs_every_task_once(
        repo: PlanRepo, tmp_path: Path, dev_cluster: DevCluster, monkeypatch: pytest.MonkeyPatch):
    # A short hold on sbatch's answer makes a kill land between submission and id more often.
    slow_sbatch(tmp_path / "bin", hold_seconds=0.5)
    calls = tmp_path / "bin" / "calls"
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    name = unique("storm")
    tasks = {"a": [], "b": [], "c": [], "d": [], "e": ["a"], "f": ["e"], "g": ["f", "b"], "h": ["c", "d"]}
    repo.write("plans/storm.yaml", workflow(name, tasks))
    repo.push("eight sub-second tasks, some in parallel, some in a chain")
    seed = random.randrange(1 << 30)
    pause = random.Random(seed)
    loop = Loop(repo, tmp_path / "state", interval=0.5)

    def sbatch_calls() -> int:
        return len(calls.read_text().split()) if calls.exists() else 0

    for _ in range(8):
        before = sbatch_calls()
        loop.start()
        # Each kill lands at a random moment up to a second after the restarted loop began a
        # submission: before sbatch answered, while it records the id, or in the next intent.
        # A loop with nothing to submit (the rest is running, or held Unknown) is killed anyway.
        deadline = time.monotonic() + 5
        while sbatch_calls() == before and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(pause.uniform(0.0, 1.0))
        loop.kill()
    assert loop.run_until_done(timeout=150) == 0, f"seed {seed}\n{loop.log.read_text()[-3000:]}"
    assert loop.status(name)["phase"] == "Succeeded", f"seed {seed}"
    assert jobs_per_task(dev_cluster, name, tasks=len(tasks)) == dict.fromkeys(tasks, 1), f"seed {seed}"
