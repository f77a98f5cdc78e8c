"""``reconciler history [KIND]``: the finished runs the reconciler has kept, and what it learned.

Called by :mod:`reconciler.cli.main`. Opens the store only (like ``get``), so it works while a
loop runs. Lists runs newest first, then, per task kind listed, the run-time and memory models
fitted on every run of that kind (``reconciler.core.runmodel``), and the queue waits.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..core.history import RunSample
from ..core.runmodel import fit_memory, fit_queue, fit_runtime
from .commands import open_store, state_dir
from .output import table


def history(*, state: str | None, kind: str | None, limit: int | None, output: str) -> int:
    with open_store(state_dir(state)) as store:
        shown = store.runs(kind, limit=limit)
        kinds = sorted({run.kind for run in shown})
        learned = {k: store.runs(k) for k in kinds}
        queues = fit_queue(store.runs())
    if output == "json":
        print(json.dumps({"runs": [_document(run) for run in shown],
                          "models": {k: _models(runs) for k, runs in learned.items()}}, indent=2))
        return 0
    if not shown:
        print("No runs." if kind is None else f"No runs of kind {kind}.")
        return 0
    print(table(["FINISHED", "KIND", "WORKFLOW/TASK", "ATTEMPT", "JOB", "WHERE", "NODESxCPUS", "TIME", "MEMORY",
                 "ELAPSED", "WAIT", "MAXRSS", "CPU-EFF", "STATE", "BILLED-CORE-H"], [_row(run) for run in shown]))
    print("Models:")
    for k, runs in learned.items():
        print(f"  {k}: " + "; ".join(_models(runs).values()))
    print(f"  {queues.describe()}")
    return 0


def _models(runs: Sequence[RunSample]) -> dict[str, str]:
    runtime, memory = fit_runtime(runs), fit_memory(runs)
    return {"runtime": runtime.describe() if runtime else "run time: too few successful runs to fit",
            "memory": memory.describe() if memory else "memory: too few successful runs with a MaxRSS to fit"}


def cpu_efficiency(run: RunSample) -> float | None:
    given = run.elapsed_seconds * run.elements * run.cpus
    return None if run.total_cpu_seconds is None or given <= 0 else run.total_cpu_seconds / given


def _row(run: RunSample) -> list[str]:
    efficiency = cpu_efficiency(run)
    elements = f"{run.elements} of " if run.elements > 1 else ""  # an array chunk's elements
    return [
        f"{run.finished_at:%Y-%m-%d %H:%M:%S}", run.kind, f"{run.workflow}/{run.task}", str(run.attempt), run.job_id,
        f"{run.cluster}/{run.partition or '-'}", f"{elements}{run.nodes}x{run.cpus}",
        _seconds(run.time_limit_seconds), "-" if run.memory_mib is None else f"{run.memory_mib:.0f}M",
        _seconds(run.elapsed_seconds), _seconds(run.queue_wait_seconds),
        "-" if run.max_rss_mib is None else f"{run.max_rss_mib:.1f}M",
        "-" if efficiency is None else f"{efficiency:.0%}", run.state, f"{run.billed_core_seconds / 3600:.4f}",
    ]


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    whole = round(value)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _document(run: RunSample) -> dict:
    efficiency = cpu_efficiency(run)
    return {
        "kind": run.kind, "workflow": run.workflow, "task": run.task, "attempt": run.attempt, "jobId": run.job_id,
        "cluster": run.cluster, "partition": run.partition, "nodes": run.nodes, "cpus": run.cpus,
        "memoryMiB": run.memory_mib, "timeLimitSeconds": run.time_limit_seconds, "sizeHint": run.size_hint,
        "state": run.state, "elements": run.elements, "elapsedSeconds": run.elapsed_seconds,
        "queueWaitSeconds": run.queue_wait_seconds, "maxRssMiB": run.max_rss_mib,
        "totalCpuSeconds": run.total_cpu_seconds, "cpuEfficiency": None if efficiency is None else round(efficiency, 3),
        "billedCoreSeconds": run.billed_core_seconds, "finishedAt": run.finished_at.isoformat(),
    }
