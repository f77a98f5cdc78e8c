"""``kill -9`` of the loop at twenty random moments during a hundred-task workflow (chains, an
array, an approval given between two kills): every task ran exactly once, counted from Slurm's
accounting by the workflow's identity tag, and the workflow Succeeded."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from reconciler.devcluster import DevCluster
from reconciler.slurm.tags import parse_tag
from tests.integration.gitops_world import (
    Loop,
    PlanRepo,
    jobs_per_task,
    sacct_tags,
    unique,
    wait_until,
    workflow_header,
)

pytestmark = [pytest.mark.resilience, pytest.mark.timeout(900)]

CHAINS, STEPS, AFTER, TILES, KILLS = 8, 10, 16, 12, 20


def hundred_tasks(name: str) -> tuple[str, set[str]]:
    """The manifest, and the names of the tasks that run a job: ``prep``; eight chains of ten
    after it; an approval ``review`` after the fifth step of the first chain; the array ``tiles``
    after it; sixteen tasks after ``tiles`` in four chains; ``report`` after all of them. Each
    job appends its name to the workflow's runs.log."""
    def task(task_name: str, after: list[str], script: str) -> str:
        depends = f"\n      dependsOn: [{', '.join(after)}]" if after else ""
        return f"    - name: {task_name}{depends}\n      script: {script}"

    tasks = [task("prep", [], "echo prep >> ../runs.log")]
    for chain in range(CHAINS):
        for step in range(STEPS):
            previous = f"c{chain}-{step - 1}" if step else "prep"
            tasks.append(task(f"c{chain}-{step}", [previous], f"echo c{chain}-{step} >> ../runs.log; sleep 0.5"))
    tasks.append("    - {name: review, type: approval, dependsOn: [c0-4]}")
    tasks.append(task("tiles", ["review"], 'echo "tiles-$TASK_INDEX" >> ../runs.log').replace(
        "      script:", f"      array: {{count: {TILES}}}\n      script:"))
    for j in range(AFTER):
        tasks.append(task(f"after-{j}", ["tiles" if j < 4 else f"after-{j - 4}"], f"echo after-{j} >> ../runs.log"))
    ends = [f"c{chain}-{STEPS - 1}" for chain in range(CHAINS)] + [f"after-{j}" for j in range(AFTER - 4, AFTER)]
    tasks.append(task("report", ends, "echo report >> ../runs.log"))
    assert len(tasks) == 100
    jobs = {"prep", "tiles", "report", *(f"c{c}-{s}" for c in range(CHAINS) for s in range(STEPS)),
            *(f"after-{j}" for j in range(AFTER))}
    return workflow_header(name) + "\n".join(tasks) + "\n", jobs


def test_kill_9_at_twenty_random_moments_of_a_hundred_task_workflow(
        local_loop: tuple[PlanRepo, Loop], dev_cluster: DevCluster, record_property):
    repo, loop = local_loop
    name = unique("storm100")
    manifest, job_tasks = hundred_tasks(name)
    repo.write(f"plans/{name}.yaml", manifest)
    repo.push("a hundred tasks: chains, an array, an approval")
    seed = random.randrange(1 << 30)
    pause = random.Random(seed)
    record_property("seed", seed)
    approved_after = None
    began = time.monotonic()
    for kill in range(1, KILLS + 1):
        loop.start()
        # Each kill lands at a random moment up to two seconds after the loop took its state
        # directory: in the middle of a tick, of a burst of sbatch calls, or between two ticks.
        wait_until(loop.holds_the_lock, timeout=30, what="the restarted loop locking its state directory",
                   every=0.05)
        time.sleep(pause.uniform(0.0, 2.0))
        loop.kill()
        # The approval is given while no loop runs, the first time the review waits for it.
        review = loop.status(name).get("tasks", {}).get("review", {})
        if approved_after is None and review.get("phase") == "AwaitingApproval":
            loop.cli("approve", name, "review")
            approved_after = kill
    loop.start()
    if approved_after is None:
        loop.wait_for(name, lambda s: s["tasks"]["review"]["phase"] == "AwaitingApproval", timeout=240,
                      what="the review awaiting approval")
        loop.cli("approve", name, "review")
    status = loop.wait_for_phase(name, "Succeeded", timeout=400)
    took = time.monotonic() - began
    expected = len(job_tasks) - 1 + TILES
    accounted = jobs_per_task(dev_cluster, name, tasks=expected)
    record_property("jobs", f"{sum(accounted.values())}/{expected} (seed {seed})")
    record_property("fault", f"{KILLS} kills in {took:.0f} s")
    record_property("meanwhile", f"approved after kill {approved_after or 'the last'}; phase {status['phase']}")
    assert accounted == {task: (TILES if task == "tiles" else 1) for task in job_tasks}, f"seed {seed}"
    tags = [parse_tag(comment) for _, comment in sacct_tags(dev_cluster, f"{name}.", at_least=expected)]
    assert {tag.attempt for tag in tags if tag} == {1}, f"seed {seed}"
    # The array went out once: one Slurm job, each element once.
    tiles = [job for job, comment in sacct_tags(dev_cluster, f"{name}.tiles", at_least=TILES)]
    assert len({job.split("_")[0] for job in tiles}) == 1 and len(set(tiles)) == TILES, tiles
    runs = (Path(dev_cluster.cluster("local").spec.workdir) / "default" / name / "runs.log").read_text().split()
    wanted = sorted([task for task in job_tasks if task != "tiles"] + [f"tiles-{i}" for i in range(TILES)])
    assert sorted(runs) == wanted, f"seed {seed}"
