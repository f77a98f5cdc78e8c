"""What ``reconciler get`` and ``reconciler describe`` print: kubectl-style tables and the whole
resource in the same shape as the Kubernetes object. Pure: data in, text out."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ruamel.yaml import YAML

from ..api import API_VERSION, TaskPhase, WorkflowStatus
from ..store.rows import EventRow, WorkflowRow


def age(since: datetime | None, now: datetime) -> str:
    """kubectl's compact age: 45s, 12m, 3h, 5d."""
    if since is None:
        return "<unknown>"
    seconds = max(0, int((now - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["   ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in [list(headers), *rows]]
    return "\n".join(lines) + "\n"


def awaiting_approval(status: WorkflowStatus | None) -> list[str]:
    if status is None:
        return []
    return [name for name, task in status.tasks.items() if task.phase is TaskPhase.AWAITING_APPROVAL]


def _ready_message(status: WorkflowStatus | None) -> str:
    if status is None:
        return ""
    ready = next((c for c in status.conditions if c.type == "Ready"), None)
    return ready.message if ready else ""


def workflows_table(rows: Sequence[WorkflowRow], *, now: datetime, wide: bool = False) -> str:
    headers = ["NAMESPACE", "NAME", "PHASE", "PROGRESS", "CORE-HOURS", "AGE"]
    if wide:
        headers += ["CLUSTER", "REVISION", "MESSAGE"]
    body = []
    people = []
    for row in rows:
        status = row.status
        waiting = awaiting_approval(status)
        if waiting:
            people.append((row, waiting))
        cells = [
            row.namespace,
            ("! " if waiting else "") + row.name,
            status.phase.value if status else "Pending",
            (status.progress or "") if status else "",
            f"{status.core_hours:.2f}" if status else "0.00",
            age(row.created_at, now),
        ]
        if wide:
            cells += [str(row.spec.get("cluster") or ""), ((status.revision or "")[:12]) if status else "",
                      _ready_message(status)]
        body.append(cells)
    text = table(headers, body)
    if people:
        text += "\n! waiting for a person:\n"
        for row, tasks in people:
            for task in tasks:
                text += f"    reconciler approve {row.name} {task}" + (
                    f" -n {row.namespace}" if row.namespace != "default" else "") + "\n"
    return text


def resource(row: WorkflowRow) -> dict:
    """The workflow as ``kubectl get workflow NAME -o yaml`` would show it."""
    metadata = {
        "name": row.name,
        "namespace": row.namespace,
        "uid": row.uid,
        "generation": row.generation,
        "creationTimestamp": row.created_at.isoformat().replace("+00:00", "Z"),
    }
    if row.labels:
        metadata["labels"] = dict(row.labels)
    document = {"apiVersion": API_VERSION, "kind": "Workflow", "metadata": metadata, "spec": row.spec}
    if row.status is not None:
        document["status"] = row.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return document


def dump(documents: dict | list, *, output: str) -> str:
    if output == "json":
        return json.dumps(documents, indent=2) + "\n"
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    # ruamel.yaml declares this switch as None (its "unset" default); False keeps the keys in
    # insertion order rather than sorted.
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    buffer = io.StringIO()
    yaml.dump(documents, buffer)
    return buffer.getvalue()


def describe(row: WorkflowRow, events: Sequence[EventRow], *, now: datetime,
             attempts: Sequence[Mapping[str, Any]] = ()) -> str:
    status = row.status or WorkflowStatus()
    out = io.StringIO()
    out.write(f"Name:         {row.name}\nNamespace:    {row.namespace}\nUID:          {row.uid}\n")
    if row.labels:
        out.write("Labels:       " + ", ".join(f"{k}={v}" for k, v in sorted(row.labels.items())) + "\n")
    if row.source_file:
        out.write(f"Source:       {row.source_file}" + (f" @ {status.revision[:12]}" if status.revision else "") + "\n")
    out.write(f"Phase:        {status.phase.value}\nProgress:     {status.progress or ''}\n")
    out.write(f"Core-hours:   {status.core_hours:.4f}\nAge:          {age(row.created_at, now)}\n")
    out.write("Conditions:\n")
    for cond in status.conditions:
        out.write(f"  {cond.type}={cond.status.value}  {cond.reason}: {cond.message}\n")
    out.write("Tasks:\n")
    rows = []
    for name, task in status.tasks.items():
        detail = task.reason or ""
        if task.array is not None:
            detail = " ".join(f"{phase}={count}" for phase, count in task.array.counts.items()) + (
                f"  {task.reason}" if task.reason else "")
        rows.append([name, task.phase.value, task.job_id or "-", str(task.attempts),
                     "-" if task.exit_code is None else str(task.exit_code), f"{task.core_hours:.4f}", detail])
    out.write(_indent(table(["TASK", "PHASE", "JOB", "ATTEMPTS", "EXIT", "CORE-HOURS", "DETAIL"], rows)))
    if attempts:
        # In the order of the task table (the DAG's), each task's attempts oldest first.
        order = {name: position for position, name in enumerate(status.tasks)}
        ordered = sorted(attempts, key=lambda a: (order.get(a["task"], len(order)), a["attempt"], a.get("part") or 0))
        out.write("Attempts:\n")
        out.write(_indent(table(["TASK", "ATTEMPT", "JOB", "REQUESTED", "OUTCOME", "EXIT", "CORE-HOURS"],
                                [_attempt_row(a) for a in ordered])))
    waiting = awaiting_approval(status)
    if waiting:
        out.write("Waiting for a person:\n")
        for task_name in waiting:
            out.write(f"  reconciler approve {row.name} {task_name}\n")
    out.write("Events:\n")
    if not events:
        out.write("  <none>\n")
    else:
        out.write(_indent(table(["AGE", "TYPE", "REASON", "MESSAGE"],
                                [[age(e.at, now), e.type, e.reason, e.message] for e in events])))
    return out.getvalue()


def _attempt_row(attempt: Mapping[str, Any]) -> list[str]:
    requested = attempt.get("resources") or {}
    asked = " ".join(f"{key}={requested[key]}" for key in ("time", "memory", "cpus", "partition") if key in requested)
    outcome = attempt.get("failure") or attempt.get("phase") or ("submitting" if not attempt.get("job_id") else "")
    # A finished job keeps the last reason it waited for; only an unsuccessful end needs one.
    if attempt.get("reason") and attempt.get("reason") != outcome and attempt.get("phase") != "Succeeded":
        outcome = f"{outcome} ({attempt['reason']})"
    part = f".p{attempt['part']}" if attempt.get("part") else ""
    exit_code = attempt.get("exit_code")
    return [f"{attempt['task']}{part}", str(attempt["attempt"]), attempt.get("job_id") or "-", asked or "-", outcome,
            "-" if exit_code is None else str(exit_code), f"{attempt.get('core_hours') or 0:.4f}"]


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())
