"""What a manifest says about choosing resources, and what the status says about the choice.

A task writes ``auto`` for the resources the reconciler should choose (``Resources``); a Workflow
or a SlurmCluster says how candidates are scored (``Scoring``), a Workflow how many core-hours it
may spend (``Budget``). The choice itself is made by the Orchestrator in the pure core
(``reconciler.core.orchestrator``) and shown in ``TaskStatus.choice`` and ``WorkflowStatus.budget``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from .meta import FrozenModel, Model
from .postfix import parse_expression

AUTO = "auto"
Auto = Literal["auto"]
# Slurm names (partitions) as everywhere in a manifest.
_SLURM_NAME = r"^[A-Za-z0-9_.:,=+/@-]+$"


class Scoring(FrozenModel):
    """How the Optimizer ranks candidate configurations: the lowest score wins."""

    expression: Annotated[str, Field(min_length=1, max_length=1024, description=(
        "postfix over the criteria time, run, wait, start, cost, coreHours, cpus, nodes, "
        "e.g. 'time 0.7 * cost 0.3 * +'"))] = "time"
    strategy: Literal["score", "cheapest"] = Field(default="score", description=(
        "score: the expression decides; cheapest: the lowest predicted cost, then the earliest end"))

    @field_validator("expression")
    @classmethod
    def _well_formed(cls, expression: str) -> str:
        return str(parse_expression(expression))


class TaskCandidates(FrozenModel):
    """The values the Orchestrator may try for a task's ``auto`` resources (each list optional:
    without one, the values come from the partitions' limits)."""

    cpus: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    nodes: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    partitions: list[Annotated[str, Field(pattern=_SLURM_NAME, max_length=128)]] = Field(default_factory=list)


class Budget(FrozenModel):
    core_hours: Annotated[float, Field(gt=0, description=(
        "billed core-hours the workflow may spend; a workflow whose spent plus predicted core-hours "
        "would exceed it is held instead of submitted"))]


class PredictedFigures(Model):
    run_seconds: float | None = None
    wait_seconds: float | None = None
    start_seconds: float | None = None  # until the start Slurm estimates (sbatch --test-only)
    core_hours: float | None = None
    cost: float | None = None


class ChoiceStatus(Model):
    """The resources the Orchestrator chose for a task's ``auto`` fields, and why."""

    reason: str  # Chosen, NoHistory, TooLittleHistory, NoCandidate
    message: str
    strategy: str | None = None
    cluster: str | None = None
    partition: str | None = None
    nodes: int | None = None
    cpus: int | None = None
    time: str | None = None
    memory: str | None = None
    score: float | None = None
    candidates: int = 0
    predicted: PredictedFigures | None = None


class BudgetStatus(Model):
    core_hours: float  # the limit
    spent: float  # billed core-hours so far
    projected: float  # spent plus what the tasks still to run are predicted to cost
