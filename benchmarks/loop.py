"""The loop's own cost, without Slurm: the observed state is built in memory and handed to the
planner, as one tick of the loop would hand it over. Called by :mod:`benchmarks.__main__`
(``scripts/bench --loop``); each case runs in a process of its own, so its peak RSS is its own.

Measured per case: CPU seconds of one tick (``time.process_time``, median of a few), the peak RSS
of the process that built the state and planned it, and for the 30,000-element array the size
of that task's status as JSON. Three ticks are timed: the first, which plans every workflow,
and a steady one, the tick the loop runs over and over while nothing changes: each
workflow's last status handed back as its previous one, the observation read afresh (equal
jobs, new objects), and the plans of the ticks before it kept (:class:`LastPlans`, primed by
two ticks: the first plans, the second confirms that planning again reproduces the status).
A running job's core-seconds are reported to the last whole minute, so a steady tick holds
for running jobs too; the tick that crosses a minute, in which every running job has run a
minute more and its workflow is planned again, is timed as well.
What the figures are compared with (the goals) is in :data:`GOALS`; nothing here asserts them.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from reconciler.api import Capacity, TaskPhase
from reconciler.core.fingerprint import fingerprints
from reconciler.core.observed import ClusterView, JobKey, JobOutcome, ObservedJob
from reconciler.core.plan import WorkflowPlan
from reconciler.core.planner import DesiredWorkflow, LastPlans, plan_cluster
from reconciler.manifests.loader import load_text
from reconciler.manifests.resolve import ResolvedWorkflow, resolve

from .tick import CLUSTER, NOW

TASKS_PER_WORKFLOW = 100
GOALS = {
    "cpu_ms_per_10k_active": 20.0,
    "rss_mb_at_30k_elements": 150.0,
    "array_status_bytes": 2048,
}


def workflows_text(tasks: int) -> str:
    """``tasks`` independent tasks, as workflows of :data:`TASKS_PER_WORKFLOW` each."""
    documents = [CLUSTER]
    for w in range(max(1, tasks // TASKS_PER_WORKFLOW)):
        lines = "\n".join(f'    - {{name: t{i}, script: "true"}}' for i in range(min(tasks, TASKS_PER_WORKFLOW)))
        documents.append("apiVersion: hpc.reconciler.dev/v1alpha1\nkind: Workflow\n"
                         f"metadata: {{name: w{w}}}\nspec:\n  tasks:\n{lines}\n")
    return "---\n".join(documents)


def array_text(elements: int) -> str:
    return CLUSTER + f"""---
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {{name: mosaic}}
spec:
  tasks:
    - {{name: tile, script: "true"}}
    - {{name: process, dependsOn: [tile], script: "true", array: {{count: {elements}}}}}
    - {{name: compose, dependsOn: [process], script: "true"}}
"""


def resolved_all(text: str) -> list[ResolvedWorkflow]:
    return list(resolve(load_text(text, filename="bench.yaml").resources).workflows)


def all_running(workflow: ResolvedWorkflow) -> tuple[ObservedJob, ...]:
    """Every task of the workflow running as a job of its own."""
    fps = fingerprints(workflow.graph)
    return tuple(ObservedJob(key=JobKey(name, 1), job_id=str(n + 1), fingerprint=fps[name], indices=None,
                             outcome=JobOutcome(phase=TaskPhase.RUNNING)) for n, name in enumerate(workflow.tasks))


def array_running(workflow: ResolvedWorkflow, elements: int, finished: int,
                  max_array_size: int) -> tuple[ObservedJob, ...]:
    """The first task done; of the array, ``finished`` elements succeeded (each its own record, as
    Slurm reports ended elements), the rest running, one record per element; the last task
    submitted behind the array, pending on its dependency."""
    fps = fingerprints(workflow.graph)
    jobs = [ObservedJob(key=JobKey("tile", 1), job_id="1", fingerprint=fps["tile"], indices=None,
                        outcome=JobOutcome(phase=TaskPhase.SUCCEEDED, exit_code=0, finished_at=NOW))]
    done = JobOutcome(phase=TaskPhase.SUCCEEDED, exit_code=0, finished_at=NOW, core_seconds=1)
    live = JobOutcome(phase=TaskPhase.RUNNING)
    for index in range(elements):
        chunk = index // max_array_size
        jobs.append(ObservedJob(key=JobKey("process", 1, chunk), job_id=str(10 + chunk), fingerprint=fps["process"],
                                indices=(index,), outcome=done if index < finished else live))
    jobs.append(ObservedJob(key=JobKey("compose", 1), job_id="99", fingerprint=fps["compose"], indices=None,
                            outcome=JobOutcome(phase=TaskPhase.SUBMITTED, reason="Dependency")))
    return tuple(jobs)


def tick(desired: list[DesiredWorkflow], view: ClusterView, last: LastPlans | None = None) -> list[WorkflowPlan]:
    return plan_cluster(desired, view=view, capacity=Capacity(), now=NOW + timedelta(minutes=5), last=last)


def next_tick(desired: list[DesiredWorkflow], plans: list[WorkflowPlan]) -> list[DesiredWorkflow]:
    """The same workflows a tick later with nothing changed: the status each plan made is the
    previous one, and the jobs are observed again as equal, new objects (a running job's
    core-seconds count to the last whole minute, so within a minute they are equal too)."""
    statuses = {plan.uid: plan.status for plan in plans}
    return [replace(item, previous=statuses[item.uid],
                    observed=tuple(replace(job, outcome=replace(job.outcome)) for job in item.observed))
            for item in desired]


def a_minute_later(desired: list[DesiredWorkflow]) -> list[DesiredWorkflow]:
    """The tick that crosses a whole minute: every running job has run a minute more."""
    return [replace(item, observed=tuple(replace(job, outcome=_a_minute_later(job.outcome)) for job in item.observed))
            for item in desired]


def _a_minute_later(outcome: JobOutcome) -> JobOutcome:
    if outcome.phase is TaskPhase.RUNNING:
        return replace(outcome, core_seconds=outcome.core_seconds + 60)
    return replace(outcome)


def steady(desired: list[DesiredWorkflow], view: ClusterView) -> tuple[list[DesiredWorkflow], LastPlans]:
    """What a steady tick starts from: the workflows after two ticks and the plans those kept."""
    last = LastPlans()
    desired = next_tick(desired, tick(desired, view, last))
    desired = next_tick(desired, tick(desired, view, last))
    return desired, last


def cpu_seconds(action: Callable[[], object], *, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        action()
        times.append(time.process_time() - start)
    return statistics.median(times)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # "tasks" or "array"
    size: int
    finished: int = 0


def run_case(case: Case, *, repeat: int) -> dict[str, object]:
    view = ClusterView(name="dev", reachable=True, accounting=True, partition_max_time={}, default_partition="debug")
    start = time.process_time()
    if case.kind == "tasks":
        workflows = resolved_all(workflows_text(case.size))
        desired = [DesiredWorkflow(uid=f"u{n}", resolved=w, generation=1, observed=all_running(w))
                   for n, w in enumerate(workflows)]
        active = case.size
    else:
        [workflow] = resolved_all(array_text(case.size))
        observed = array_running(workflow, case.size, case.finished, view.max_array_size)
        desired = [DesiredWorkflow(uid="u", resolved=workflow, generation=1, observed=observed)]
        active = case.size - case.finished
    setup = time.process_time() - start
    seconds = cpu_seconds(lambda: tick(desired, view), repeat=repeat)
    again, last = steady(desired, view)
    steady_seconds = cpu_seconds(lambda: tick(again, view, last), repeat=repeat)
    result: dict[str, object] = {
        "case": case.name, "active": active, "finished": case.finished, "setup_cpu_s": round(setup, 3),
        "tick_cpu_ms": round(seconds * 1000, 2),
        "per_task_us": round(seconds * 1e6 / max(1, active + case.finished), 2),
        "steady_cpu_ms": round(steady_seconds * 1000, 2),
        "steady_replanned": sum(1 for plan in tick(again, view, last) if not plan.unchanged),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    # Last, since it spends the kept plans (the running workflows are planned again), and after
    # the peak RSS, which its second set of jobs would raise.
    minute = a_minute_later(again)
    result["minute_cpu_ms"] = round(cpu_seconds(lambda: tick(minute, view, last), repeat=repeat) * 1000, 2)
    if case.kind == "array":
        [plan] = tick(desired, view)
        result["array_status_bytes"] = len(plan.status.tasks["process"].model_dump_json(exclude_none=True))
    return result


def profile_case(case: Case, *, top: int = 12) -> str:
    """The top cumulative costs of one tick of ``case``, for a goal that is missed."""
    import cProfile
    import io
    import pstats

    view = ClusterView(name="dev", reachable=True, accounting=True, partition_max_time={}, default_partition="debug")
    if case.kind == "tasks":
        desired = [DesiredWorkflow(uid=f"u{n}", resolved=w, generation=1, observed=all_running(w))
                   for n, w in enumerate(resolved_all(workflows_text(case.size)))]
    else:
        [workflow] = resolved_all(array_text(case.size))
        desired = [DesiredWorkflow(uid="u", resolved=workflow, generation=1,
                                   observed=array_running(workflow, case.size, case.finished, view.max_array_size))]
    profiler = cProfile.Profile()
    profiler.runcall(tick, desired, view)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


CASES = (
    Case("10,000 active tasks", "tasks", 10_000),
    Case("100,000 active tasks", "tasks", 100_000),
    Case("30,000-element array, none finished", "array", 30_000, 0),
    Case("30,000-element array, 29,000 finished", "array", 30_000, 29_000),
)


def measure(cases: tuple[Case, ...] = CASES, *, repeat: int = 3) -> list[dict[str, object]]:
    """Each case in a fresh interpreter, so that one case's peak RSS does not carry into the next."""
    results = []
    for case in cases:
        done = subprocess.run([sys.executable, "-m", "benchmarks.loop", json.dumps(case.__dict__), str(repeat)],
                              capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout))
    return results


def main(argv: list[str]) -> None:
    case = Case(**json.loads(argv[0]))
    print(json.dumps(run_case(case, repeat=int(argv[1]))))


if __name__ == "__main__":
    main(sys.argv[1:])
