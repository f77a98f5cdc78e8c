"""What ``reconciler get`` and ``reconciler describe`` print: kubectl-style tables and the whole
resource in the same shape as the Kubernetes object. Pure: data in, text out."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ruamel.yaml import YAML

from ..api import API_VERSION, TaskPhase, TaskStatus, WorkflowStatus
from ..api.approval import ApprovalParameter
from ..core.approval_values import described, render
from ..core.approvals import APPROVAL_STALE, Approval, ApprovalVia, TaskApprovals
from ..store.rows import AttemptHistory, EventRow, WorkflowRow
from .progress import element_progress, progress_bar


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
    lines = ["   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
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


def workflows_table(rows: Sequence[WorkflowRow], *, now: datetime, wide: bool = False, bars: bool = False) -> str:
    """``bars``: an ELEMENTS column, each workflow's succeeded elements as a bar (``--watch``)."""
    headers = ["NAMESPACE", "NAME", "PHASE", "PROGRESS", *(["ELEMENTS"] if bars else []), "CORE-HOURS", "AGE"]
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
            *([progress_bar(element_progress(status))] if bars else []),
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
                shown = row.status.tasks[task] if row.status else None
                text += f"    reconciler approve {row.name} {task}{_set_words(shown)}" + (
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
             attempts: Sequence[AttemptHistory] = (), approvals: TaskApprovals | None = None) -> str:
    status = row.status or WorkflowStatus()
    sections = [_header(row, status, now=now), _conditions(status), _tasks(status, row.task_labels),
                _outputs(status), _efficiency(status), _choices(status)]
    if attempts:
        sections.append(_attempts(status, attempts))
    if approvals is not None and approvals.given:
        sections.append(_iterations(status, approvals, attempts))
    sections += [_waiting(row, status), _events(events, now=now)]
    return "".join(sections)


def _header(row: WorkflowRow, status: WorkflowStatus, *, now: datetime) -> str:
    out = io.StringIO()
    out.write(f"Name:         {row.name}\nNamespace:    {row.namespace}\nUID:          {row.uid}\n")
    if row.labels:
        out.write("Labels:       " + ", ".join(f"{k}={v}" for k, v in sorted(row.labels.items())) + "\n")
    if row.source_file:
        out.write(f"Source:       {row.source_file}" + (f" @ {status.revision[:12]}" if status.revision else "") + "\n")
    out.write(f"Phase:        {status.phase.value}\nProgress:     {status.progress or ''}\n")
    out.write(f"Core-hours:   {status.core_hours:.4f}\nAge:          {age(row.created_at, now)}\n")
    if status.cluster:
        out.write(f"Cluster:      {status.cluster}\n")
    if status.budget:
        budget = status.budget
        out.write(f"Budget:       {budget.spent:.4f} spent, {budget.projected:.4f} projected of "
                  f"{budget.core_hours:.4g} core-hours\n")
    if status.cleaned_at:
        out.write(f"Cleaned:      {status.cleaned_at:%Y-%m-%d %H:%M:%SZ} (ttlSecondsAfterFinished: its files are "
                  "removed, its status and history kept)\n")
    return out.getvalue()


def _conditions(status: WorkflowStatus) -> str:
    return "Conditions:\n" + "".join(f"  {cond.type}={cond.status.value}  {cond.reason}: {cond.message}\n"
                                      for cond in status.conditions)


@dataclass(frozen=True)
class TaskRow:
    """One task of a stored workflow as ``get tasks`` lists it."""

    namespace: str
    workflow: str
    task: str
    phase: str
    job_id: str | None
    attempts: int
    labels: dict[str, str] = field(default_factory=dict)
    exit_code: int | None = None
    core_hours: float = 0.0


def task_rows(row: WorkflowRow) -> list[TaskRow]:
    """The workflow's tasks in DAG order (the status's), then any task it does not name yet."""
    labels = row.task_labels
    known = row.status.tasks if row.status else {}
    names = [*known, *(name for name in labels if name not in known)]
    rows = []
    for name in names:
        status = known.get(name)
        rows.append(TaskRow(
            namespace=row.namespace, workflow=row.name, task=name,
            phase=status.phase.value if status else TaskPhase.WAITING.value,
            job_id=status.job_id if status else None, attempts=status.attempts if status else 0,
            labels=labels.get(name, {}), exit_code=status.exit_code if status else None,
            core_hours=status.core_hours if status else 0.0))
    return rows


def label_text(labels: dict[str, str]) -> str:
    """Labels as kubectl's ``--show-labels`` prints them."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items())) or "<none>"


def tasks_table(rows: Sequence[TaskRow], *, wide: bool = False) -> str:
    headers = ["NAMESPACE", "WORKFLOW", "TASK", "PHASE", "JOB", "ATTEMPTS"] + (
        ["EXIT", "CORE-HOURS"] if wide else []) + ["LABELS"]
    cells = [[r.namespace, r.workflow, r.task, r.phase, r.job_id or "-", str(r.attempts)]
             + (["-" if r.exit_code is None else str(r.exit_code), f"{r.core_hours:.4f}"] if wide else [])
             + [label_text(r.labels)] for r in rows]
    return table(headers, cells)


def task_resource(row: TaskRow) -> dict:
    return {"namespace": row.namespace, "workflow": row.workflow, "task": row.task, "phase": row.phase,
            "jobId": row.job_id, "attempts": row.attempts, "exitCode": row.exit_code, "coreHours": row.core_hours,
            "labels": dict(row.labels)}


def _tasks(status: WorkflowStatus, labels: dict[str, dict[str, str]]) -> str:
    # The LABELS column appears only when a task has labels, so unlabelled workflows read as before.
    show_labels = any(labels.values())
    rows = []
    for name, task in status.tasks.items():
        detail = task.reason or ""
        if task.array is not None:
            detail = " ".join(f"{phase}={count}" for phase, count in task.array.counts.items()) + (
                f"  {task.reason}" if task.reason else "")
        rows.append([name, task.phase.value, task.job_id or "-", str(task.attempts),
                     "-" if task.exit_code is None else str(task.exit_code), f"{task.core_hours:.4f}"]
                    + ([label_text(labels.get(name, {}))] if show_labels else []) + [detail])
    headers = ["TASK", "PHASE", "JOB", "ATTEMPTS", "EXIT", "CORE-HOURS"] + (["LABELS"] if show_labels else [])
    return "Tasks:\n" + _indent(table([*headers, "DETAIL"], rows))


def _outputs(status: WorkflowStatus) -> str:
    """Where each succeeded task's declared outputs are (or why they are not there yet)."""
    rows = [[name, task.outputs.phase.value, str(task.outputs.files), task.outputs.path or "-",
             task.outputs.message or ""] for name, task in status.tasks.items() if task.outputs is not None]
    if not rows:
        return ""
    cleaned = "  (removed by ttlSecondsAfterFinished)" if status.cleaned_at else ""
    return f"Outputs:{cleaned}\n" + _indent(table(["TASK", "PHASE", "FILES", "WHERE", "MESSAGE"], rows))


def _efficiency(status: WorkflowStatus) -> str:
    """What each task's latest finished attempt used of the CPUs and memory it was given."""
    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    rows = [[name, share(task.efficiency.cpu), share(task.efficiency.memory), str(task.billed_core_seconds)]
            for name, task in status.tasks.items() if task.efficiency is not None]
    if not rows:
        return ""
    return "Efficiency:\n" + _indent(table(["TASK", "CPU", "MEMORY", "BILLED-CORE-SECONDS"], rows))


def _choices(status: WorkflowStatus) -> str:
    """What was chosen for the tasks with auto resources, and why (``reconciler explain`` lists
    every candidate)."""
    rows = []
    for name, task in status.tasks.items():
        choice = task.choice
        if choice is None:
            continue
        chosen = " ".join(f"{key}={value}" for key, value in (
            ("partition", choice.partition), ("nodes", choice.nodes), ("cpus", choice.cpus), ("time", choice.time),
            ("memory", choice.memory)) if value is not None)
        rows.append([name, chosen or "-", choice.reason, choice.message])
    if not rows:
        return ""
    return "Choices:\n" + _indent(table(["TASK", "CHOSEN", "REASON", "WHY"], rows))


def _attempts(status: WorkflowStatus, attempts: Sequence[AttemptHistory]) -> str:
    # In the order of the task table (the DAG's), each task's attempts oldest first.
    order = {name: position for position, name in enumerate(status.tasks)}
    ordered = sorted(attempts, key=lambda a: (order.get(a.key.task, len(order)), a.key.attempt, a.key.part))
    return "Attempts:\n" + _indent(table(["TASK", "ATTEMPT", "JOB", "REQUESTED", "OUTCOME", "EXIT", "CORE-HOURS"],
                                         [_attempt_row(a) for a in ordered]))


def _iterations(status: WorkflowStatus, approvals: TaskApprovals, attempts: Sequence[AttemptHistory]) -> str:
    """Every decision on each approval task, oldest first, with what the tasks after it did under
    it: each iteration's values, who gave them and when, and its outcome."""
    order = list(status.tasks)
    rows = []
    for task in sorted(approvals.tasks, key=lambda name: order.index(name) if name in order else len(order)):
        decisions = approvals.iterations(task)
        after = set(order[order.index(task) + 1:]) if task in order else set()
        followed: dict[int, list[AttemptHistory]] = {}
        for attempt in attempts:
            if attempt.key.task in after:
                followed.setdefault(_iteration_of(attempt, decisions, status), []).append(attempt)
        for number, decision in enumerate(decisions):
            rows.append([task, str(number + 1), "Rejected" if decision.rejected is not None else "Approved",
                         decision.rejected or described(decision.values) or "-", _who(decision),
                         f"{decision.at:%Y-%m-%d %H:%M:%SZ}", decision.fingerprint,
                         ", ".join(f"{a.key.task}#{a.key.attempt} {_outcome_text(a) or 'submitted'}"
                                   for a in followed.get(number, [])) or "-"])
    return "Approvals:\n" + _indent(table(["TASK", "ITERATION", "DECISION", "VALUES", "BY", "AT", "INPUTS", "THEN"],
                                          rows))


def _iteration_of(attempt: AttemptHistory, decisions: Sequence[Approval], status: WorkflowStatus) -> int:
    """The iteration an attempt of a task after the approval ran under: the newest one if it ran
    the task as the status shows it now (its fingerprint folds in the newest values); else the
    last earlier one given before it was recorded. (A tick stamps what it submits with the time
    it started, which may precede an approval it read: fingerprints, not times, tell the newest.)"""
    newest = len(decisions) - 1
    shown = status.tasks.get(attempt.key.task)
    if shown is not None and attempt.fingerprint == shown.fingerprint:
        return newest
    earlier = [number for number, decision in enumerate(decisions[:newest]) if decision.at <= attempt.recorded_at]
    return earlier[-1] if earlier else 0


def _who(decision: Approval) -> str:
    return f"{decision.by} ({decision.via.value})" if decision.via is ApprovalVia.CLI else decision.via.value


def _waiting(row: WorkflowRow, status: WorkflowStatus) -> str:
    waiting = awaiting_approval(status)
    if not waiting:
        return ""
    return "Waiting for a person:\n" + "".join(_approval_hint(row.name, task, status.tasks[task]) for task in waiting)


def _approval_hint(workflow: str, name: str, task: TaskStatus) -> str:
    """The command that approves the task, the inputs it approves, and why it asks again."""
    inputs = f"  (approves inputs {task.fingerprint})" if task.fingerprint else ""
    why = f"    {task.message}\n" if task.reason in (APPROVAL_STALE, "ApprovalInvalid") and task.message else ""
    wanted = "".join(_parameter_line(p) for p in task.approval.parameters) if task.approval is not None else ""
    return f"  reconciler approve {workflow} {name}{_set_words(task)}{inputs}\n{why}{wanted}"


def _set_words(task: TaskStatus | None) -> str:
    """The ``--set`` words approving the task takes: each parameter at its default, or VALUE."""
    asked = task.approval.parameters if task is not None and task.approval is not None else []
    return "".join(f" --set {p.name}={'VALUE' if p.default is None else render(p.default)}" for p in asked)


def _parameter_line(parameter: ApprovalParameter) -> str:
    default = f", default {render(parameter.default)}" if parameter.default is not None else ""
    about = f": {parameter.description}" if parameter.description else ""
    return f"    {parameter.name} ({parameter.type.value}{default}){about}\n"


def _events(events: Sequence[EventRow], *, now: datetime) -> str:
    if not events:
        return "Events:\n  <none>\n"
    return "Events:\n" + _indent(table(["AGE", "TYPE", "REASON", "MESSAGE"],
                                       [[age(e.at, now), e.type, e.reason, e.message] for e in events]))


# The parts of a request the attempts table shows, in this order.
_REQUESTED = ("time", "memory", "cpus", "partition")


def _attempt_row(attempt: AttemptHistory) -> list[str]:
    requested = attempt.resources.model_dump(exclude_none=True)
    asked = " ".join(f"{key}={requested[key]}" for key in _REQUESTED if key in requested)
    outcome = attempt.outcome
    return [f"{attempt.key.task}.p{attempt.key.part}" if attempt.key.part else attempt.key.task,
            str(attempt.key.attempt), attempt.job_id or "-", asked or "-", _outcome_text(attempt),
            "-" if outcome is None or outcome.exit_code is None else str(outcome.exit_code),
            f"{outcome.core_hours if outcome else 0:.4f}"]


def _outcome_text(attempt: AttemptHistory) -> str:
    outcome = attempt.outcome
    if outcome is None:
        return "" if attempt.job_id else "submitting"
    text = outcome.failure.value if outcome.failure else outcome.phase.value
    # A finished job keeps the last reason it waited for; only an unsuccessful end needs one.
    if outcome.reason and outcome.reason != text and outcome.phase is not TaskPhase.SUCCEEDED:
        text = f"{text} ({outcome.reason})"
    return text


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())
