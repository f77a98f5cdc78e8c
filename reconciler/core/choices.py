"""What the Orchestrator chose, as the store keeps it and the status and ``explain`` show it.

A choice is recorded with the submission it went out with (one per task, fingerprint and
attempt), so a task's status keeps showing the configuration its jobs run with, whatever the
Orchestrator would choose today; a workflow's cluster is recorded once, when it is placed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..api.orchestration import ChoiceStatus


@dataclass(frozen=True, kw_only=True)
class RecordedChoice:
    """The choice one attempt of a task went out with."""

    task: str
    fingerprint: str
    attempt: int
    status: ChoiceStatus
    # Every candidate considered, best first, with its predicted figures and score (for explain).
    ranked: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, kw_only=True)
class Placement:
    """The cluster a workflow that names candidates was placed on, and why."""

    cluster: str
    message: str
    ranked: tuple[dict[str, Any], ...] = ()  # each candidate cluster with its score


@dataclass(frozen=True)
class TaskChoices:
    """A workflow's recorded choices, by task."""

    records: tuple[RecordedChoice, ...] = field(default_factory=tuple)

    def latest(self, task: str, *, fingerprint: str) -> RecordedChoice | None:
        """The choice of the task's latest attempt at ``fingerprint``."""
        found = [r for r in self.records if r.task == task and r.fingerprint == fingerprint]
        return max(found, key=lambda r: r.attempt) if found else None

    def of(self, task: str, *, fingerprint: str, attempt: int) -> RecordedChoice | None:
        return next((r for r in self.records
                     if r.task == task and r.fingerprint == fingerprint and r.attempt == attempt), None)
