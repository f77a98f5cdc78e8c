"""The Git-mode verbs that act on a run by hand, and the one that previews a push: ``cancel``,
``retry`` and ``diff``.

Called by :mod:`reconciler.cli.main` with parsed arguments. ``cancel`` and ``retry`` only record
a request in the store (``reconciler.store.requests``), so they work while a loop runs, like
``approve``; the loop's next tick carries them out. ``diff`` reads a source and the store and
acts on nothing: it calls no Slurm command and records nothing (a missing store stays missing).
Exit codes: 0 done (``diff``: no change), 1 ``diff`` found changes or the request was refused,
2 an error (``diff``: the source could not be read).
"""

from __future__ import annotations

import getpass
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from ..api import TaskPhase
from ..core.desired import classify_desired
from ..core.diff import DiffReport, StoredRun, TaskChange, TaskDiff, WorkflowChange, WorkflowDiff
from ..core.diff import diff as compare
from ..core.requests import cancellable_tasks, refusal_to_cancel, refusal_to_retry
from ..store.database import Store, StoredWorkflow, database_path
from .commands import open_store, state_dir
from .output import dump

KIND = "workflow.hpc.reconciler.dev"


def _active(store: Store, name: str) -> StoredWorkflow | None:
    namespace, _, short = name.rpartition("/")
    stored = store.workflow(namespace or "default", short)
    if stored is None or not stored.active:
        print(f'Error: workflow "{name}" not found', file=sys.stderr)
        return None
    return stored


def cancel(*, state: str | None, name: str, task: str | None) -> int:
    """Cancel one task of the active run ``name``, or every task that has not finished."""
    with open_store(state_dir(state)) as store:
        stored = _active(store, name)
        if stored is None:
            return 1
        if task is None:
            tasks = cancellable_tasks(stored.status)
            if not tasks:
                print(f"Error: workflow {name} has no task left to cancel", file=sys.stderr)
                return 1
        else:
            refusal = refusal_to_cancel(stored.status, task)
            if refusal is not None:
                print(f"Error: {refusal}", file=sys.stderr)
                return 1
            tasks = {task: cancellable_tasks(stored.status)[task]}
        store.request_cancel(stored.uid, tasks, by=getpass.getuser(), now=datetime.now(UTC))
    for cancelled in sorted(tasks):
        print(f"{KIND}/{stored.name} task {cancelled} cancelled")
    return 0


def retry(*, state: str | None, name: str, task: str) -> int:
    """Ask for a new attempt of a Failed or Cancelled task of the active run ``name``."""
    with open_store(state_dir(state)) as store:
        stored = _active(store, name)
        if stored is None:
            return 1
        refusal = refusal_to_retry(stored.status, task)
        if refusal is not None:
            print(f"Error: {refusal}", file=sys.stderr)
            return 1
        after = store.request_retry(stored.uid, task, by=getpass.getuser(), now=datetime.now(UTC))
    print(f"{KIND}/{stored.name} task {task} retried (a new attempt after attempt {after})")
    return 0


def diff(*, source: str, path: str | None, branch: str | None, revision: str | None, state: str | None,
         output: str) -> int:
    """What a push of ``source`` (at ``revision``) would change against the stored runs."""
    from ..engine.staging import find_inputs, input_states
    from ..sources import SourceError, open_source

    with tempfile.TemporaryDirectory(prefix="reconciler-diff-") as cache:
        try:
            opened = open_source(source, path=path, branch=branch, revision=revision, cache_dir=Path(cache))
        except ValueError as exc:
            print(f"diff: {exc}", file=sys.stderr)
            return 2
        try:
            snapshot = opened.read()
        except SourceError as exc:
            print(f"diff: cannot read {opened.description}: {exc}", file=sys.stderr)
            return 2
        finally:
            opened.close()
        runs = _stored_runs(state_dir(state))
        desired = classify_desired(snapshot.load, active={(r.namespace, r.name): f for r, f in runs})
        # Read while the checkout exists: a task's inputs count towards its fingerprint.
        inputs = {(w.workflow.metadata.namespace, w.workflow.metadata.name): {
            task: found.digest for task, found in input_states(find_inputs(
                w, content=snapshot.content, config_maps=snapshot.config_maps)).items()} for w in desired.valid}
    report = compare(desired=desired, stored=[run for run, _ in runs], resources=snapshot.load.resources,
                     inputs=inputs)
    if output in ("json", "yaml"):
        sys.stdout.write(dump(report.as_dict(), output=output))
    else:
        sys.stdout.write(render_diff(report))
    return 1 if report.changed else 0


def _stored_runs(directory: Path) -> list[tuple[StoredRun, str | None]]:
    """The active runs with the file each was last read from; none when there is no store yet
    (a diff never creates one)."""
    if not database_path(directory).exists():
        return []
    with open_store(directory) as store:
        return [(StoredRun(namespace=w.namespace, name=w.name, resource=w.resource, status=w.status,
                           approvals=store.approvals(w.uid)), w.source_file)
                for w in store.active_workflows()]


_MARKS = {WorkflowChange.CREATED: "+", WorkflowChange.PRUNED: "-", WorkflowChange.CHANGED: "~",
          WorkflowChange.INVALID: "!", WorkflowChange.UNCHANGED: "="}
_TASK_MARKS = {TaskChange.ADDED: "+", TaskChange.REMOVED: "-", TaskChange.RERUNS: "~", TaskChange.KEEPS: "="}


def render_diff(report: DiffReport) -> str:
    """The report as text: one line per workflow, then one per task with why it reruns."""
    lines: list[str] = []
    for w in report.workflows:
        lines.append(f"{_MARKS[w.change]} {KIND}/{w.identity} {_workflow_summary(w)}")
        lines += [f"    {f.path}: {_show(f.old)} -> {_show(f.new)}" for f in w.fields]
        lines += [f"    {error}" for error in w.errors]
        if w.change in (WorkflowChange.CHANGED, WorkflowChange.CREATED):
            lines += [f"  {_TASK_MARKS[t.change]} task {t.name} {_task_summary(t)}" for t in w.tasks]
    lines += [f"! {error}" for error in report.errors]
    if not report.changed:
        lines.append("no changes")
    return "\n".join(lines) + "\n"


def _workflow_summary(w: WorkflowDiff) -> str:
    jobs = f"; cancels job(s) {', '.join(w.cancelled_jobs)}" if w.cancelled_jobs else ""
    if w.change is WorkflowChange.CREATED:
        return f"created ({len(w.tasks)} tasks)"
    if w.change is WorkflowChange.PRUNED:
        return f"pruned{jobs}"
    if w.change is WorkflowChange.CHANGED:
        reruns = sum(1 for t in w.tasks if t.change is TaskChange.RERUNS)
        return f"changed ({reruns} of {len(w.tasks)} tasks rerun){jobs}"
    return w.change.value


def _task_summary(t: TaskDiff) -> str:
    if t.change is TaskChange.RERUNS:
        return f"reruns: {'; '.join(t.why)}"
    if t.change is TaskChange.KEEPS:
        kept = "result" if t.phase is TaskPhase.SUCCEEDED else "state"
        return f"keeps its {kept} ({t.phase.value if t.phase else '-'})"
    return "is new" if t.change is TaskChange.ADDED else "is removed"


def _show(value: object) -> str:
    return "(none)" if value is None else repr(value) if isinstance(value, str) else str(value)
