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
  as ``TASK=FINGERPRINT`` so it keeps saying what it approved (``AnnotationEntry``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ..api import Task, TaskType

APPROVAL_STALE = "ApprovalStale"


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

    @property
    def described(self) -> str:
        """Who gave it and how, for status messages and ``describe``."""
        when = self.at.strftime("%Y-%m-%d %H:%M:%SZ")
        if self.via is ApprovalVia.CLI:
            return f"approved by {self.by} (reconciler approve) at {when}"
        if self.via is ApprovalVia.MANIFEST:
            where = f" at revision {self.revision[:12]}" if self.revision else ""
            return f"approved in the manifest{where} (approved: {self.by}) at {when}"
        return f"approved by the annotation entry {self.by} at {when}"

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
        """The approval that holds for ``task`` as it is now, if any."""
        return next((a for a in self.given if a.task == task and a.fingerprint == fingerprint), None)

    def stale(self, task: str, *, fingerprint: str) -> Approval | None:
        """The newest approval of ``task`` for other inputs than it has now, if any."""
        older = [a for a in self.given if a.task == task and a.fingerprint != fingerprint]
        return max(older, key=lambda a: a.at) if older else None


def declared_value(task: Task) -> str | None:
    """What an approval task's ``approved:`` declares, as one string: ``"true"`` or the note;
    None when it approves nothing."""
    if task.approved is True:
        return "true"
    return task.approved or None


def declared_approvals(tasks: Mapping[str, Task]) -> dict[str, str | None]:
    """Every approval task's declared value (None: not approved in the manifest)."""
    return {name: declared_value(task) for name, task in tasks.items() if task.type is TaskType.APPROVAL}


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
