"""Kubernetes-style conditions following the kstatus convention: ``Ready`` always present,
``Reconciling`` and ``Stalled`` only while true, each with a reason and a message, and a
``lastTransitionTime`` that moves only when the status flips. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ..api import Condition, ConditionStatus

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

