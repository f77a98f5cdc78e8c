"""The Optimizer: how the Orchestrator's candidate configurations are ranked.

Called by the Orchestrator (``reconciler.core.orchestrator.orchestrate``), which gives each
candidate its predicted figures as criteria values (see ``reconciler.api.postfix.CRITERIA``)
and takes the first of the ranking. ``optimizer_for`` makes one from a Scoring's strategy name;
``STRATEGIES`` lists the names the API accepts. A new strategy is a class with the members of
``Optimizer`` and an entry in ``_FACTORIES``: the Orchestrator's loop stays as it is. Pure, and
every ranking is total and deterministic: ties fall to fewer core-hours, fewer CPUs, then names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..api.postfix import Expression

if TYPE_CHECKING:
    from .orchestrator import Scored


class Optimizer(Protocol):
    @property
    def name(self) -> str:
        """The strategy name, as a Scoring writes it."""

    @property
    def criteria(self) -> frozenset[str]:
        """The criteria it reads (the Orchestrator asks Slurm for ``start`` only when needed)."""

    def score(self, values: Mapping[str, float]) -> float:
        """One candidate's score, shown to people; the lower the better."""

    def rank(self, scored: Sequence[Scored]) -> list[Scored]:
        """The candidates best first."""


def tie_break(scored: Scored) -> tuple[float, int, int, str, str, int, float]:
    """What decides between equally good candidates: the one that bills less, holds fewer CPUs,
    then names, so the same inputs always give the same choice."""
    candidate = scored.candidate
    return (scored.prediction.core_hours, candidate.cores, candidate.nodes or 1, candidate.cluster,
            candidate.partition or "", candidate.time_seconds or 0, candidate.memory_mib or 0.0)


@dataclass(frozen=True)
class ScoringOptimizer:
    """The expression decides: the lowest score wins."""

    expression: Expression
    name: str = "score"

    @property
    def criteria(self) -> frozenset[str]:
        return self.expression.names

    def score(self, values: Mapping[str, float]) -> float:
        return self.expression.evaluate(values)

    def rank(self, scored: Sequence[Scored]) -> list[Scored]:
        return sorted(scored, key=lambda item: (item.score, tie_break(item)))


@dataclass(frozen=True)
class CheapestFirst:
    """The lowest predicted cost wins, then the earliest predicted end; the score shown is the cost."""

    name: str = "cheapest"

    @property
    def criteria(self) -> frozenset[str]:
        return frozenset({"cost", "time"})

    def score(self, values: Mapping[str, float]) -> float:
        return values["cost"]

    def rank(self, scored: Sequence[Scored]) -> list[Scored]:
        return sorted(scored, key=lambda item: (item.criteria["cost"], item.criteria["time"], tie_break(item)))


_FACTORIES: Mapping[str, Callable[[Expression], Optimizer]] = {
    "score": ScoringOptimizer,
    "cheapest": lambda _expression: CheapestFirst(),
}
STRATEGIES = tuple(_FACTORIES)


def optimizer_for(strategy: str, expression: Expression) -> Optimizer:
    """The Optimizer a Scoring names; ``expression`` is used by the strategies that score with it."""
    try:
        factory = _FACTORIES[strategy]
    except KeyError:
        raise ValueError(f"unknown strategy {strategy!r}; the strategies are {', '.join(STRATEGIES)}") from None
    return factory(expression)
