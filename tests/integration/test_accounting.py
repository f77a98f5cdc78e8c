"""Billed core-hours, efficiency and the run history against the real dev cluster: a workflow on
the ``billed`` partition (TRESBillingWeights) shows in its status exactly the core-seconds Slurm's
accounting bills, its tasks' CPU and memory efficiency, and ``reconciler history`` lists its runs;
through both transports."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from reconciler.devcluster import DevCluster
from tests.integration.gitops_world import unique

pytestmark = pytest.mark.slurm

# About three seconds of one busy CPU holding some 40 MB: long enough for Slurm's accounting to
# take a memory sample (JobAcctGatherFrequency=task=2), on two CPUs, so the CPU efficiency is
# about a half.
BUSY = "python3 -c 'import time; x = bytearray(40_000_000); t = time.time()\\nwhile time.time() - t < 3.5: pass'"


def manifest(name: str) -> str:
    return f"""\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {{name: {name}}}
spec:
  defaults:
    resources: {{partition: billed, cpus: 2, time: "00:05:00", memory: 100M}}
  tasks:
    - name: grid
      kind: acct-grid
      sizeHint: 3
      array: {{count: 3}}
      command: ["sh", "-c", "{BUSY}"]
    - name: single
      command: ["sh", "-c", "{BUSY}"]
"""


def billed(dev_cluster: DevCluster, name: str, job_ids: list[str]) -> dict[str, tuple[int, int]]:
    """By task: (elapsed x the billing TRES, elapsed x CPUs) summed over its jobs (an array's id
    stands for its elements), as sacct reports them."""
    done = subprocess.run(["sacct", "-X", "-P", "-n", f"--jobs={','.join(job_ids)}",
                           "--format=JobID,JobName,ElapsedRaw,AllocTRES,AllocCPUS"],
                          env={**os.environ, **dev_cluster.env}, capture_output=True, text=True, check=True)
    sums: dict[str, tuple[int, int]] = {}
    for line in done.stdout.splitlines():
        _, job_name, elapsed, tres, cpus = line.split("|")
        if not job_name.startswith(f"{name}."):
            continue
        rate = int(dict(item.split("=", 1) for item in tres.split(","))["billing"])
        task = job_name.removeprefix(f"{name}.")
        cost, plain = sums.get(task, (0, 0))
        sums[task] = (cost + int(elapsed) * rate, plain + int(elapsed) * int(cpus))
    return sums


def test_status_bills_what_accounting_bills_and_history_keeps_the_runs(transport_world, dev_cluster: DevCluster):
    repo, loop, _ = transport_world
    name = unique("acct")
    repo.write(f"plans/{name}.yaml", manifest(name))
    repo.push("billed runs")
    loop.start()

    def measured(status: dict) -> bool:
        tasks = status.get("tasks", {})
        return status.get("phase") == "Succeeded" and all(
            (tasks.get(task, {}).get("efficiency") or {}).get("memory") is not None for task in ("grid", "single"))

    status = loop.wait_for(name, measured, timeout=60, what="succeeded with efficiency")
    accounted = billed(dev_cluster, name, [status["tasks"][task]["jobId"] for task in ("grid", "single")])
    assert set(accounted) == {"grid", "single"}

    # For a moment after a job ended, sacct's time window (what a tick observes) may lack it while
    # a query by id (what the history reads) has it already: until then the task counts what
    # squeue showed. The status settles on what accounting bills.
    def settled(status: dict) -> bool:
        return all(status["tasks"][task]["billedCoreSeconds"] == cost for task, (cost, _) in accounted.items())

    status = loop.wait_for(name, settled, timeout=15, what="billed core-seconds as accounting bills them")
    for task, (cost, plain) in accounted.items():
        assert status["tasks"][task]["billedCoreSeconds"] == cost
        assert cost > plain > 0  # the weights apply: CPU=2.0 bills twice the CPUs
        efficiency = status["tasks"][task]["efficiency"]
        assert 0 < efficiency["cpu"] <= 1.5 and 0 < efficiency["memory"] <= 1.5, efficiency
    total = sum(cost for cost, _ in accounted.values())
    assert status["billedCoreSeconds"] == total and status["coreHours"] == round(total / 3600, 6)

    described = loop.cli("describe", "workflow", name).stdout
    assert "Efficiency:" in described

    runs = [run for run in json.loads(loop.cli("history", "-o", "json").stdout)["runs"]
            if run["workflow"] == f"default/{name}"]
    by_task = {run["task"]: run for run in runs}
    assert set(by_task) == {"grid", "single"} and len(runs) == 2
    grid, single = by_task["grid"], by_task["single"]
    assert (grid["kind"], grid["elements"], grid["sizeHint"], grid["partition"], grid["cpus"]) == (
        "acct-grid", 3, 3.0, "billed", 2)
    assert (single["kind"], single["elements"], single["state"], single["memoryMiB"]) == (
        f"{name}/single", 1, "COMPLETED", 100.0)
    assert {run["billedCoreSeconds"] for run in runs} == {accounted["grid"][0], accounted["single"][0]}
    table = loop.cli("history", "acct-grid").stdout
    assert f"default/{name}/grid" in table and "Models:" in table
