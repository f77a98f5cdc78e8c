"""Kubernetes-style conditions following the kstatus convention: ``Ready`` always present,
``Reconciling`` and ``Stalled`` only while true, each with a reason and a message, and a
``lastTransitionTime`` that moves only when the status flips. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ..api import Condition, ConditionStatus, TaskPhase, WorkflowStatus

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"


def merge_conditions(
    previous: Sequence[Condition], wanted: Sequence[Condition], *, now: datetime
) -> list[Condition]:
    """``wanted`` in order, keeping each unchanged condition's original transition time."""
    before = {condition.type: condition for condition in previous}
    merged = []
    for condition in wanted:
        old = before.get(condition.type)
        since = old.last_transition_time if old is not None and old.status == condition.status else now
        merged.append(condition.model_copy(update={"last_transition_time": since}))
    return merged


def condition(
    type_: str, status: bool | ConditionStatus, reason: str, message: str = "", *, now: datetime,
    generation: int | None = None,
) -> Condition:
    if isinstance(status, bool):
        status = ConditionStatus.TRUE if status else ConditionStatus.FALSE
    return Condition(
        type=type_, status=status, reason=reason, message=message[:32768], last_transition_time=now,
        observed_generation=generation,
    )



NEEDS_ATTENTION = "NeedsAttention"


def with_attention(status: WorkflowStatus, *, previous: WorkflowStatus | None, generation: int | None,
                   now: datetime) -> WorkflowStatus:
    """``status`` with ``NeedsAttention`` while the workflow waits for a person: a task awaits
    approval, or it is Stalled (for any reason: a failed or rejected task, a budget, an input that
    names nothing, a refused submission, a broken manifest). Like Stalled, present only while true."""
    conditions = [c for c in status.conditions if c.type != NEEDS_ATTENTION]
    waiting = [name for name, task in status.tasks.items() if task.phase is TaskPhase.AWAITING_APPROVAL]
    stalled = next((c for c in conditions if c.type == STALLED and c.status is ConditionStatus.TRUE), None)
    if waiting:
        wanted = condition(NEEDS_ATTENTION, True, "AwaitingApproval",
                           f"a person has to approve: {', '.join(waiting)}", now=now, generation=generation)
    elif stalled is not None:
        wanted = condition(NEEDS_ATTENTION, True, stalled.reason, stalled.message, now=now, generation=generation)
    else:
        return status.model_copy(update={"conditions": conditions})
    merged = merge_conditions(previous.conditions if previous else [], [wanted], now=now)
    return status.model_copy(update={"conditions": [*conditions, *merged]})


def needs_attention(status: WorkflowStatus | None) -> bool:
    """Whether the workflow waits for a person (its ``NeedsAttention`` condition is true)."""
    return status is not None and any(c.type == NEEDS_ATTENTION and c.status is ConditionStatus.TRUE
                                      for c in status.conditions)
