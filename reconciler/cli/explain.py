"""``reconciler explain WORKFLOW TASK``: why a task runs with the resources it runs with.

Called by :mod:`reconciler.cli.main`. Reads the store only (it works while a loop runs): the
choice the task's latest attempt went out with, every candidate the Orchestrator considered with
its predicted run time, queue wait, start, core-hours, cost and score, and, for a workflow that
names candidate clusters, where it was placed and why. Exit codes: 0 shown, 1 nothing to explain.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from ..api.orchestration import ChoiceStatus
from ..core.choices import Placement, RecordedChoice
from .commands import open_store, state_dir
from .output import table


def explain(*, state: str | None, name: str, task: str, output: str) -> int:
    namespace, _, short = name.rpartition("/")
    with open_store(state_dir(state)) as store:
        stored = store.workflow(namespace or "default", short)
        if stored is None or stored.status is None:
            print(f'Error: workflow "{name}" not found (or not reconciled yet)', file=sys.stderr)
            return 1
        shown = stored.status.tasks.get(task)
        if shown is None:
            print(f"Error: workflow {name} has no task {task!r}", file=sys.stderr)
            return 1
        recorded = store.choices(stored.uid).latest(task, fingerprint=shown.fingerprint or "")
        placement = store.placement(stored.uid)
    if recorded is None and shown.choice is None and placement is None:
        print(f"task {task} declares all its resources and its workflow names one cluster: nothing was chosen "
              "(write auto for cpus, nodes, time, memory or partition to let the reconciler choose)",
              file=sys.stderr)
        return 1
    if output == "json":
        print(json.dumps(_as_json(recorded, shown.choice, placement), indent=2))
    else:
        sys.stdout.write(_as_text(task, recorded, shown.choice, placement))
    return 0


def _as_json(recorded: RecordedChoice | None, current: ChoiceStatus | None,
             placement: Placement | None) -> dict[str, Any]:
    choice = recorded.status if recorded is not None else current
    return {
        "attempt": recorded.attempt if recorded is not None else None,
        "choice": choice.model_dump(mode="json", by_alias=True, exclude_none=True) if choice is not None else None,
        "candidates": list(recorded.ranked) if recorded is not None else [],
        "placement": None if placement is None else {"cluster": placement.cluster, "message": placement.message,
                                                     "clusters": list(placement.ranked)},
    }


def _as_text(task: str, recorded: RecordedChoice | None, current: ChoiceStatus | None,
             placement: Placement | None) -> str:
    parts = []
    if placement is not None:
        parts.append(f"Cluster:   {placement.message}\n")
    choice = recorded.status if recorded is not None else current
    if choice is not None:
        when = f"attempt {recorded.attempt} went out with" if recorded is not None else "would go out with"
        parts.append(f"Task:      {task} {when}: {_resources(choice)}\n"
                     f"Why:       {choice.reason}: {choice.message}\n"
                     f"Strategy:  {choice.strategy}\n")
    if recorded is not None and recorded.ranked:
        rows = [_candidate_row(position, row) for position, row in enumerate(recorded.ranked)]
        parts.append("Candidates (best first, * chosen):\n" + "".join(
            f"  {line}\n" for line in table(["", "CLUSTER", "PARTITION", "NODES", "CPUS", "TIME", "MEMORY", "RUN",
                                             "WAIT", "START", "CORE-HOURS", "COST", "SCORE"], rows).splitlines()))
    return "".join(parts)


def _resources(choice: ChoiceStatus) -> str:
    words = [f"cluster {choice.cluster}" if choice.cluster else "",
             f"partition {choice.partition}" if choice.partition else "",
             f"{choice.nodes} nodes" if choice.nodes else "", f"{choice.cpus} CPUs" if choice.cpus else "",
             f"time {choice.time}" if choice.time else "", f"memory {choice.memory}" if choice.memory else ""]
    return ", ".join(word for word in words if word) or "Slurm's defaults"


def _candidate_row(position: int, row: dict[str, Any]) -> list[str]:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}s"

    def given(value: Any) -> str:
        return "-" if value is None else str(value)

    time = row.get("timeSeconds")
    memory = row.get("memoryMiB")
    run = seconds(row.get("runSeconds")) + ("" if row.get("modelled") else " (limit)")
    return ["*" if position == 0 else "", given(row.get("cluster")), given(row.get("partition")),
            given(row.get("nodes")), given(row.get("cpus")), "-" if time is None else f"{time // 60}m",
            "-" if memory is None else f"{memory:.0f}M", run, seconds(row.get("waitSeconds")),
            seconds(row.get("startSeconds")), f"{row.get('coreHours', 0):.4f}", f"{row.get('cost', 0):.4f}",
            f"{row.get('score', 0):.4g}"]
