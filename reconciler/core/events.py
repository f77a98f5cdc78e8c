"""The events a plan reports when a task or a workflow changes phase.

Pure. Called by the planner once per task and once per workflow each tick; an event is emitted
only on a change of phase (compared with the status stored by the previous tick), so a phase
that holds for many ticks is reported once; and once per new iteration of an approval (approved
again with other values), which changes no phase.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..api import TaskPhase, TaskStatus, TaskType, WorkflowPhase, WorkflowStatus
from .approval_values import described
from .approvals import APPROVAL_STALE
from .plan import Event
from .status import TaskDecision


@dataclass(frozen=True)
class _Announcement:
    type: str  # Normal | Warning
    reason: str
    message: Callable[[str, TaskDecision], str]  # from the task's name and decision


def _by_whom(decision: TaskDecision) -> str:
    return "by request" if decision.cancelled_by_user else "outside the reconciler"


_TASK_ANNOUNCEMENTS: dict[TaskPhase, _Announcement] = {
    TaskPhase.SUCCEEDED: _Announcement("Normal", "TaskSucceeded", lambda name, _: f"task {name} succeeded"),
    TaskPhase.FAILED: _Announcement(
        "Warning", "TaskFailed", lambda name, decision: f"task {name} failed: {decision.failure_summary()}"),
    TaskPhase.RETRYING: _Announcement(
        "Warning", "TaskRetrying", lambda name, decision: f"task {name} {decision.failure_summary()}; retrying"),
    TaskPhase.AWAITING_APPROVAL: _Announcement(
        "Normal", "AwaitingApproval", lambda name, _: f"task {name} is waiting for a person to approve it"),
    TaskPhase.CANCELLED: _Announcement(
        "Warning", "TaskCancelled", lambda name, decision: f"task {name} was cancelled {_by_whom(decision)}"),
    TaskPhase.QUEUED: _Announcement(
        "Normal", "ClusterAtCapacity", lambda name, _: f"task {name} waits for the cluster's capacity"),
}
# An approval task that succeeds was approved: that is what its reader wants to hear.
_APPROVED = _Announcement("Normal", "Approved", lambda name, decision: f"task {name} was approved" + (
    f" with {described(decision.approval.values_for(decision.task))}"
    if decision.approval is not None and decision.task.parameters else ""))
# One that fails was rejected, with a reason.
_REJECTED = _Announcement(
    "Warning", "Rejected", lambda name, decision: f"task {name} was rejected: "
    f"{decision.approval.rejected if decision.approval else ''}")
# One that asks again had an approval that stopped counting when a task before it changed.
_APPROVAL_STALE = _Announcement(
    "Normal", APPROVAL_STALE, lambda name, decision: f"task {name} waits for a person again: its earlier approval "
    f"was for different inputs ({decision.stale_approval.described if decision.stale_approval else ''})")


def task_events(name: str, *, before: TaskPhase | None, decision: TaskDecision) -> tuple[Event, ...]:
    """The event for a task that entered ``decision.phase`` this tick (``before`` is the phase
    in the previous status, None when the task is new); phases nobody needs to hear of have none."""
    if before is decision.phase:
        return ()
    announcement = _announcement(decision)
    if announcement is None:
        return ()
    return (Event(announcement.type, announcement.reason, announcement.message(name, decision)),)


def iteration_events(name: str, *, previous: TaskStatus | None, decision: TaskDecision) -> tuple[Event, ...]:
    """The event for an approval task approved again with other values (a new iteration: the
    tasks after it run again with them), which its phase does not show."""
    approval = decision.approval
    if (decision.phase is not TaskPhase.SUCCEEDED or approval is None or previous is None
            or previous.phase is not TaskPhase.SUCCEEDED or previous.approval is None):
        return ()
    values = approval.values_for(decision.task)
    if values == previous.approval.values:
        return ()
    return (Event("Normal", "Approved", f"task {name} was approved again with {described(values)} (before: "
                                        f"{described(previous.approval.values)}): the tasks after it run again"),)


def _announcement(decision: TaskDecision) -> _Announcement | None:
    if decision.task.type is TaskType.APPROVAL and decision.phase is TaskPhase.SUCCEEDED:
        return _APPROVED
    if decision.task.type is TaskType.APPROVAL and decision.phase is TaskPhase.FAILED:
        return _REJECTED
    if decision.phase is TaskPhase.AWAITING_APPROVAL and decision.stale_approval is not None:
        return _APPROVAL_STALE
    return _TASK_ANNOUNCEMENTS.get(decision.phase)


_WORKFLOW_EVENTS = {
    WorkflowPhase.SUCCEEDED: Event("Normal", "WorkflowSucceeded", "workflow succeeded"),
    WorkflowPhase.FAILED: Event("Warning", "WorkflowFailed", "workflow failed"),
}


def workflow_events(*, previous: WorkflowStatus | None, status: WorkflowStatus) -> tuple[Event, ...]:
    """The event for a workflow that ended this tick, one way or the other."""
    if previous is not None and previous.phase == status.phase:
        return ()
    event = _WORKFLOW_EVENTS.get(status.phase)
    return (event,) if event is not None else ()
