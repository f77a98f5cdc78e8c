"""How the cost of one tick grows with the size of the work, as ratios to a baseline measured in
the same run: loading and resolving the same manifest. Run with ``scripts/bench``.

Each case is timed several times and the median taken; machines here are noisy, so only the
ratios mean anything, never the absolute seconds.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from reconciler.api import Capacity, TaskPhase
from reconciler.core.assign import Choosing, Learned, learn, offers_of, optimizer_of
from reconciler.core.fingerprint import fingerprints
from reconciler.core.history import RunSample
from reconciler.core.observed import ClusterView, JobKey, JobOutcome, ObservedJob, PartitionLimits
from reconciler.core.planner import DesiredWorkflow, plan_cluster
from reconciler.manifests.loader import load_text
from reconciler.manifests.resolve import resolve
from reconciler.store.database import Store

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CLUSTER = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: SlurmCluster
metadata: {name: dev}
spec: {workdir: /w}
"""


def tiles(count: int) -> str:
    return CLUSTER + f"""---
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {{name: mosaic}}
spec:
  tasks:
    - {{name: tile, script: "true"}}
    - {{name: process, dependsOn: [tile], script: "true", array: {{count: {count}, parallelism: 500}}}}
    - {{name: review, type: approval, dependsOn: [process]}}
    - {{name: compose, dependsOn: [review], script: "true"}}
"""


def dag(width: int, depth: int, *, resources: str = "") -> str:
    tasks = []
    for level in range(depth):
        for i in range(width):
            after = f", dependsOn: [s{level - 1}-{i}]" if level else ""
            tasks.append(f'    - {{name: s{level}-{i}, script: "true"{after}{resources}}}')
    return CLUSTER + "---\napiVersion: hpc.reconciler.dev/v1alpha1\nkind: Workflow\nmetadata: {name: wide}\n" \
        "spec:\n  tasks:\n" + "\n".join(tasks) + "\n"


def resolved(text: str):
    loaded = load_text(text, filename="bench.yaml")
    [workflow] = resolve(loaded.resources).workflows
    return workflow


def median(action: Callable[[], object], *, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def half_done_array(workflow, count: int) -> list[ObservedJob]:
    """The tile done, half the array succeeded element by element, the rest pending as one record."""
    fps = fingerprints(workflow.graph)
    jobs = [ObservedJob(key=JobKey("tile", 1), job_id="1", fingerprint=fps["tile"], indices=None,
                        outcome=JobOutcome(phase=TaskPhase.SUCCEEDED, exit_code=0))]
    element = JobOutcome(phase=TaskPhase.SUCCEEDED, exit_code=0, finished_at=NOW, core_seconds=36)
    jobs += [ObservedJob(key=JobKey("process", 1, part), job_id=str(10 + part), fingerprint=fps["process"],
                         indices=(i,), outcome=element)
             for part in range(0, count, 1001) for i in range(part, min(part + 1001, count // 2))]
    pending = tuple(range(count // 2, count))
    jobs.append(ObservedJob(key=JobKey("process", 1, 0), job_id="10", fingerprint=fps["process"], indices=pending,
                            outcome=JobOutcome(phase=TaskPhase.SUBMITTED)))
    return jobs


def history(runs: int) -> Learned:
    """What ``runs`` finished runs of one kind teach, at 1 to 16 CPUs."""
    return learn(RunSample(kind="sim", workflow="default/old", task="sim", attempt=1, job_id=str(n), cluster="dev",
                           partition="debug", nodes=1, cpus=2 ** (n % 5), memory_mib=1024, time_limit_seconds=3600,
                           size_hint=None, state="COMPLETED", elements=1, elapsed_seconds=60 + 480 / 2 ** (n % 5),
                           queue_wait_seconds=5.0, max_rss_mib=200, total_cpu_seconds=None, billed_core_seconds=60,
                           finished_at=NOW) for n in range(runs))


def choosing(workflow, learned: Learned) -> Choosing:
    partition = PartitionLimits(name="debug", max_time_seconds=3600, default=True, state="UP", total_cpus=64,
                                total_nodes=4, max_cpus_per_node=16)
    return Choosing(offers=offers_of(workflow.cluster, [partition]), learned=learned,
                    optimizer=optimizer_of(workflow.spec, workflow.cluster))


def tick(workflow, observed: list[ObservedJob], chooser: Choosing | None = None) -> None:
    view = ClusterView(name="dev", reachable=True, accounting=True, partition_max_time={}, default_partition="debug")
    desired = DesiredWorkflow(uid="u", resolved=workflow, generation=1, observed=tuple(observed), choosing=chooser)
    plan_cluster([desired], view=view, capacity=Capacity(), now=NOW + timedelta(minutes=5))


def running(workflow) -> list[ObservedJob]:
    """Every task of the workflow running as one job."""
    fps = fingerprints(workflow.graph)
    return [ObservedJob(key=JobKey(name, 1), job_id=str(n), fingerprint=fps[name], indices=None,
                        outcome=JobOutcome(phase=TaskPhase.RUNNING)) for n, name in enumerate(workflow.tasks)]


def store_round_trip(observed: list[ObservedJob]) -> None:
    with tempfile.TemporaryDirectory() as directory, Store(Path(directory) / "state.db") as store:
        stored = store.upsert_workflow(namespace="default", name="mosaic", resource={"spec": {}}, revision=None,
                                       source_file=None, now=NOW)
        store.update_from_observation(stored.uid, observed, now=NOW)
        store.attempts(stored.uid)


def main() -> list[tuple[str, float]]:
    rows = []
    for count in (1_000, 30_000):
        text = tiles(count)
        baseline = median(partial(resolved, text))
        workflow = resolved(text)
        observed = half_done_array(workflow, count)
        rows.append((f"{count}-tile array: one tick", median(partial(tick, workflow, observed)) / baseline))
        rows.append((f"{count}-tile array: store update and read",
                     median(partial(store_round_trip, observed), repeat=3) / baseline))
    for width, depth in ((10, 10), (20, 50)):
        text = dag(width, depth)
        baseline = median(partial(resolved, text))
        workflow = resolved(text)
        rows.append((f"{width * depth}-task DAG: one tick, nothing run yet",
                     median(partial(tick, workflow, [])) / baseline))
    # The Orchestrator's share of a tick: every task of a 1,000-task DAG leaves its CPUs and time
    # to it, against the same DAG with them declared (both ticks in this run).
    declared = resolved(dag(20, 50, resources=', resources: {cpus: 4, time: "00:10:00"}'))
    auto = resolved(dag(20, 50, resources=', kind: sim, resources: {cpus: auto, time: auto}'))
    learned = history(200)
    plain = median(partial(tick, declared, [], choosing(declared, learned)))
    rows.append(("1000-task DAG, all auto: one tick / declared", median(
        partial(tick, auto, [], choosing(auto, learned))) / plain))
    running_declared, running_auto = running(declared), running(auto)
    rows.append(("1000-task DAG, all auto, all running: tick / declared", median(
        partial(tick, auto, running_auto, choosing(auto, learned)))
        / median(partial(tick, declared, running_declared, choosing(declared, learned)))))
    rows.append(("fitting 200 runs of a kind / one declared tick", median(partial(history, 200)) / plain))
    print("cost relative to loading and resolving the same manifest (median of repeated runs)")
    for name, ratio in rows:
        print(f"  {name:55} {ratio:6.2f}x")
    return rows


if __name__ == "__main__":
    main()
