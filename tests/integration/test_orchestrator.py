"""The Orchestrator against real Slurm: resources chosen from the runs a kind has had, a workflow
placed on the cluster Slurm would start it on first, and a budget that holds a workflow."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from reconciler.devcluster import DevCluster
from reconciler.store.database import Store
from tests.integration.gitops_world import sacct_jobs, unique, wait_until, workflow_header
from tests.integration.second_cluster import cluster_document, filled

pytestmark = pytest.mark.slurm
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# Run time 1 + 4 / CPUs seconds: more CPUs finish sooner (5 s, 3 s, 2 s) but bill more (5, 6, 8).
AMDAHL_SCRIPT = "sleep $(( 1 + 4 / SLURM_CPUS_PER_TASK ))"


def alloc_cpus(cluster: DevCluster, job_id: str) -> int:
    done = subprocess.run(["sacct", "-X", "-P", "-n", f"--jobs={job_id}", "--format=AllocCPUS"],
                          env={**os.environ, **cluster.env}, capture_output=True, text=True, check=True)
    return int(done.stdout.split()[0])


def test_a_kind_run_with_several_cpu_counts_gets_the_configuration_its_score_prefers(
        local_world, dev_cluster: DevCluster):
    repo, loop, _ = local_world
    kind = unique("sim")
    learn = unique("learn")
    tasks = "".join(f"""\
    - name: c{cpus}
      kind: {kind}
      script: "{AMDAHL_SCRIPT}"
      resources: {{cpus: {cpus}}}
""" for cpus in (1, 2, 4))
    repo.write(f"plans/{learn}.yaml", workflow_header(learn) + tasks)
    repo.push("runs of one kind at three CPU counts")
    loop.start()
    loop.wait_for_phase(learn, "Succeeded", timeout=90)
    with Store(loop.state_dir / "state.db") as store:
        wait_until(lambda: len(store.runs(kind)) == 3, timeout=30, what="three runs in the history")

    fast, frugal = unique("fast"), unique("frugal")
    for name, expression in ((fast, "time"), (frugal, "coreHours")):
        header = workflow_header(name).replace("spec:\n", f"spec:\n  scoring: {{expression: {expression}}}\n", 1)
        repo.write(f"plans/{name}.yaml", header + f"""\
    - name: sim
      kind: {kind}
      script: "{AMDAHL_SCRIPT}"
      resources: {{cpus: auto, time: auto}}
      candidates: {{cpus: [1, 2, 4]}}
""")
    repo.push("the same kind, its CPUs and time left to the reconciler")
    for name, cpus in ((fast, 4), (frugal, 1)):
        status = loop.wait_for_phase(name, "Succeeded", timeout=90)
        choice = status["tasks"]["sim"]["choice"]
        assert (choice["reason"], choice["cpus"]) == ("Chosen", cpus), choice
        assert f"3 runs of kind {kind}" in choice["message"]
        assert choice["time"] == "00:01:00"  # seconds of predicted run time, in Slurm's whole minutes
        assert alloc_cpus(dev_cluster, status["tasks"]["sim"]["jobId"]) == cpus
    described = loop.cli("describe", "workflow", fast).stdout
    assert "Choices:" in described and "cpus=4 time=00:01:00" in described, described
    explained = loop.cli("explain", fast, "sim").stdout
    assert "Chosen" in explained and "Candidates (best first, * chosen)" in explained
    rows = [line.split() for line in explained.splitlines() if line.split()[:1] in (["*"], ["dev"])]
    assert [row[4] if row[0] == "*" else row[3] for row in rows] == ["4", "2", "1"], explained


def test_the_example_calibrates_then_chooses_from_its_own_calibration_runs(local_world, dev_cluster: DevCluster):
    repo, loop, _ = local_world
    repo.write("plans/kwave-sweep.yaml", (EXAMPLES / "kwave-sweep.yaml").read_text())
    repo.push("the calibrated sweep")
    loop.start()
    status = loop.wait_for_phase("kwave-sweep", "Succeeded", timeout=120)
    choice = status["tasks"]["simulate"]["choice"]
    # It waited for the three calibration runs to be in the history, and chose from them.
    assert choice["reason"] == "Chosen" and "3 runs of kind kwave-sim" in choice["message"], choice
    assert choice["cpus"] == 4 and choice["candidates"] == 3
    assert alloc_cpus(dev_cluster, status["tasks"]["simulate"]["jobId"]) == 4
    assert 0 < status["budget"]["spent"] <= status["budget"]["projected"] <= 2


@pytest.mark.usefixtures("quiet_queue")  # the dev cluster is filled whole in turn
def test_a_start_weighted_score_places_a_workflow_on_the_idle_cluster(
        local_world, dev_cluster: DevCluster, second_dev_cluster: DevCluster):
    repo, loop, _ = local_world
    repo.write("clusters/second.yaml", cluster_document(second_dev_cluster, transport="local", name="dev2"))
    repo.push("a second cluster")
    loop.start()

    def submit_one(busy: DevCluster) -> str:
        name = unique("anywhere")
        header = workflow_header(name).replace(
            "spec:\n", "spec:\n  cluster: [dev, dev2]\n  scoring: {expression: start}\n", 1)
        with filled(busy):
            repo.write(f"plans/{name}.yaml", header + "    - name: hello\n      command: [hostname]\n")
            repo.push(f"a workflow for whichever cluster starts it first ({busy.name} is full)")
            loop.wait_for(name, lambda s: s.get("cluster") is not None, timeout=60, what="placed")
        return name

    to_second = submit_one(dev_cluster)
    to_first = submit_one(second_dev_cluster)
    for name, cluster, other in ((to_second, second_dev_cluster, dev_cluster),
                                 (to_first, dev_cluster, second_dev_cluster)):
        status = loop.wait_for_phase(name, "Succeeded", timeout=90)
        assert status["cluster"] == ("dev2" if cluster is second_dev_cluster else "dev"), status
        job_id = status["tasks"]["hello"]["jobId"]
        assert (job_id, "COMPLETED") in sacct_jobs(cluster, f"{name}.")
        others = subprocess.run(["sacct", "-X", "-P", "-n", "--starttime=now-1hours", "--format=JobName"],
                                env={**os.environ, **other.env}, capture_output=True, text=True, check=True)
        assert f"{name}.hello" not in others.stdout.split()
    placed = loop.cli("explain", to_second, "hello").stdout
    assert placed.startswith("Cluster:   placed on dev2"), placed


def test_a_budget_holds_a_workflow_until_it_is_raised(local_world):
    repo, loop, _ = local_world
    name = unique("capped")
    task = "    - name: hello\n      command: [sleep, \"1\"]\n      resources: {cpus: 2}\n"

    def declare(core_hours: float) -> None:
        header = workflow_header(name, time="00:30:00").replace(
            "spec:\n", f"spec:\n  budget: {{coreHours: {core_hours}}}\n", 1)
        repo.write(f"plans/{name}.yaml", header + task)
        repo.push(f"a budget of {core_hours} core-hours")

    declare(0.5)  # 2 CPUs for up to 30 minutes: 1 core-hour projected
    loop.start()
    status = loop.wait_for(name, lambda s: s.get("budget") is not None, timeout=60, what="a budget in status")
    status = loop.later_ticks(name, 2)
    stalled = {c["type"]: c for c in status["conditions"]}
    assert stalled["Stalled"]["reason"] == "BudgetExceeded", status
    assert stalled["WithinBudget"]["status"] == "False"
    assert status["budget"] == {"coreHours": 0.5, "spent": 0.0, "projected": 1.0}
    assert status["tasks"]["hello"]["phase"] == "Waiting" and status["tasks"]["hello"]["reason"] == "BudgetExceeded"
    assert status["tasks"]["hello"].get("jobId") is None

    declare(1.5)
    status = loop.wait_for_phase(name, "Succeeded", timeout=90)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["WithinBudget"]["status"] == "True" and "Stalled" not in conditions
    spent = status["budget"]["spent"]
    assert spent == round(status["billedCoreSeconds"] / 3600, 6) and spent > 0, status
    assert status["budget"]["projected"] == spent  # nothing left to run
