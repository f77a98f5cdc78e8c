"""``reconciler approve`` and ``reconciler reject``: a person's decision on an approval task.

Called by :mod:`reconciler.cli` with parsed arguments. Only opens the store (so it works while a
loop runs) and records the decision for the fingerprint the status shows now: the loop's next
tick acts on it. Guarantees: values given with ``--set`` are checked against the task's declared
parameters before anything is written, and a refused value changes nothing (exit code 1);
approving with the values that hold already, or approving without values a task that is
approved, changes nothing either; approving a succeeded task with other values is a new
iteration, which reruns the tasks after it.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from ..api import TaskPhase, TaskStatus
from ..api.approval import ApprovalParameter
from ..core.approval_values import ApprovalValuesError, described, effective, parse_assignments
from ..core.approvals import ApprovalVia
from ..store.database import Store, StoredWorkflow
from .commands import open_store, state_dir


@dataclass(frozen=True)
class _Target:
    stored: StoredWorkflow
    shown: TaskStatus  # the approval task's status
    fingerprint: str  # the inputs the person looked at
    declaration: dict | None  # None for a template instance, whose tasks the manifest does not list


def _approval_task(store: Store, name: str, task: str) -> _Target | None:
    """The approval task to decide; None after saying what is wrong."""
    namespace, _, short = name.rpartition("/")
    stored = store.workflow(namespace or "default", short)
    if stored is None or stored.removed_at is not None:
        print(f'Error: workflow "{name}" not found', file=sys.stderr)
        return None
    tasks = (stored.resource.get("spec") or {}).get("tasks") or []
    declared = {t.get("name"): t for t in tasks}
    known = stored.status.tasks if stored.status else {}
    # A template instance declares no tasks itself: its status names them.
    if (declared.get(task, {}).get("type", "job") != "approval") if declared else (task not in known):
        approvals = sorted(n for n, t in declared.items() if t.get("type") == "approval")
        print(f"Error: workflow {name} has no approval task {task!r} (approval tasks: "
              f"{', '.join(approvals) or 'none'})", file=sys.stderr)
        return None
    shown = known.get(task)
    if shown is None or not shown.fingerprint:
        print(f"Error: workflow {name} shows no task {task} yet (the loop has not planned it): decide once "
              f"`reconciler get workflow {name}` lists it, so the decision names the inputs it is for",
              file=sys.stderr)
        return None
    return _Target(stored=stored, shown=shown, fingerprint=shown.fingerprint, declaration=declared.get(task))


def _parameters(found: _Target) -> list[ApprovalParameter] | None:
    """The task's parameters: as the status shows them (a template instance's too), else as
    declared; None when neither says."""
    if found.shown.approval is not None:
        return list(found.shown.approval.parameters)
    if found.declaration is None:
        return None
    return [ApprovalParameter.model_validate(item) for item in found.declaration.get("parameters") or []]


def approve(*, state: str | None, name: str, task: str, assignments: Sequence[str] = ()) -> int:
    with open_store(state_dir(state)) as store:
        found = _approval_task(store, name, task)
        if found is None:
            return 1
        stored, shown, fingerprint = found.stored, found.shown, found.fingerprint
        try:
            parameters = _parameters(found)
            values = parse_assignments(parameters, assignments) if parameters is not None else None
        except (ApprovalValuesError, ValidationError) as exc:
            problems = exc.problems if isinstance(exc, ApprovalValuesError) else [str(exc)]
            print(f"Error: task {task} of workflow {name} is not approved (nothing changed):\n"
                  + "".join(f"  {problem}\n" for problem in problems), file=sys.stderr, end="")
            return 1
        if values is None and assignments:
            print(f"Error: task {task} of workflow {name} shows no parameters yet (the loop has not planned it with "
                  "them): approve it once `reconciler describe` lists them", file=sys.stderr)
            return 1
        current = store.approvals(stored.uid).current(task, fingerprint=fingerprint)
        # The same values, defaults filled in, are no new iteration: nothing would run again.
        asked = parameters or []
        holds = current is not None and current.rejected is None and (
            effective(asked, current.values) == effective(asked, values or {}))
        if shown.phase is TaskPhase.SUCCEEDED and (holds or not values):
            print(f"workflow.hpc.reconciler.dev/{stored.name} task {task} is already approved for its current "
                  f"inputs ({fingerprint}){_with(values)}: nothing to do")
            return 0
        # The fingerprint the person looked at: an approval holds for these inputs only.
        store.approve(stored.namespace, stored.name, task, fingerprint=fingerprint, via=ApprovalVia.CLI,
                      by=getpass.getuser(), now=datetime.now(UTC), values=values or None)
    if shown.phase not in (TaskPhase.AWAITING_APPROVAL, TaskPhase.SUCCEEDED, TaskPhase.FAILED):
        print(f"note: task {task} is {shown.phase.value}, not awaiting approval: the tasks before it run first, and "
              f"this approval counts once they succeed with the inputs shown now; if they change, {task} asks again")
    again = " again: the tasks after it run with these values" if shown.phase is TaskPhase.SUCCEEDED else ""
    print(f"workflow.hpc.reconciler.dev/{stored.name} task {task} approved{_with(values)} "
          f"(inputs {fingerprint}){again}")
    return 0


def reject(*, state: str | None, name: str, task: str, reason: str) -> int:
    if not reason.strip():
        print("Error: --reason must say why (it is shown in the task's status)", file=sys.stderr)
        return 1
    with open_store(state_dir(state)) as store:
        found = _approval_task(store, name, task)
        if found is None:
            return 1
        stored, fingerprint = found.stored, found.fingerprint
        store.approve(stored.namespace, stored.name, task, fingerprint=fingerprint, via=ApprovalVia.CLI,
                      by=getpass.getuser(), now=datetime.now(UTC), rejected=reason.strip())
    print(f"workflow.hpc.reconciler.dev/{stored.name} task {task} rejected (inputs {fingerprint}): it fails "
          f"with reason Rejected until approved again")
    return 0


def _with(values: dict | None) -> str:
    return f" with {described(values)}" if values else ""
