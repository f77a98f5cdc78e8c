"""Task fingerprints: what decides that a task must run again after a change.

A task's fingerprint covers its own effective spec and the fingerprints of its prerequisites,
so changing one step changes it and everything downstream, and nothing else. Fields that do not
change what a task computes (retry policy, labels, approval flag) are left out, so editing them
does not rerun finished work. The content of a task's inputs counts as well: the caller reads
the files at the edge and hands in one digest per task (``inputs``), so a changed file reruns
the task and what follows it. The values an approval was given count for the tasks after it
(``approvals``): approving again with other values reruns them, while the approval task's own
fingerprint, the one its approvals are bound to, stays what it was. Pure.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Mapping, Sequence

from ..api import Task, TaskType
from ..manifests.dag import TaskGraph
from .approval_values import canonical
from .approvals import TaskApprovals

_IGNORED_FIELDS = {"retry", "labels", "approved", "rejected", "depends_on"}
# By graph, each task's own fingerprint with the task object it was computed from: a graph's
# tasks do not change between the ticks that plan it, and dumping every task to JSON each tick
# was most of what computing fingerprints cost. A task object that is not the one remembered is
# fingerprinted afresh; a graph no longer used takes its entries with it.
_OWN: weakref.WeakKeyDictionary[TaskGraph, dict[str, tuple[Task, str]]] = weakref.WeakKeyDictionary()


def own_fingerprint(task: Task) -> str:
    data = task.model_dump(mode="json", exclude=_IGNORED_FIELDS, exclude_none=True)
    if not data.get("inputs"):
        data.pop("inputs", None)  # so a task without inputs keeps the fingerprint it always had
    if not data.get("parameters"):
        data.pop("parameters", None)  # likewise for a task without approval parameters
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _own_fingerprint(graph: TaskGraph, name: str, task: Task) -> str:
    known = _OWN.setdefault(graph, {})
    found = known.get(name)
    if found is not None and found[0] is task:
        return found[1]
    own = own_fingerprint(task)
    known[name] = (task, own)
    return own


def fingerprints(graph: TaskGraph, inputs: Mapping[str, str] | None = None,
                 approvals: TaskApprovals | None = None, *, order: Sequence[str] | None = None,
                 prerequisites: Mapping[str, Sequence[str]] | None = None) -> dict[str, str]:
    """Every task's fingerprint (16 hex digits), prerequisites folded in, the digest of each
    task's input files where ``inputs`` has one, and the values of the approvals in ``approvals``
    that hold for the approval tasks before it. ``order`` and ``prerequisites``, when the caller
    holds them already (a resolved workflow does): the graph's topological order and each task's
    sorted prerequisites."""
    result: dict[str, str] = {}
    passed: dict[str, str] = {}  # what each task hands the tasks after it
    for name in order if order is not None else graph.topological_order():
        task = graph.task(name)
        digest = hashlib.sha256(_own_fingerprint(graph, name, task).encode())
        if inputs and name in inputs:
            digest.update(f"inputs:{inputs[name]}".encode())
        before = prerequisites[name] if prerequisites is not None else sorted(graph.predecessors(name))
        for upstream in before:
            digest.update(passed[upstream].encode())
        result[name] = digest.hexdigest()[:16]
        passed[name] = _with_values(task, result[name], approvals)
    return result


def _with_values(task: Task, fingerprint: str, approvals: TaskApprovals | None) -> str:
    """An approval task's fingerprint as the tasks after it see it: with the values of the
    approval that holds for it folded in (one without parameters folds nothing, so workflows
    without values keep the fingerprints they always had)."""
    if approvals is None or task.type is not TaskType.APPROVAL or not task.parameters:
        return fingerprint
    found = approvals.current(task.name, fingerprint=fingerprint)
    if found is None or found.rejected is not None or found.problems(task):
        return fingerprint
    values = canonical(found.values_for(task))
    return hashlib.sha256(f"{fingerprint}:approved:{values}".encode()).hexdigest()[:16]
