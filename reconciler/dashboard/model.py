"""What the dashboard's pages and JSON show, computed from stored workflows: pure, data in and
frozen values out.

Called by :mod:`reconciler.dashboard.server` with the rows it read from the store; the HTML
(:mod:`.render`) and the JSON endpoints are both drawn from these values, so the two never
disagree. Guarantees:

* workflows that wait for a person (a task awaiting approval, a true ``Stalled`` or
  ``NeedsAttention`` condition) come first in every list, each with the reasons why;
* progress counts array elements one by one (a 100-element array is 100 steps, not one);
* a workflow's graph has one node per task, an array as one node with its element counts, and
  one edge per ``dependsOn`` entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..api import ConditionStatus, TaskPhase, TaskType, WorkflowStatus
from ..api.approval import ApprovalParameter, ApprovalValue
from ..core.approval_values import ApprovalValuesError, parse_assignments
from ..core.approval_values import render as rendered
from ..core.approvals import Approval, TaskApprovals
from ..core.selectors import Selector
from ..store.rows import EventRow, WorkflowRow

# The conditions that mean a person has to act; NeedsAttention sums them up where the loop sets it.
ATTENTION_CONDITIONS = ("NeedsAttention", "Stalled")


@dataclass(frozen=True, kw_only=True)
class Progress:
    """Steps done of all steps: a plain task is one step, an array task one per element."""

    done: int
    total: int

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0

    @property
    def text(self) -> str:
        return f"{self.done}/{self.total}"


@dataclass(frozen=True, kw_only=True)
class WorkflowSummary:
    """One line of the workflow list."""

    namespace: str
    name: str
    phase: str
    progress: Progress
    core_hours: float
    labels: dict[str, str]
    created_at: datetime
    awaiting_approval: tuple[str, ...]  # approval tasks waiting for a person now
    attention: tuple[str, ...]  # why a person is needed, one sentence each
    message: str  # the Ready condition's message

    @property
    def needs_person(self) -> bool:
        return bool(self.awaiting_approval or self.attention)


@dataclass(frozen=True, kw_only=True)
class GraphNode:
    name: str
    kind: str  # "job" or "approval"
    phase: str
    # An array task's element counts by phase (empty for a plain task), and its size.
    elements: dict[str, int] = field(default_factory=dict)
    size: int | None = None

    @property
    def detail(self) -> str:
        """The node's second line: its element counts, else its phase."""
        if self.size is None:
            return self.phase
        done = self.elements.get(TaskPhase.SUCCEEDED.value, 0)
        return f"{done}/{self.size} " + " ".join(f"{phase[:4]}={count}" for phase, count in self.elements.items()
                                                 if phase != TaskPhase.SUCCEEDED.value)


@dataclass(frozen=True, kw_only=True)
class TaskLine:
    """One row of a workflow page's task table."""

    name: str
    kind: str
    phase: str
    job_id: str | None
    attempts: int
    exit_code: int | None
    core_hours: float
    detail: str  # the reason and message, or an array's counts


@dataclass(frozen=True, kw_only=True)
class ApprovalField:
    """A value an approval task asks for when it is approved."""

    name: str
    type: str
    default: str | None = None
    description: str | None = None


@dataclass(frozen=True, kw_only=True)
class ApprovalRequest:
    """An approval task waiting for a person, with what approving it asks for."""

    task: str
    fingerprint: str  # the inputs approving it approves
    message: str | None
    fields: tuple[ApprovalField, ...] = ()
    # A succeeded approval with parameters: approving it with other values is a new iteration,
    # which runs the tasks after it again. ``values``: those it holds now.
    again: bool = False
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class WorkflowPage:
    summary: WorkflowSummary
    nodes: tuple[GraphNode, ...]
    edges: tuple[tuple[str, str], ...]  # (prerequisite, dependent)
    tasks: tuple[TaskLine, ...]
    events: tuple[EventRow, ...]
    approvals: tuple[ApprovalRequest, ...]
    conditions: tuple[tuple[str, str, str, str], ...]  # (type, status, reason, message)
    revision: str | None
    cluster: str | None


@dataclass(frozen=True, kw_only=True)
class Tail:
    """The end of a task's output, as read from its cluster."""

    task: str
    job_id: str
    index: int | None  # the array element shown
    path: str  # the file on the cluster
    text: str
    cut: bool  # the start of what was read is left out
    unread: bool  # the file goes on past what was read


# -- the list ------------------------------------------------------------------------------------

def progress(status: WorkflowStatus | None, declared: int = 0) -> Progress:
    """Elements done of all elements: a task counts one, an array as many as it has elements.
    ``declared`` tasks are counted while the loop has not written a status yet."""
    if status is None or not status.tasks:
        return Progress(done=0, total=declared)
    done = total = 0
    for task in status.tasks.values():
        if task.array is not None:
            total += task.array.total
            done += task.array.counts.get(TaskPhase.SUCCEEDED.value, 0)
        else:
            total += 1
            done += task.phase in (TaskPhase.SUCCEEDED, TaskPhase.SKIPPED)
    return Progress(done=done, total=total)


def awaiting_approval(status: WorkflowStatus | None) -> tuple[str, ...]:
    if status is None:
        return ()
    return tuple(name for name, task in status.tasks.items() if task.phase is TaskPhase.AWAITING_APPROVAL)


def attention(status: WorkflowStatus | None) -> tuple[str, ...]:
    """Why the workflow needs a person beyond the approvals it awaits, from its true attention
    conditions: NeedsAttention where the loop sets it (it speaks for Stalled), else Stalled."""
    if status is None:
        return ()
    true = {c.type: c for c in status.conditions if c.status is ConditionStatus.TRUE}
    for kind in ATTENTION_CONDITIONS:
        condition = true.get(kind)
        # An approval awaited is listed by its task, with the form that gives it.
        if condition is not None and condition.reason != TaskPhase.AWAITING_APPROVAL.value:
            return (f"{condition.reason}: {condition.message}" if condition.message else condition.reason,)
    return ()


def _ready_message(status: WorkflowStatus | None) -> str:
    ready = next((c for c in status.conditions if c.type == "Ready"), None) if status else None
    return ready.message if ready else ""


def summary(row: WorkflowRow) -> WorkflowSummary:
    status = row.status
    return WorkflowSummary(
        namespace=row.namespace, name=row.name, phase=status.phase.value if status else "Pending",
        progress=progress(status, len(row.spec.get("tasks") or ())), core_hours=status.core_hours if status else 0.0,
        labels=dict(row.labels), created_at=row.created_at, awaiting_approval=awaiting_approval(status),
        attention=attention(status), message=_ready_message(status),
    )


def workflow_list(rows: Iterable[WorkflowRow], selector: Selector) -> list[WorkflowSummary]:
    """The workflows whose labels match, those waiting for a person first, then by namespace and name."""
    chosen = [summary(row) for row in rows if selector.matches(row.labels)]
    return sorted(chosen, key=lambda s: (not s.needs_person, s.namespace, s.name))


# -- one workflow --------------------------------------------------------------------------------

def _declared_tasks(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [t for t in spec.get("tasks") or () if isinstance(t, dict) and "name" in t]


def _node(name: str, declared: Mapping[str, Any], status: WorkflowStatus | None) -> GraphNode:
    shown = status.tasks.get(name) if status else None
    kind = str(declared.get("type") or TaskType.JOB.value)
    phase = shown.phase.value if shown else TaskPhase.WAITING.value
    if shown is not None and shown.array is not None:
        return GraphNode(name=name, kind=kind, phase=phase, elements=dict(shown.array.counts), size=shown.array.total)
    return GraphNode(name=name, kind=kind, phase=phase)


def graph(row: WorkflowRow) -> tuple[tuple[GraphNode, ...], tuple[tuple[str, str], ...]]:
    """The DAG's nodes in the status's (topological) order and its edges. A template instance
    declares no tasks of its own: its nodes are the status's, without edges."""
    declared = {t["name"]: t for t in _declared_tasks(row.spec)}
    shown = list(row.status.tasks) if row.status else []
    names = [*shown, *(name for name in declared if name not in shown)]
    nodes = tuple(_node(name, declared.get(name, {}), row.status) for name in names)
    edges = tuple((str(before), name) for name, task in declared.items()
                  for before in task.get("dependsOn") or () if before in declared)
    return nodes, edges


def _task_detail(reason: str | None, message: str | None, counts: Mapping[str, int] | None) -> str:
    parts = [" ".join(f"{phase}={count}" for phase, count in counts.items())] if counts else []
    parts += [text for text in (reason, message) if text]
    return "  ".join(parts)


def task_lines(row: WorkflowRow, nodes: Sequence[GraphNode]) -> tuple[TaskLine, ...]:
    lines = []
    for node in nodes:
        shown = row.status.tasks.get(node.name) if row.status else None
        lines.append(TaskLine(
            name=node.name, kind=node.kind, phase=node.phase, job_id=shown.job_id if shown else None,
            attempts=shown.attempts if shown else 0, exit_code=shown.exit_code if shown else None,
            core_hours=shown.core_hours if shown else 0.0,
            detail=_task_detail(shown.reason, shown.message, node.elements) if shown else ""))
    return tuple(lines)


def declared_parameters(row: WorkflowRow, task: str) -> list[ApprovalParameter] | None:
    """The parameters approval task ``task`` declares; None when the workflow declares no tasks
    of its own (a template instance), so nothing says which values it takes."""
    declared = {t["name"]: t for t in _declared_tasks(row.spec)}
    if not declared:
        return None
    return [ApprovalParameter.model_validate(item) for item in declared.get(task, {}).get("parameters") or ()]


def approval_fields(parameters: Sequence[ApprovalParameter]) -> tuple[ApprovalField, ...]:
    return tuple(ApprovalField(name=p.name, type=p.type.value, description=p.description,
                               default=None if p.default is None else rendered(p.default)) for p in parameters)


def approval_requests(row: WorkflowRow, approvals: TaskApprovals) -> tuple[ApprovalRequest, ...]:
    """The approval tasks waiting for a person now, each with the fingerprint it would approve;
    then the succeeded ones with parameters, which may be approved again with other values."""
    if row.status is None:
        return ()
    waiting, again = [], []
    for name, task in row.status.tasks.items():
        parameters = declared_parameters(row, name) or ()
        if not task.fingerprint:
            continue
        fields = approval_fields(parameters)
        if task.phase is TaskPhase.AWAITING_APPROVAL:
            waiting.append(ApprovalRequest(task=name, fingerprint=task.fingerprint, message=task.message,
                                           fields=fields))
        elif task.phase is TaskPhase.SUCCEEDED and parameters:
            current = approvals.current(name, fingerprint=task.fingerprint)
            values = {k: rendered(v) for k, v in current.values.items()} if current is not None else {}
            again.append(ApprovalRequest(task=name, fingerprint=task.fingerprint, message=task.message,
                                         fields=fields, again=True, values=values))
    return (*waiting, *again)


def workflow_page(row: WorkflowRow, events: Sequence[EventRow], approvals: TaskApprovals | None = None) -> WorkflowPage:
    nodes, edges = graph(row)
    status = row.status
    return WorkflowPage(
        summary=summary(row), nodes=nodes, edges=edges, tasks=task_lines(row, nodes), events=tuple(events),
        approvals=approval_requests(row, approvals or TaskApprovals()),
        conditions=tuple((c.type, c.status.value, c.reason, c.message) for c in status.conditions) if status else (),
        revision=status.revision if status else None, cluster=(status.cluster if status else None)
        or (str(row.spec.get("cluster")) if isinstance(row.spec.get("cluster"), str) else None),
    )


# -- approving -----------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Refusal:
    """Why an approval cannot be given, with the HTTP status that says so."""

    status: int
    message: str


def approval_values(row: WorkflowRow, task: str, given: Mapping[str, str]) -> dict[str, ApprovalValue] | Refusal:
    """The values ``given`` as text (the form's fields, or the JSON's values), read as the
    parameters ``task`` declares, the way ``reconciler approve --set`` reads them; fields left
    empty take their defaults."""
    parameters = declared_parameters(row, task)
    assignments = [f"{name}={text}" for name, text in given.items() if text != ""]
    if parameters is None:
        if assignments:
            return Refusal(status=400, message=f"workflow {row.name} takes its tasks from a template: approve {task} "
                                               "with values in its manifest (approved: {NAME: VALUE})")
        return {}
    try:
        return parse_assignments(parameters, assignments)
    except ApprovalValuesError as exc:
        return Refusal(status=400, message=f"task {task} of workflow {row.name} is not approved (nothing changed): "
                                           + "; ".join(exc.problems))


def approval_target(row: WorkflowRow, task: str) -> str | Refusal:
    """The fingerprint approving ``task`` of ``row`` approves now, or why it cannot be approved
    from the dashboard: only an approval task awaiting a person, as the page showed it."""
    declared = {t["name"]: t for t in _declared_tasks(row.spec)}
    shown = row.status.tasks.get(task) if row.status else None
    if declared and str(declared.get(task, {}).get("type") or "") != TaskType.APPROVAL.value:
        approvals = sorted(n for n, t in declared.items() if t.get("type") == TaskType.APPROVAL.value)
        return Refusal(status=404, message=f"workflow {row.name} has no approval task {task!r} "
                                           f"(approval tasks: {', '.join(approvals) or 'none'})")
    if shown is None or not shown.fingerprint:
        return Refusal(status=409, message=f"workflow {row.name} shows no task {task} yet "
                                           "(the loop has not planned it)")
    if shown.phase is TaskPhase.SUCCEEDED and declared_parameters(row, task):
        return shown.fingerprint  # approved again with other values: a new iteration
    if shown.phase is not TaskPhase.AWAITING_APPROVAL:
        return Refusal(status=409, message=f"task {task} is {shown.phase.value}, not awaiting approval")
    return shown.fingerprint


def repeated(row: WorkflowRow, task: str, current: Approval | None, values: Mapping[str, ApprovalValue]) -> bool:
    """Whether approving ``task`` with ``values`` changes nothing: it succeeded already, and
    either no values are given or they are those approved now."""
    shown = row.status.tasks.get(task) if row.status else None
    if shown is None or shown.phase is not TaskPhase.SUCCEEDED:
        return False
    holds = current is not None and current.rejected is None and dict(current.values) == dict(values)
    return holds or not values


# -- JSON ----------------------------------------------------------------------------------------

def summary_json(item: WorkflowSummary) -> dict[str, Any]:
    return {"namespace": item.namespace, "name": item.name, "phase": item.phase,
            "progress": {"done": item.progress.done, "total": item.progress.total},
            "coreHours": item.core_hours, "labels": dict(item.labels),
            "creationTimestamp": item.created_at.isoformat().replace("+00:00", "Z"),
            "needsPerson": item.needs_person, "awaitingApproval": list(item.awaiting_approval),
            "attention": list(item.attention), "message": item.message}


def page_json(page: WorkflowPage) -> dict[str, Any]:
    return {
        **summary_json(page.summary), "revision": page.revision, "cluster": page.cluster,
        "conditions": [{"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in page.conditions],
        "graph": {"nodes": [{"name": n.name, "kind": n.kind, "phase": n.phase, "size": n.size,
                             "elements": dict(n.elements)} for n in page.nodes],
                  "edges": [{"from": a, "to": b} for a, b in page.edges]},
        "tasks": [{"name": t.name, "kind": t.kind, "phase": t.phase, "jobId": t.job_id, "attempts": t.attempts,
                   "exitCode": t.exit_code, "coreHours": t.core_hours, "detail": t.detail} for t in page.tasks],
        "events": [{"at": e.at.isoformat().replace("+00:00", "Z"), "type": e.type, "reason": e.reason,
                    "message": e.message} for e in page.events],
        "approvals": [{"task": a.task, "fingerprint": a.fingerprint, "message": a.message, "again": a.again,
                       "values": dict(a.values),
                       "inputs": [{"name": f.name, "type": f.type, "default": f.default,
                                   "description": f.description} for f in a.fields]} for a in page.approvals],
    }
