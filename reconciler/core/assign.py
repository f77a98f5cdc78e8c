"""A task's ``auto`` resources and a workflow's cluster, chosen by the Orchestrator from history.

Pure. The controller gathers what a choice needs (``Choosing``: the offers of the clusters, the
models fitted on history, Slurm's start estimates, the Optimizer the workflow's scoring names);
the planner asks ``assign`` for each job task before planning it, and submits the task with the
resources chosen; the controller asks ``place`` once for a workflow that names candidate clusters.
Guarantees: a value the manifest declares is never replaced; a task with nothing ``auto`` keeps
its resources as they are (it is assigned only for its predicted cost, which budgets need).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..api import Resources, SlurmCluster, Task, TaskType, WorkflowSpec
from ..api.orchestration import AUTO, Auto, ChoiceStatus, PredictedFigures, Scoring
from ..api.postfix import parse_expression
from ..api.units import memory_to_mib, time_to_seconds
from ..manifests.resolve import ResolvedWorkflow
from .choices import Placement
from .history import RunSample, kind_of
from .observed import PartitionLimits
from .optimizer import Optimizer, optimizer_for
from .orchestrator import Choice, Declared, Offer, Request, Scored, StartQuery, orchestrate, start_queries
from .runmodel import MemoryModel, QueueModel, RuntimeModel, fit_memory, fit_queue, fit_runtime


@dataclass(frozen=True)
class KindModels:
    """What the history of one task kind predicts."""

    runtime: RuntimeModel | None = None
    memory: MemoryModel | None = None
    runs: int = 0  # finished runs on record


@dataclass(frozen=True)
class Learned:
    """The models fitted on the whole history, by kind, and the queue waits by partition."""

    kinds: Mapping[str, KindModels] = field(default_factory=dict)
    waits: QueueModel | None = None

    def of(self, kind: str) -> KindModels:
        return self.kinds.get(kind, KindModels())


def learn(samples: Iterable[RunSample]) -> Learned:
    by_kind: dict[str, list[RunSample]] = {}
    every: list[RunSample] = []
    for sample in samples:
        by_kind.setdefault(sample.kind, []).append(sample)
        every.append(sample)
    return Learned(
        kinds={kind: KindModels(runtime=fit_runtime(runs), memory=fit_memory(runs), runs=len(runs))
               for kind, runs in by_kind.items()},
        waits=fit_queue(every),
    )


@dataclass(frozen=True)
class Choosing:
    """What the Orchestrator needs to choose for one workflow's tasks this tick."""

    offers: tuple[Offer, ...]  # of the cluster it runs on (of every candidate, to place it)
    learned: Learned = field(default_factory=Learned)
    starts: Mapping[StartQuery, float] = field(default_factory=dict)  # seconds until Slurm would start each
    optimizer: Optimizer = field(default_factory=lambda: optimizer_of(None, None))


def offers_of(cluster: SlurmCluster, partitions: Sequence[PartitionLimits]) -> tuple[Offer, ...]:
    """Each partition of ``cluster`` as the Orchestrator may use it, priced as its spec says."""
    name = cluster.metadata.name
    if not partitions:
        return (Offer(cluster=name, partition=None, default=True),)
    return tuple(
        Offer(cluster=name, partition=p.name, default=p.default, max_time_seconds=p.max_time_seconds,
              max_nodes=p.max_nodes, max_cpus_per_node=p.max_cpus_per_node, total_cpus=p.total_cpus or None,
              cost_per_core_hour=cluster.spec.partition_cost(p.name), billing_weights=dict(p.billing_weights))
        for p in partitions if p.state == "UP")


def optimizer_of(spec: WorkflowSpec | None, cluster: SlurmCluster | None) -> Optimizer:
    """The workflow's scoring, else its cluster's, else ``time``."""
    scoring = (spec.scoring if spec is not None else None) or (cluster.spec.scoring if cluster else None) or Scoring()
    return optimizer_for(scoring.strategy, parse_expression(scoring.expression))


def request_of(task: Task, *, kind: str, defaults: Resources) -> Request:
    """The task's resources as the Orchestrator reads them; auto fields fall back to ``defaults``."""
    resources = task.resources
    declared = resources.declared(defaults)
    candidates = task.candidates
    time_seconds: int | Auto | None = "auto" if resources.time == AUTO else _seconds(resources.time)
    memory_mib: float | Auto | None = "auto" if resources.memory == AUTO else _mib(resources.memory)
    return Request(
        kind=kind, size_hint=task.size_hint,
        cpus=resources.cpus, nodes=resources.nodes, time_seconds=time_seconds, memory_mib=memory_mib,
        partition=resources.partition,
        cpus_candidates=tuple(candidates.cpus) if candidates else (),
        nodes_candidates=tuple(candidates.nodes) if candidates else (),
        partition_candidates=tuple(candidates.partitions) if candidates else (),
        fallback=Declared(cpus=_count(declared.cpus), nodes=_count(declared.nodes),
                          time_seconds=_seconds(declared.time), memory_mib=_mib(declared.memory),
                          partition=declared.partition),
    )


def _count(value: int | str | None) -> int | None:
    return value if isinstance(value, int) else None


def _seconds(value: str | None) -> int | None:
    return None if value is None or value == AUTO else time_to_seconds(value)


def _mib(value: str | None) -> float | None:
    return None if value is None or value == AUTO else memory_to_mib(value)


@dataclass(frozen=True)
class Assignment:
    """A task with its auto resources chosen, the choice, and what it is predicted to cost."""

    task: Task
    choice: Choice
    status: ChoiceStatus | None  # None when the task declares every value: nothing to explain

    @property
    def core_hours(self) -> float | None:
        """Predicted billed core-hours of one element; None when nothing bounds the run time."""
        chosen = self.choice.chosen
        if chosen is None or (not chosen.prediction.modelled and chosen.prediction.run_seconds <= 0):
            return None
        return chosen.prediction.core_hours

    @property
    def ranked(self) -> tuple[dict[str, Any], ...]:
        return tuple(ranked_row(scored) for scored in self.choice.ranked)


def assign(task: Task, *, kind: str, defaults: Resources, choosing: Choosing) -> Assignment:
    request = request_of(task, kind=kind, defaults=defaults)
    models = choosing.learned.of(kind)
    choice = orchestrate(request, choosing.offers, runtime=models.runtime, memory=models.memory,
                         waits=choosing.learned.waits, starts=choosing.starts, optimizer=choosing.optimizer,
                         runs=models.runs)
    if not task.resources.auto:
        return Assignment(task=task, choice=choice, status=None)
    chosen = {"cpus": choice.cpus, "nodes": choice.nodes, "time": choice.time, "memory": choice.memory,
              "partition": choice.partition}
    resources = task.resources.model_copy(update={name: chosen[name] for name in task.resources.auto})
    return Assignment(task=task.model_copy(update={"resources": resources}), choice=choice,
                      status=choice_status(choice))


def choice_status(choice: Choice) -> ChoiceStatus:
    chosen = choice.chosen
    prediction = chosen.prediction if chosen is not None else None
    return ChoiceStatus(
        reason=choice.reason.value, message=choice.message, strategy=choice.strategy, cluster=choice.cluster,
        partition=choice.partition, nodes=choice.nodes, cpus=choice.cpus, time=choice.time, memory=choice.memory,
        score=None if chosen is None else round(chosen.score, 6), candidates=len(choice.ranked),
        predicted=None if prediction is None else PredictedFigures(
            run_seconds=round(prediction.run_seconds, 1), wait_seconds=round(prediction.wait_seconds, 1),
            start_seconds=None if prediction.start_seconds is None else round(prediction.start_seconds, 1),
            core_hours=round(prediction.core_hours, 6), cost=round(prediction.cost, 6)),
    )


def ranked_row(scored: Scored) -> dict[str, Any]:
    """One candidate as ``explain`` lists it."""
    candidate, prediction = scored.candidate, scored.prediction
    return {
        "cluster": candidate.cluster, "partition": candidate.partition, "nodes": candidate.nodes,
        "cpus": candidate.cpus, "timeSeconds": candidate.time_seconds, "memoryMiB": candidate.memory_mib,
        "runSeconds": round(prediction.run_seconds, 1), "waitSeconds": round(prediction.wait_seconds, 1),
        "startSeconds": None if prediction.start_seconds is None else round(prediction.start_seconds, 1),
        "coreHours": round(prediction.core_hours, 6), "cost": round(prediction.cost, 6),
        "modelled": prediction.modelled, "score": round(scored.score, 6),
    }


# --- placing a workflow on one of its candidate clusters --------------------------------------


def queries(resolved: ResolvedWorkflow, *, choosing: Choosing, tasks: Iterable[str]) -> frozenset[StartQuery]:
    """The start estimates choosing for the job tasks ``tasks`` of ``resolved`` needs (none
    unless the Optimizer reads ``start``)."""
    found: set[StartQuery] = set()
    defaults = resolved.spec.defaults.resources
    for name in tasks:
        task = resolved.tasks[name]
        if task.type is not TaskType.JOB:
            continue
        kind = kind_of(resolved, name)
        models = choosing.learned.of(kind)
        found |= start_queries(request_of(task, kind=kind, defaults=defaults), choosing.offers,
                               runtime=models.runtime, memory=models.memory, optimizer=choosing.optimizer)
    return frozenset(found)


def place(resolved: ResolvedWorkflow, *, choosing: Choosing) -> Placement:
    """The candidate cluster where the workflow's job tasks score best together: each task's best
    candidate there, summed (so ``time`` and ``cost`` weigh the whole workflow, ``start`` its
    queue). A cluster where some task has no candidate is out, unless every cluster is."""
    totals = sorted((_ClusterTotal.of(resolved, cluster, choosing=choosing)
                     for cluster in dict.fromkeys(offer.cluster for offer in choosing.offers)),
                    key=lambda total: (total.missing > 0, total.score, total.cluster))
    best = totals[0]
    others = ", ".join(f"{total.cluster} {total.score:.3g}" for total in totals[1:])
    message = (f"placed on {best.cluster}: its tasks score {best.score:.3g} there with {choosing.optimizer.name}"
               + (f" (others: {others})" if others else ""))
    ranked = tuple({"cluster": total.cluster, "score": round(total.score, 6), "tasksWithoutCandidate": total.missing}
                   for total in totals)
    return Placement(cluster=best.cluster, message=message, ranked=ranked)


@dataclass(frozen=True)
class _ClusterTotal:
    cluster: str
    score: float  # the sum of each task's best score there
    missing: int  # tasks with no candidate there

    @classmethod
    def of(cls, resolved: ResolvedWorkflow, cluster: str, *, choosing: Choosing) -> _ClusterTotal:
        here = Choosing(offers=tuple(o for o in choosing.offers if o.cluster == cluster), learned=choosing.learned,
                        starts=choosing.starts, optimizer=choosing.optimizer)
        scores = [_best_score(resolved, name, choosing=here) for name, task in resolved.tasks.items()
                  if task.type is TaskType.JOB]
        return cls(cluster=cluster, score=sum(score for score in scores if score is not None),
                   missing=sum(1 for score in scores if score is None))


def _best_score(resolved: ResolvedWorkflow, name: str, *, choosing: Choosing) -> float | None:
    assignment = assign(resolved.tasks[name], kind=kind_of(resolved, name),
                        defaults=resolved.spec.defaults.resources, choosing=choosing)
    chosen = assignment.choice.chosen
    return None if chosen is None else chosen.score
