"""Approvals as the pure core sees them: a person's sign-off, bound to what was signed off.

Pure. The store keeps them (``reconciler.store.approvals``); ``reconciler approve``, an
``approved:`` value in a manifest, or the ``hpc.reconciler.dev/approve`` annotation give them; the
planner reads them each tick through ``DesiredWorkflow.approvals``. Guarantees:

* an approval holds for one fingerprint of its task, the one that was shown when it was given.
  A task's fingerprint folds in the fingerprint of every task before it, so when anything
  upstream changes (a parameter, a script, an input file) the approval no longer counts and the
  task waits for a person again (``TaskApprovals.current`` / ``stale``);
* an ``approved:`` value in a manifest counts for the task as it was when that value first
  appeared (``declared_approvals`` says what each approval task declares; the store records a
  value once, when it is new). Changing the value (``true`` to a note, or one note to another)
  approves again; leaving it untouched while changing what comes before does not;
* an annotation entry ``TASK`` approves the fingerprint the status shows now, and is rewritten
  as ``TASK=FINGERPRINT`` so it keeps saying what it approved (``AnnotationEntry``); the values
  annotation holds the values of those approvals as JSON, the reject annotation the reasons;
* a task's decisions at one fingerprint are iterations, and the newest one holds
  (``TaskApprovals.current``): approving again with other values, or after a rejection, is a new
  iteration, and the earlier ones stay on record (``iterations``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from ..api import Task, TaskType
from ..api.approval import ApprovalParameter, ApprovalValue, value_problems
from .approval_values import ApprovedValues, canonical, effective

APPROVAL_STALE = "ApprovalStale"
REJECTED = "Rejected"
# Kubernetes mode: the values of the approve annotation's approvals, and rejections with reasons.
VALUES_ANNOTATION = "hpc.reconciler.dev/approve-values"
REJECT_ANNOTATION = "hpc.reconciler.dev/reject"


class ApprovalVia(StrEnum):
    """How an approval was given."""

    CLI = "cli"  # reconciler approve, by the user who ran it
    MANIFEST = "manifest"  # an approved: value in the manifest (a Git revision, a folder, a Workflow's spec)
    ANNOTATION = "annotation"  # the hpc.reconciler.dev/approve annotation (Kubernetes mode)


@dataclass(frozen=True, kw_only=True)
class Approval:
    task: str
    fingerprint: str  # the task's fingerprint it was given for
    via: ApprovalVia
    by: str  # the user (cli), the declared value (manifest), the annotation entry (annotation)
    at: datetime
    revision: str | None = None  # the source revision a manifest approval came with
    values: Mapping[str, ApprovalValue] = field(default_factory=dict)  # as given (defaults not filled in)
    rejected: str | None = None  # a rejection, not an approval: the reason given

    @property
    def described(self) -> str:
        """Who gave it and how, for status messages and ``describe``."""
        when = self.at.strftime("%Y-%m-%d %H:%M:%SZ")
        verb = "rejected" if self.rejected is not None else "approved"
        if self.via is ApprovalVia.CLI:
            return f"{verb} by {self.by} (reconciler {verb[:-1]}) at {when}"
        if self.via is ApprovalVia.MANIFEST:
            where = f" at revision {self.revision[:12]}" if self.revision else ""
            return f"{verb} in the manifest{where} ({verb}: {self.by}) at {when}"
        return f"{verb} by the annotation entry {self.by} at {when}"

    def problems(self, task: Task) -> list[str]:
        """Why this approval's values do not fit ``task``'s parameters (one recorded where they
        could not be checked first: a template instance's, an annotation's); empty when they do."""
        return value_problems(task.parameters, self.values) if self.rejected is None else []

    def values_for(self, task: Task) -> dict[str, ApprovalValue]:
        """The values this approval gives ``task``'s parameters, defaults filled in."""
        return effective(task.parameters, self.values)

    @property
    def how_to_renew(self) -> str:
        if self.via is ApprovalVia.MANIFEST:
            return "change the task's approved: value (a note saying what was checked) or run reconciler approve"
        if self.via is ApprovalVia.ANNOTATION:
            return f"set the hpc.reconciler.dev/approve annotation to {self.task} again"
        return "run reconciler approve again"


@dataclass(frozen=True)
class TaskApprovals:
    """Every approval given for one workflow's tasks, oldest first."""

    given: tuple[Approval, ...] = ()

    @property
    def tasks(self) -> frozenset[str]:
        """The tasks approved at some fingerprint."""
        return frozenset(approval.task for approval in self.given)

    def current(self, task: str, *, fingerprint: str) -> Approval | None:
        """The decision that holds for ``task`` as it is now (the newest at its fingerprint: an
        approval, or a rejection), if any."""
        return next((a for a in reversed(self.given) if a.task == task and a.fingerprint == fingerprint), None)

    def iterations(self, task: str) -> tuple[Approval, ...]:
        """Every decision on ``task``, oldest first."""
        return tuple(a for a in self.given if a.task == task)

    def stale(self, task: str, *, fingerprint: str) -> Approval | None:
        """The newest approval of ``task`` for other inputs than it has now, if any."""
        older = [a for a in self.given if a.task == task and a.fingerprint != fingerprint and a.rejected is None]
        return max(older, key=lambda a: a.at) if older else None


@dataclass(frozen=True)
class DeclaredApproval:
    """What an approval task's ``approved:`` or ``rejected:`` declares."""

    text: str  # one string per declaration: "true", the note, the values as JSON, "rejected: REASON"
    values: Mapping[str, ApprovalValue] = field(default_factory=dict)
    rejected: str | None = None


def declared_decision(task: Task) -> DeclaredApproval | None:
    """What an approval task's manifest declares; None when it decides nothing."""
    if task.rejected is not None:
        return DeclaredApproval(text=f"rejected: {task.rejected}", rejected=task.rejected)
    if isinstance(task.approved, dict):
        return DeclaredApproval(text=canonical(task.approved), values=dict(task.approved))
    if task.approved is True:
        return DeclaredApproval(text="true")
    return DeclaredApproval(text=task.approved) if task.approved else None


def declared_value(task: Task) -> str | None:
    """What an approval task's manifest declares, as one string: ``"true"``, the note, the
    values as JSON or ``rejected: REASON``; None when it decides nothing."""
    found = declared_decision(task)
    return found.text if found is not None else None


def declared_approvals(tasks: Mapping[str, Task]) -> dict[str, str | None]:
    """Every approval task's declared value (None: not decided in the manifest)."""
    return {name: declared_value(task) for name, task in tasks.items() if task.type is TaskType.APPROVAL}


def declared_decisions(tasks: Mapping[str, Task]) -> dict[str, DeclaredApproval | None]:
    """Every approval task's declared decision (None: not decided in the manifest)."""
    return {name: declared_decision(task) for name, task in tasks.items() if task.type is TaskType.APPROVAL}


def parse_values_annotation(value: str | None) -> dict[str, dict[str, ApprovalValue]]:
    """The values annotation: a JSON object of approval task -> {parameter: value}. Raises
    ValueError saying what is wrong with it."""
    if not value or not value.strip():
        return {}
    parsed = json.loads(value)
    if not isinstance(parsed, dict) or not all(isinstance(v, dict) for v in parsed.values()):
        raise ValueError('expected a JSON object of task to values, e.g. {"review": {"gamma": 1.2}}')
    return {str(task): dict(values) for task, values in parsed.items()}


def parse_reject_annotation(value: str | None) -> dict[str, str]:
    """The reject annotation: a JSON object of approval task -> reason. Raises ValueError."""
    if not value or not value.strip():
        return {}
    parsed = json.loads(value)
    if not isinstance(parsed, dict) or not all(isinstance(v, str) and v.strip() for v in parsed.values()):
        raise ValueError('expected a JSON object of task to reason, e.g. {"review": "the masks are off"}')
    return {str(task): reason.strip() for task, reason in parsed.items()}


@dataclass(frozen=True)
class AnnotationEntry:
    """One entry of the approve annotation: ``TASK`` (approve what the status shows now) or
    ``TASK=FINGERPRINT`` (approved at that fingerprint, as the operator rewrites it)."""

    task: str
    fingerprint: str | None = None

    @property
    def text(self) -> str:
        return f"{self.task}={self.fingerprint}" if self.fingerprint else self.task


def parse_annotation(value: str | None) -> tuple[AnnotationEntry, ...]:
    """The entries of the approve annotation (comma-separated), blanks left out."""
    entries = []
    for raw in (value or "").split(","):
        task, _, fingerprint = raw.partition("=")
        if task.strip():
            entries.append(AnnotationEntry(task=task.strip(), fingerprint=fingerprint.strip() or None))
    return tuple(entries)


def pin_entries(entries: Iterable[AnnotationEntry], *, shown: Mapping[str, str]) -> tuple[AnnotationEntry, ...]:
    """``entries`` with each bare ``TASK`` bound to the fingerprint ``shown`` for it (the status's);
    a task the status does not show yet stays bare until it does."""
    return tuple(AnnotationEntry(e.task, shown[e.task]) if e.fingerprint is None and e.task in shown else e
                 for e in entries)


def annotation_text(entries: Iterable[AnnotationEntry]) -> str:
    return ",".join(entry.text for entry in entries)


@dataclass(frozen=True)
class AnnotationDecisions:
    """What the values and reject annotations say, once checked."""

    values: Mapping[str, Mapping[str, ApprovalValue]] = field(default_factory=dict)  # by approval task
    rejected: Mapping[str, str] = field(default_factory=dict)  # approval task -> reason
    problems: tuple[str, ...] = ()  # why some of it was refused
    refused: frozenset[str] = frozenset()  # tasks the approve annotation must not approve now
    unreadable: bool = False  # the values annotation does not parse: it approves nothing now

    def approves(self, task: str) -> bool:
        return not self.unreadable and task not in self.refused and task not in self.rejected


def annotation_decisions(values_text: str | None, reject_text: str | None, *,
                         parameters: Mapping[str, Sequence[ApprovalParameter]] | None) -> AnnotationDecisions:
    """The values and reject annotations, each value checked against its task's ``parameters``
    (None: not known here, as for a template instance; the planner checks them then). An
    annotation that does not parse decides nothing; a task whose values do not fit is left out."""
    problems: list[str] = []
    unreadable = False
    try:
        values = parse_values_annotation(values_text)
    except ValueError as exc:
        values, problems, unreadable = {}, [f"{VALUES_ANNOTATION}: {exc}"], True
    try:
        rejected = parse_reject_annotation(reject_text)
    except ValueError as exc:
        rejected, problems = {}, [*problems, f"{REJECT_ANNOTATION}: {exc}"]
    refused = set()
    for task, given in list(values.items()):
        found = value_problems(parameters.get(task, ()), given) if parameters is not None else []
        if found:
            problems.append(f"{VALUES_ANNOTATION}: task {task}: {'; '.join(found)}")
            refused.add(task)
            del values[task]
    return AnnotationDecisions(values=values, rejected=rejected, problems=tuple(problems), refused=frozenset(refused),
                               unreadable=unreadable)


def manifest_values(tasks: Mapping[str, Task], before: Iterable[str]) -> tuple[ApprovedValues, ...]:
    """The values the manifest's ``approved:`` gives the approval tasks among ``before`` (defaults
    filled in), for a task after them submitted without the loop (``reconciler submit``)."""
    found = []
    for name in sorted(before):
        task = tasks[name]
        if task.type is TaskType.APPROVAL and task.parameters and task.approved and task.rejected is None:
            given = task.approved if isinstance(task.approved, dict) else {}
            found.append(ApprovedValues(task=name, values=tuple(sorted(effective(task.parameters, given).items()))))
    return tuple(found)
