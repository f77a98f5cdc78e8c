"""What a push would change: the declared workflows compared with the stored runs.

Pure. Called by ``reconciler diff`` with the store's active runs (resource and status) and the
source's content sorted by ``classify_desired``; it touches neither Slurm nor the store. It
answers as the loop would act on its next tick:

* a declared workflow with no active run is **created**; an active run no longer declared is
  **pruned**, and its live jobs (the job ids its status shows) cancelled;
* in a workflow that stays, a task **reruns** when its fingerprint differs from the one its
  status holds, and the report says why: the fields of its own spec that differ (``env.DOSE``,
  ``resources.time``, ``script``), the prerequisites that rerun, or, when neither, the content
  of its inputs; every other task keeps its result;
* a workflow whose manifest is broken is **invalid** (the loop would stall it), with its errors.

The old spec of a task is read from the stored resource, resolved against the templates and
clusters declared now; a template instance whose template changed shows the rerun without field
names (the fingerprints still say exactly which tasks rerun).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from ..api import SlurmCluster, Task, TaskPhase, TaskStatus, Workflow, WorkflowStatus, WorkflowTemplate
from ..manifests.loader import LoadedResource
from ..manifests.resolve import ResolvedWorkflow, resolve_workflow
from .approvals import TaskApprovals
from .desired import DesiredState, Identity
from .fingerprint import fingerprints, own_fingerprint
from .observed import LIVE_PHASES


class WorkflowChange(StrEnum):
    CREATED = "created"
    PRUNED = "pruned"
    CHANGED = "changed"
    INVALID = "invalid"
    UNCHANGED = "unchanged"


class TaskChange(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    RERUNS = "reruns"
    KEEPS = "keeps"  # same fingerprint: its result (or its run) stays as it is


@dataclass(frozen=True)
class StoredRun:
    """What the store holds of one active run."""

    namespace: str
    name: str
    resource: dict  # the resource as last read valid, in wire form
    status: WorkflowStatus | None
    # Its approvals: their values count in the fingerprints of the tasks after them.
    approvals: TaskApprovals = field(default_factory=TaskApprovals)


@dataclass(frozen=True)
class FieldDiff:
    path: str  # dotted, in the manifest's own spelling: env.DOSE, resources.time
    old: Any
    new: Any


@dataclass(frozen=True)
class TaskDiff:
    name: str
    change: TaskChange
    phase: TaskPhase | None = None  # the stored status's phase
    fields: tuple[FieldDiff, ...] = ()  # of its own spec that count towards its fingerprint
    upstream: tuple[str, ...] = ()  # prerequisites that rerun
    inputs: bool = False  # its own spec and prerequisites are the same: its inputs' content changed
    spec_unknown: bool = False  # the old spec could not be read back (a template that changed)

    @property
    def why(self) -> list[str]:
        reasons = [f"{f.path}: {_show(f.old)} -> {_show(f.new)}" for f in self.fields]
        if self.spec_unknown:
            reasons.append("its spec changed")
        reasons += [f"upstream {name} reruns" for name in self.upstream]
        if self.inputs:
            reasons.append("the content of its inputs changed")
        return reasons


@dataclass(frozen=True)
class WorkflowDiff:
    namespace: str
    name: str
    change: WorkflowChange
    tasks: tuple[TaskDiff, ...] = ()
    fields: tuple[FieldDiff, ...] = ()  # of the workflow, beyond its tasks (suspend, labels, ...)
    cancelled_jobs: tuple[str, ...] = ()  # live jobs a prune cancels, or jobs of tasks that rerun
    errors: tuple[str, ...] = ()

    @property
    def identity(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class DiffReport:
    workflows: tuple[WorkflowDiff, ...] = ()
    errors: tuple[str, ...] = ()  # tied to no workflow (a cluster or template that does not load)

    @property
    def changed(self) -> bool:
        return any(w.change is not WorkflowChange.UNCHANGED for w in self.workflows)

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able data (``reconciler diff -o json|yaml``)."""
        return {"changed": self.changed, "errors": list(self.errors),
                "workflows": [_workflow_dict(w) for w in self.workflows]}


def diff(*, desired: DesiredState, stored: Iterable[StoredRun], resources: Iterable[LoadedResource] = (),
         inputs: Mapping[Identity, Mapping[str, str]] | None = None) -> DiffReport:
    """``desired`` as ``classify_desired`` sorted the source against ``stored`` (the active runs);
    ``resources`` are the source's, for the templates and clusters an old spec is resolved with;
    ``inputs`` the digest of each task's input files, by workflow, as the loop would hand them
    to ``fingerprints``."""
    runs = {(run.namespace, run.name): run for run in stored}
    context = _Context.of(resources)
    result = [
        _workflow_diff(resolved, runs.get(_identity(resolved)), context=context,
                       inputs=(inputs or {}).get(_identity(resolved)))
        for resolved in desired.valid
    ]
    result += [WorkflowDiff(i.namespace, i.name, WorkflowChange.INVALID, errors=tuple(i.messages))
               for i in desired.invalid]
    result += [_pruned(runs[identity]) for identity in desired.prune if identity in runs]
    return DiffReport(workflows=tuple(sorted(result, key=lambda w: (w.namespace, w.name))),
                      errors=tuple(str(error) for error in desired.errors))


@dataclass(frozen=True)
class _Context:
    """The templates and clusters declared now, to resolve a stored resource with."""

    templates: dict[tuple[str, str], WorkflowTemplate] = field(default_factory=dict)
    clusters: dict[str, SlurmCluster] = field(default_factory=dict)

    @classmethod
    def of(cls, resources: Iterable[LoadedResource]) -> _Context:
        context = cls()
        for loaded in resources:
            resource = loaded.resource
            if isinstance(resource, WorkflowTemplate):
                context.templates[(resource.metadata.namespace, resource.metadata.name)] = resource
            elif isinstance(resource, SlurmCluster):
                context.clusters[resource.metadata.name] = resource
        return context

    def old_tasks(self, resource: dict) -> dict[str, Task] | None:
        """The effective tasks of a stored resource, or None when it no longer resolves."""
        try:
            workflow = Workflow.model_validate(resource)
        except ValidationError:
            return None
        resolved = resolve_workflow(workflow, templates=self.templates, clusters=self.clusters,
                                    require_cluster=False)
        return resolved.tasks if isinstance(resolved, ResolvedWorkflow) else None


def _identity(resolved: ResolvedWorkflow) -> Identity:
    meta = resolved.workflow.metadata
    return (meta.namespace, meta.name)


def _workflow_diff(resolved: ResolvedWorkflow, run: StoredRun | None, *, context: _Context,
                   inputs: Mapping[str, str] | None) -> WorkflowDiff:
    namespace, name = _identity(resolved)
    new_fps = fingerprints(resolved.graph, inputs or None, approvals=run.approvals if run is not None else None)
    if run is None:
        return WorkflowDiff(namespace, name, WorkflowChange.CREATED,
                            tasks=tuple(TaskDiff(task, TaskChange.ADDED) for task in resolved.order))
    statuses = run.status.tasks if run.status else {}
    tasks = _task_diffs(resolved, statuses, new_fps=new_fps, old_tasks=context.old_tasks(run.resource))
    removed = [TaskDiff(task, TaskChange.REMOVED, phase=status.phase) for task, status in statuses.items()
               if task not in tasks]
    every = (*tasks.values(), *removed)
    fields = _workflow_fields(run.resource, resolved.workflow.to_wire())
    moved = any(t.change is not TaskChange.KEEPS for t in every) or fields
    return WorkflowDiff(namespace, name, WorkflowChange.CHANGED if moved else WorkflowChange.UNCHANGED,
                        tasks=every, fields=fields,
                        cancelled_jobs=_live_jobs(run.status, only={t.name for t in every
                                                                    if t.change is TaskChange.RERUNS}))


def _task_diffs(resolved: ResolvedWorkflow, statuses: Mapping[str, TaskStatus], *, new_fps: Mapping[str, str],
                old_tasks: Mapping[str, Task] | None) -> dict[str, TaskDiff]:
    """Each declared task, in dependency order, against the fingerprint its status holds."""
    tasks: dict[str, TaskDiff] = {}
    for task in resolved.order:
        stored = statuses.get(task)
        if stored is None or stored.fingerprint is None:
            tasks[task] = TaskDiff(task, TaskChange.ADDED)
        elif stored.fingerprint == new_fps[task]:
            tasks[task] = TaskDiff(task, TaskChange.KEEPS, phase=stored.phase)
        else:
            upstream = tuple(u for u in sorted(resolved.graph.predecessors(task))
                             if tasks[u].change in (TaskChange.RERUNS, TaskChange.ADDED))
            tasks[task] = _rerun(task, resolved.tasks[task], (old_tasks or {}).get(task), phase=stored.phase,
                                 upstream=upstream, old_known=old_tasks is not None)
    return tasks


def _rerun(name: str, new: Task, old: Task | None, *, phase: TaskPhase, upstream: tuple[str, ...],
           old_known: bool) -> TaskDiff:
    """Why a task whose fingerprint changed reruns."""
    if old is None:
        # Not in the stored resource (a template instance whose template changed, or a spec that
        # no longer resolves): the fingerprint says it reruns, the spec cannot say where.
        return TaskDiff(name, TaskChange.RERUNS, phase=phase, upstream=upstream, spec_unknown=not upstream)
    fields = _own_fields(old, new) if own_fingerprint(old) != own_fingerprint(new) else ()
    return TaskDiff(name, TaskChange.RERUNS, phase=phase, fields=fields, upstream=upstream,
                    inputs=not fields and not upstream and old_known)


# Field names as the manifest spells them (camelCase), by the model's attribute name.
_ALIASES = {name: info.alias or name for name, info in Task.model_fields.items()}


def _own_fields(old: Task, new: Task) -> tuple[FieldDiff, ...]:
    """The fields of a task's own spec that differ and count towards its fingerprint: a field
    counts when putting the new value into the old spec alone changes the fingerprint."""
    before = old.model_dump(mode="json", exclude_none=True)
    after = new.model_dump(mode="json", exclude_none=True)
    base = own_fingerprint(old)
    result: list[FieldDiff] = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) == after.get(key):
            continue
        if own_fingerprint(old.model_copy(update={key: getattr(new, key)})) == base:
            continue  # retry, labels, approval: edits that rerun nothing
        result.extend(_leaf_changes(_ALIASES.get(key, key), before.get(key), after.get(key)))
    return tuple(result)


def _leaf_changes(path: str, old: Any, new: Any) -> list[FieldDiff]:
    """Where two values differ, down to the keys of nested mappings (lists are one value)."""
    if isinstance(old, dict) and isinstance(new, dict):
        changes: list[FieldDiff] = []
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                changes.extend(_leaf_changes(f"{path}.{key}", old.get(key), new.get(key)))
        return changes
    return [FieldDiff(path, old, new)]


def _workflow_fields(old: dict, new: dict) -> tuple[FieldDiff, ...]:
    """What changed in the workflow beyond its tasks: spec fields (suspend, cluster, ...) and
    labels; the tasks speak for themselves."""
    old_spec = {k: v for k, v in (old.get("spec") or {}).items() if k != "tasks"}
    new_spec = {k: v for k, v in (new.get("spec") or {}).items() if k != "tasks"}
    old_labels = (old.get("metadata") or {}).get("labels") or {}
    new_labels = (new.get("metadata") or {}).get("labels") or {}
    changes = _leaf_changes("spec", old_spec, new_spec) if old_spec != new_spec else []
    if old_labels != new_labels:
        changes += _leaf_changes("metadata.labels", old_labels, new_labels)
    return tuple(changes)


def _live_jobs(status: WorkflowStatus | None, *, only: set[str] | None = None) -> tuple[str, ...]:
    """The job ids of the tasks (all, or ``only`` these) that Slurm still has, as the status shows."""
    if status is None:
        return ()
    ids = {job for name, task in status.tasks.items()
           if task.phase in LIVE_PHASES and task.job_id and (only is None or name in only)
           for job in task.job_id.split(",")}
    return tuple(sorted(ids))


def _pruned(run: StoredRun) -> WorkflowDiff:
    tasks = tuple(TaskDiff(name, TaskChange.REMOVED, phase=status.phase)
                  for name, status in (run.status.tasks.items() if run.status else ()))
    return WorkflowDiff(run.namespace, run.name, WorkflowChange.PRUNED, tasks=tasks,
                        cancelled_jobs=_live_jobs(run.status))


def _show(value: Any) -> str:
    return "(none)" if value is None else repr(value) if isinstance(value, str) else str(value)


def _workflow_dict(w: WorkflowDiff) -> dict[str, Any]:
    return {
        "namespace": w.namespace, "name": w.name, "change": w.change.value,
        "fields": [_field_dict(f) for f in w.fields],
        "cancelledJobs": list(w.cancelled_jobs),
        "errors": list(w.errors),
        "tasks": [{"name": t.name, "change": t.change.value, "phase": t.phase.value if t.phase else None,
                   "fields": [_field_dict(f) for f in t.fields], "upstream": list(t.upstream),
                   "inputs": t.inputs, "why": t.why} for t in w.tasks],
    }


def _field_dict(f: FieldDiff) -> dict[str, Any]:
    return {"path": f.path, "old": f.old, "new": f.new}
