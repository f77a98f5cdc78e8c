"""The verbs that touch what a workflow should be, and the one that reruns a task by hand:
``reconciler suspend``, ``resume`` and ``rerun``.

Called by :mod:`reconciler.cli.main` with parsed arguments. Where the manifests are the truth
(Git, or a folder the loop reads), a verb that would change a workflow's desired state acts on
nothing: the next read of the source would undo it. ``suspend`` and ``resume`` print the exact
edit (``spec.suspend``) and, for Git, the commands that commit and push it; for a workflow the
loop reads from Kubernetes, the ``kubectl patch`` that makes it. Exit 1 then (nothing changed
here), 0 when the workflow already is as asked.

``rerun`` acts, because what it asks for lives in the store, as approvals do: a rerun is a
retry (``reconciler.core.requests``), one new attempt of a Failed or Cancelled task, carried out
by the loop's next tick. A Succeeded task is not rerun: its result is what its declared spec and
inputs give, and a change to those in the source reruns it and everything after it.
"""

from __future__ import annotations

import getpass
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

from ..api import TaskPhase
from ..core.requests import refusal_to_retry
from ..store.database import StoredWorkflow
from .commands import open_store, state_dir

KIND = "workflow.hpc.reconciler.dev"
# A workflow the operator read from Kubernetes names its origin so (``reconciler.kube.source.origin``).
_FROM_KUBERNETES = "workflow "


@dataclass(frozen=True)
class Edit:
    """What to change, where, and how to hand it to the loop."""

    text: str
    already: bool  # the workflow is already as asked: nothing to change


def suspend_edit(stored: StoredWorkflow, *, suspend: bool) -> Edit:
    """The edit that sets ``spec.suspend`` of ``stored`` to ``suspend``, as text for the user."""
    verb = "suspend" if suspend else "resume"
    name = f"{KIND}/{stored.name}"
    current = bool((stored.resource.get("spec") or {}).get("suspend", False))
    if current == suspend:
        return Edit(f"{name} is already {'suspended' if suspend else 'running (not suspended)'}: nothing to change\n",
                    already=True)
    origin = stored.source_file
    if origin is not None and origin.startswith(_FROM_KUBERNETES):
        patch = json.dumps({"spec": {"suspend": suspend}}, separators=(",", ":"))
        return Edit(f"{name} is a Kubernetes object: the API server holds its desired state, so nothing was changed "
                    f"here. To {verb} it:\n\n  kubectl patch workflow {stored.name} -n {stored.namespace} --type merge "
                    f"-p '{patch}'\n", already=False)
    where = origin or "the manifest that declares it"
    what = ("submits nothing new and holds the pending jobs (scontrol hold); running jobs run on" if suspend
            else "releases the held jobs and submits what is due")
    lines = [f"{name} is declared in {where}: the source the loop reads is the truth for its desired state, so "
             f"nothing was changed here. To {verb} it, set in {where} (the Workflow {stored.name}):", "",
             "  spec:", f"    suspend: {'true' if suspend else 'false'}", ""]
    if stored.revision is not None:  # read from Git: the loop sees what is pushed
        lines += ["then commit and push it (from the repository's top folder):", "", f"  git add {where}",
                  f"  git commit -m '{verb.capitalize()} workflow {stored.name}'", "  git push", ""]
    lines.append(f"The loop {what} on its first tick after it reads the change.")
    return Edit("\n".join(lines) + "\n", already=False)


def suspend(*, state: str | None, name: str, suspend: bool) -> int:
    """``reconciler suspend|resume NAME``: print the edit that does it, acting on nothing."""
    stored = _active(state, name)
    if stored is None:
        return 1
    edit = suspend_edit(stored, suspend=suspend)
    sys.stdout.write(edit.text)
    return 0 if edit.already else 1


def rerun(*, state: str | None, name: str, task: str) -> int:
    """``reconciler rerun NAME TASK``: one new attempt of a Failed or Cancelled task."""
    with open_store(state_dir(state)) as store:
        stored = _found(store.workflow(*_identity(name)), name)
        if stored is None:
            return 1
        refusal = refusal_to_retry(stored.status, task)
        if refusal is not None:
            found = stored.status.tasks.get(task) if stored.status else None
            if found is not None and found.phase is TaskPhase.SUCCEEDED:
                refusal = (f"task {task} Succeeded: its result is what its spec and inputs give, so it is not rerun "
                           "by hand; change them in the source, and the loop reruns it and the tasks after it")
            print(f"Error: {refusal}", file=sys.stderr)
            return 1
        after = store.request_retry(stored.uid, task, by=getpass.getuser(), now=datetime.now(UTC))
    print(f"{KIND}/{stored.name} task {task} rerun (a new attempt after attempt {after})")
    return 0


def _identity(name: str) -> tuple[str, str]:
    namespace, _, short = name.rpartition("/")
    return namespace or "default", short


def _found(stored: StoredWorkflow | None, name: str) -> StoredWorkflow | None:
    if stored is None or not stored.active:
        print(f'Error: workflow "{name}" not found', file=sys.stderr)
        return None
    return stored


def _active(state: str | None, name: str) -> StoredWorkflow | None:
    with open_store(state_dir(state)) as store:
        return _found(store.workflow(*_identity(name)), name)
