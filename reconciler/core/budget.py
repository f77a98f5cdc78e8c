"""A workflow's budget of billed core-hours: what it spent, what it is projected to spend, and
whether anything more may be submitted.

Pure. Called by the planner before it plans a workflow's tasks (a workflow over budget submits
nothing new; its running jobs go on), and for the status it writes. The projection is an upper
bound a person can check: what accounting billed so far, plus the predicted cost of every
element that has not succeeded yet (a running one counted whole, a failed one as if it ran again).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ..api import Condition, WorkflowPhase, WorkflowStatus
from ..api.orchestration import Budget, BudgetStatus
from .conditions import READY, RECONCILING, STALLED, condition, merge_conditions

WITHIN_BUDGET = "WithinBudget"
BUDGET_EXCEEDED = "BudgetExceeded"


@dataclass(frozen=True)
class TaskCost:
    """One task's part of the projection."""

    remaining_elements: int  # not succeeded yet
    core_hours_each: float | None  # predicted for one element; None when nothing bounds its run time


@dataclass(frozen=True)
class BudgetVerdict:
    status: BudgetStatus
    exceeded: bool
    message: str

    @property
    def held_because(self) -> str | None:
        """Why nothing more is submitted; None when the budget allows it."""
        return self.message if self.exceeded else None


def judge_budget(budget: Budget | None, *, spent_core_seconds: int,
                 tasks: Mapping[str, TaskCost]) -> BudgetVerdict | None:
    if budget is None:
        return None
    spent = spent_core_seconds / 3600
    unbounded = sorted(name for name, cost in tasks.items() if cost.remaining_elements and cost.core_hours_each is None)
    remaining = sum(cost.remaining_elements * (cost.core_hours_each or 0.0) for cost in tasks.values())
    projected = spent + remaining
    exceeded = projected > budget.core_hours
    status = BudgetStatus(core_hours=budget.core_hours, spent=round(spent, 6), projected=round(projected, 6))
    figures = (f"spent {spent:.4g} and projected {projected:.4g} of {budget.core_hours:.4g} core-hours")
    if exceeded:
        message = (f"{figures}: nothing more is submitted; raise spec.budget.coreHours, or lower the tasks' "
                   "requests (their time limits bound the projection)")
    else:
        message = figures
    if unbounded:
        message += f"; not projected (no time limit and no history): {', '.join(unbounded)}"
    return BudgetVerdict(status=status, exceeded=exceeded, message=message)


def with_budget(status: WorkflowStatus, verdict: BudgetVerdict | None, *, previous: WorkflowStatus | None,
                generation: int, now: datetime) -> WorkflowStatus:
    """``status`` with the budget's figures and its ``WithinBudget`` condition; a workflow held
    by its budget is not Ready for that reason and is Stalled, since only a person can lift it."""
    if verdict is None:
        return status
    conditions = [c for c in status.conditions if c.type != WITHIN_BUDGET]
    held = verdict.exceeded and status.phase in (WorkflowPhase.PENDING, WorkflowPhase.RUNNING)
    if held:
        conditions = [_held(c, verdict.message, now=now, generation=generation) for c in conditions]
        if not any(c.type == STALLED for c in conditions):
            conditions.append(condition(STALLED, True, BUDGET_EXCEEDED, verdict.message, now=now,
                                        generation=generation))
    conditions.append(condition(WITHIN_BUDGET, not verdict.exceeded,
                                BUDGET_EXCEEDED if verdict.exceeded else WITHIN_BUDGET, verdict.message, now=now,
                                generation=generation))
    merged = merge_conditions(previous.conditions if previous else [], conditions, now=now)
    return status.model_copy(update={"budget": verdict.status, "conditions": merged})


def _held(found: Condition, message: str, *, now: datetime, generation: int) -> Condition:
    if found.type in (READY, RECONCILING) and found.reason == "Progressing":
        return condition(found.type, found.status, BUDGET_EXCEEDED, message, now=now, generation=generation)
    return found
