"""The Orchestrator: the configuration a task runs with when it leaves resources to ``auto``.

Called by the planner for each task about to be submitted, with the task's ``Request``, the
``Offer`` of every (cluster, partition) it may run on, the models fitted on its kind's history
(``reconciler.core.runmodel``), and, when the Optimizer reads ``start``, Slurm's own start
estimates for the ``start_queries`` (the edge asks ``sbatch --test-only``). ``orchestrate``
enumerates the candidates, predicts each one's run time, queue wait, billed core-hours and cost,
lets the Optimizer rank them, and returns a ``Choice`` that says what to submit and why.

Guarantees: pure and deterministic; a value the task declares is never overridden (every
candidate carries it); a candidate stays within its partition's limits (MaxTime, MaxNodes, CPUs
per node, total CPUs), and one whose safe predicted run time exceeds the MaxTime is left out, since
it would likely time out.

Without enough history the fields that need a model fall back to the declared values (the
workflow's task defaults, else Slurm's): cpus, nodes and time need the run-time model, memory
the memory model. Partition and cluster are still chosen among the offers then: the criteria
use the requested time limit (declared, else the partition's MaxTime) as the run time, an upper
bound that is the same for every candidate with the same limit, so ``cost`` still prefers the
cheaper partition and ``start`` the idler cluster.

"cores" is CPUs per task times nodes, as ``Resources.cores`` counts them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from ..api.orchestration import AUTO, Auto
from ..api.units import mib_to_memory, seconds_to_time
from .optimizer import Optimizer
from .runmodel import MIN_SAMPLES, MemoryModel, QueueModel, RuntimeModel, time_request

# Without candidates: at most this many nodes (a task that wants more says so), and CPU counts up
# to this when the partition does not say how many a node has.
MAX_AUTO_NODES = 4
MAX_AUTO_CPUS = 64
_MIB_PER_GB = 1024  # Slurm's TRESBillingWeights weigh memory per GB (its "G" is 1024 MiB)


def fixed(value: int | Auto | None) -> int | None:
    """A request count's declared value: None when it is auto or unset."""
    return value if isinstance(value, int) else None


@dataclass(frozen=True, kw_only=True)
class Offer:
    """One (cluster, partition) a task may run on, with the limits and prices candidates respect."""

    cluster: str
    partition: str | None  # None: the cluster's default partition, its name not known
    default: bool = False  # Slurm's default partition of its cluster (where a job without -p goes)
    max_time_seconds: int | None = None  # None: unlimited
    max_nodes: int | None = None
    max_cpus_per_node: int | None = None
    total_cpus: int | None = None
    cost_per_core_hour: float = 0.0
    # TRESBillingWeights as Slurm gives them: "CPU", "Mem" (per GB), "Node"...; empty: billing = CPUs.
    billing_weights: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Declared:
    """What a task runs with when nothing is chosen: its own values with each ``auto`` replaced
    by the workflow's task defaults; None is Slurm's default."""

    cpus: int | None = None
    nodes: int | None = None
    time_seconds: int | None = None
    memory_mib: float | None = None
    partition: str | None = None


@dataclass(frozen=True, kw_only=True)
class Request:
    """What a task declares: per field a value, ``AUTO``, or None (Slurm's default); the values
    ``auto`` may take (empty: from the partitions' limits); and what to fall back on."""

    kind: str
    size_hint: float | None = None
    cpus: int | Auto | None = None
    nodes: int | Auto | None = None
    time_seconds: int | Auto | None = None
    memory_mib: float | Auto | None = None
    partition: str | Auto | None = None
    cpus_candidates: tuple[int, ...] = ()
    nodes_candidates: tuple[int, ...] = ()
    partition_candidates: tuple[str, ...] = ()
    fallback: Declared = field(default_factory=Declared)

    @property
    def auto(self) -> tuple[str, ...]:
        return tuple(name for name in ("cpus", "nodes", "time_seconds", "memory_mib", "partition")
                     if getattr(self, name) == AUTO)


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One configuration to submit; None is Slurm's default (partition None: the default partition)."""

    cluster: str
    partition: str | None
    nodes: int | None
    cpus: int | None
    time_seconds: int | None  # requested
    memory_mib: float | None  # requested

    @property
    def cores(self) -> int:
        return (self.cpus or 1) * (self.nodes or 1)


@dataclass(frozen=True, kw_only=True)
class StartQuery:
    """A configuration to ask Slurm for its expected start (``sbatch --test-only``)."""

    cluster: str
    partition: str | None
    nodes: int | None
    cpus: int | None
    time_seconds: int | None

    @classmethod
    def of(cls, candidate: Candidate) -> StartQuery:
        return cls(cluster=candidate.cluster, partition=candidate.partition, nodes=candidate.nodes,
                   cpus=candidate.cpus, time_seconds=candidate.time_seconds)


@dataclass(frozen=True, kw_only=True)
class Prediction:
    run_seconds: float
    # False: no run-time model, run_seconds is the time limit (an upper bound; 0 when unknown).
    modelled: bool
    wait_seconds: float  # expected in the queue (0 for a queue no run has waited in yet)
    start_seconds: float | None  # until the start Slurm estimates; None when not asked
    core_hours: float  # billed: run time x the billing TRES (else cores)
    cost: float  # core_hours x the partition's costPerCoreHour


@dataclass(frozen=True, kw_only=True)
class Scored:
    candidate: Candidate
    prediction: Prediction
    criteria: Mapping[str, float]  # every criterion of reconciler.api.postfix.CRITERIA
    score: float


class Reason(str, Enum):
    CHOSEN = "Chosen"
    NO_HISTORY = "NoHistory"
    TOO_LITTLE_HISTORY = "TooLittleHistory"
    EXPLICIT = "Explicit"  # nothing was auto and there was one cluster: nothing to choose
    NO_CANDIDATE = "NoCandidate"  # nothing fits the limits: the task goes as declared


@dataclass(frozen=True, kw_only=True)
class Choice:
    """What to submit and why. The resources are the chosen candidate's, or the declared ones
    when nothing fits (cluster None then: the caller's own)."""

    chosen: Scored | None
    ranked: tuple[Scored, ...]  # every candidate, best first
    strategy: str
    reason: Reason
    message: str
    cluster: str | None
    partition: str | None
    nodes: int | None
    cpus: int | None
    time: str | None  # Slurm's notation
    memory: str | None  # Slurm's notation

    @property
    def core_hours(self) -> float | None:
        """The chosen candidate's predicted billed core-hours (for budgets)."""
        return self.chosen.prediction.core_hours if self.chosen else None


# --- enumeration -------------------------------------------------------------------------------


def candidates(request: Request, offers: Sequence[Offer], *, runtime: RuntimeModel | None,
               memory: MemoryModel | None) -> list[Candidate]:
    """Every configuration the task may run with: partition (per cluster) x CPUs x nodes within
    the limits, with time and memory from the models when auto. A field whose model is missing
    takes its declared value (see ``fallen_back``)."""
    return [candidate for _, candidate in _enumerate(_effective(request, runtime=runtime, memory=memory),
                                                     offers, runtime=runtime, memory=memory)]


def start_queries(request: Request, offers: Sequence[Offer], *, runtime: RuntimeModel | None,
                  memory: MemoryModel | None, optimizer: Optimizer) -> frozenset[StartQuery]:
    """The distinct configurations to ask Slurm about; none unless the Optimizer reads ``start``."""
    if "start" not in optimizer.criteria:
        return frozenset()
    return frozenset(StartQuery.of(candidate)
                     for candidate in candidates(request, offers, runtime=runtime, memory=memory))


def fallen_back(request: Request, *, runtime: RuntimeModel | None, memory: MemoryModel | None) -> tuple[str, ...]:
    """The auto fields that take their declared value because their model is missing."""
    needs_runtime = ("cpus", "nodes", "time_seconds") if runtime is None else ()
    needs_memory = ("memory_mib",) if memory is None else ()
    return tuple(name for name in request.auto if name in needs_runtime + needs_memory)


def _effective(request: Request, *, runtime: RuntimeModel | None, memory: MemoryModel | None) -> Request:
    names = fallen_back(request, runtime=runtime, memory=memory)
    return replace(request, **{name: getattr(request.fallback, name) for name in names})


def _enumerate(request: Request, offers: Sequence[Offer], *, runtime: RuntimeModel | None,
               memory: MemoryModel | None) -> Iterator[tuple[Offer, Candidate]]:
    for offer in _offers(request, offers):
        for nodes in _nodes(request, offer):
            for cpus in _cpus(request, offer, nodes):
                cores = (cpus or 1) * (nodes or 1)
                if _time_fits(request, offer, runtime, cores=cores):
                    yield offer, Candidate(
                        cluster=offer.cluster, partition=None if request.partition is None else offer.partition,
                        nodes=nodes, cpus=cpus, time_seconds=_time(request, offer, runtime, cores=cores),
                        memory_mib=_memory(request, memory))


def _offers(request: Request, offers: Sequence[Offer]) -> list[Offer]:
    if request.partition == AUTO:
        # A cluster whose partitions are not known offers its default one (partition None).
        allowed = set(request.partition_candidates)
        return [offer for offer in offers if not allowed or offer.partition in allowed]
    if request.partition is not None:
        return [offer for offer in offers if offer.partition == request.partition]
    return _default_offers(offers)


def _default_offers(offers: Sequence[Offer]) -> list[Offer]:
    """Per cluster, the offer of its default partition: a job without a partition goes there.
    Without one, the job gets no partition and no limits apply."""
    clusters = list(dict.fromkeys(offer.cluster for offer in offers))
    defaults = {offer.cluster: offer for offer in reversed(offers) if offer.default or offer.partition is None}
    return [defaults.get(cluster, Offer(cluster=cluster, partition=None)) for cluster in clusters]


def _nodes(request: Request, offer: Offer) -> list[int | None]:
    if request.nodes != AUTO:
        nodes = fixed(request.nodes)
        return [nodes] if nodes is None or offer.max_nodes is None or nodes <= offer.max_nodes else []
    values = request.nodes_candidates or tuple(range(1, min(offer.max_nodes or MAX_AUTO_NODES, MAX_AUTO_NODES) + 1))
    return [nodes for nodes in values if offer.max_nodes is None or nodes <= offer.max_nodes]


def _cpus(request: Request, offer: Offer, nodes: int | None) -> list[int | None]:
    if request.cpus == AUTO:
        values: Sequence[int | None] = request.cpus_candidates or _powers_of_two(_cpu_limit(offer))
    else:
        values = [fixed(request.cpus)]
    return [cpus for cpus in values if _fits(offer, cpus or 1, nodes or 1)]


def _cpu_limit(offer: Offer) -> int:
    limits = [limit for limit in (offer.max_cpus_per_node, offer.total_cpus) if limit is not None]
    return min(limits) if limits else MAX_AUTO_CPUS


def _powers_of_two(limit: int) -> tuple[int, ...]:
    return tuple(2**exponent for exponent in range(int(math.log2(max(1, limit))) + 1))


def _fits(offer: Offer, cpus: int, nodes: int) -> bool:
    per_node = offer.max_cpus_per_node is None or cpus <= offer.max_cpus_per_node
    total = offer.total_cpus is None or cpus * nodes <= offer.total_cpus
    return per_node and total


def _time_fits(request: Request, offer: Offer, runtime: RuntimeModel | None, *, cores: int) -> bool:
    """Whether a run on ``cores`` fits the partition's MaxTime and the declared limit: one whose
    safe prediction exceeds either would likely time out."""
    limit = offer.max_time_seconds
    declared = fixed(request.time_seconds)
    if declared is not None and limit is not None and declared > limit:
        return False
    if runtime is None:
        return True
    safe = runtime.safe(cores, request.size_hint)
    # A declared limit rules out only core counts the Orchestrator picked: it cannot help the others.
    chosen_cores = AUTO in (request.cpus, request.nodes)
    too_long_for_declared = declared is not None and chosen_cores and safe > declared
    return not too_long_for_declared and (request.time_seconds != AUTO or limit is None or safe <= limit)


def _time(request: Request, offer: Offer, runtime: RuntimeModel | None, *, cores: int) -> int | None:
    if request.time_seconds == AUTO and runtime is not None:
        return time_request(runtime.safe(cores, request.size_hint), max_time_seconds=offer.max_time_seconds)
    return fixed(request.time_seconds)


def _memory(request: Request, memory: MemoryModel | None) -> float | None:
    if request.memory_mib == AUTO:
        return float(math.ceil(memory.mib)) if memory is not None else None
    return request.memory_mib if isinstance(request.memory_mib, float | int) else None


# --- prediction and choice ---------------------------------------------------------------------


def orchestrate(request: Request, offers: Sequence[Offer], *, runtime: RuntimeModel | None,
                memory: MemoryModel | None, waits: QueueModel | None, starts: Mapping[StartQuery, float],
                optimizer: Optimizer, runs: int) -> Choice:
    """The best configuration for the task and why. ``runs`` is how many finished runs of the
    kind history holds (for the message); ``starts`` maps ``start_queries`` to Slurm's estimated
    seconds until the start (a query without an answer takes the expected queue wait instead)."""
    effective = _effective(request, runtime=runtime, memory=memory)
    scored = [_scored(effective, offer, candidate, runtime=runtime, waits=waits, starts=starts, optimizer=optimizer)
              for offer, candidate in _enumerate(effective, offers, runtime=runtime, memory=memory)]
    ranked = tuple(optimizer.rank(scored))
    chosen = ranked[0] if ranked else None
    reason = _reason(request, offers, runtime=runtime, memory=memory, runs=runs, found=chosen is not None)
    message = _message(reason, request, ranked, fell_back=fallen_back(request, runtime=runtime, memory=memory),
                       runs=runs, offers=offers)
    if chosen is None:
        declared = _declared(request)
        return Choice(chosen=None, ranked=ranked, strategy=optimizer.name, reason=reason, message=message,
                      cluster=None, partition=declared.partition, nodes=declared.nodes, cpus=declared.cpus,
                      time=_time_text(declared.time_seconds), memory=_memory_text(declared.memory_mib))
    candidate = chosen.candidate
    return Choice(chosen=chosen, ranked=ranked, strategy=optimizer.name, reason=reason, message=message,
                  cluster=candidate.cluster, partition=candidate.partition, nodes=candidate.nodes,
                  cpus=candidate.cpus, time=_time_text(candidate.time_seconds),
                  memory=_memory_text(candidate.memory_mib))


def billing_per_hour(offer: Offer, candidate: Candidate) -> float:
    """The job's billing TRES as Slurm computes it from TRESBillingWeights: the sum of each weight
    times the count (memory in GB over all nodes; a request without memory adds nothing, since
    the default Slurm would give is not known here); without weights, the allocated cores.
    PriorityFlags=MAX_TRES is not modelled."""
    if not offer.billing_weights:
        return float(candidate.cores)
    weights = {name.lower(): weight for name, weight in offer.billing_weights.items()}
    nodes = candidate.nodes or 1
    memory_gb = (candidate.memory_mib or 0.0) * nodes / _MIB_PER_GB
    return (weights.get("cpu", 0.0) * candidate.cores + weights.get("mem", 0.0) * memory_gb
            + weights.get("node", 0.0) * nodes)


def predict(request: Request, offer: Offer, candidate: Candidate, *, runtime: RuntimeModel | None,
            waits: QueueModel | None, starts: Mapping[StartQuery, float]) -> Prediction:
    """One candidate's predicted figures."""
    if runtime is not None:
        run = runtime.predict(candidate.cores, request.size_hint)
        # Slurm ends the job at its limit, and bills no more than that.
        run = run if candidate.time_seconds is None else min(run, float(candidate.time_seconds))
    else:
        run = float(candidate.time_seconds or offer.max_time_seconds or 0)
    wait = waits.wait(offer.cluster, offer.partition) if waits is not None else None
    core_hours = billing_per_hour(offer, candidate) * run / 3600
    return Prediction(run_seconds=run, modelled=runtime is not None, wait_seconds=wait or 0.0,
                      start_seconds=starts.get(StartQuery.of(candidate)), core_hours=core_hours,
                      cost=core_hours * offer.cost_per_core_hour)


def criteria_values(candidate: Candidate, prediction: Prediction) -> dict[str, float]:
    """Every criterion of ``reconciler.api.postfix.CRITERIA`` for one candidate; times in hours."""
    start = prediction.start_seconds if prediction.start_seconds is not None else prediction.wait_seconds
    return {
        "time": (prediction.wait_seconds + prediction.run_seconds) / 3600,
        "run": prediction.run_seconds / 3600,
        "wait": prediction.wait_seconds / 3600,
        "start": start / 3600,
        "cost": prediction.cost,
        "coreHours": prediction.core_hours,
        "cpus": float(candidate.cpus or 1),
        "nodes": float(candidate.nodes or 1),
    }


def _scored(request: Request, offer: Offer, candidate: Candidate, *, runtime: RuntimeModel | None,
            waits: QueueModel | None, starts: Mapping[StartQuery, float], optimizer: Optimizer) -> Scored:
    prediction = predict(request, offer, candidate, runtime=runtime, waits=waits, starts=starts)
    values = criteria_values(candidate, prediction)
    return Scored(candidate=candidate, prediction=prediction, criteria=values, score=optimizer.score(values))


def _reason(request: Request, offers: Sequence[Offer], *, runtime: RuntimeModel | None,
            memory: MemoryModel | None, runs: int, found: bool) -> Reason:
    if not found:
        return Reason.NO_CANDIDATE
    if fallen_back(request, runtime=runtime, memory=memory):
        return Reason.NO_HISTORY if runs == 0 else Reason.TOO_LITTLE_HISTORY
    if not request.auto and len({offer.cluster for offer in offers}) <= 1:
        return Reason.EXPLICIT
    return Reason.CHOSEN


# The names a manifest gives the fields.
_FIELD_NAMES = {"cpus": "cpus", "nodes": "nodes", "time_seconds": "time", "memory_mib": "memory",
                "partition": "partition"}


def _message(reason: Reason, request: Request, ranked: Sequence[Scored], *, fell_back: Sequence[str], runs: int,
             offers: Sequence[Offer]) -> str:
    subject = f"{_plural(runs, 'run')} of kind {request.kind}" if runs else f"no runs of kind {request.kind} yet"
    if reason is Reason.NO_CANDIDATE:
        clusters = ", ".join(dict.fromkeys(offer.cluster for offer in offers)) or "none"
        return (f"{subject}: no configuration fits the limits of the {len(offers)} partitions offered "
                f"(clusters: {clusters}), so the task goes as declared")
    best = ranked[0]
    if reason is Reason.EXPLICIT:
        return f"nothing is auto: {describe(best.candidate)} as declared"
    verdict = f"{describe(best.candidate)} scores {best.score:.3g}, the best of {len(ranked)}"
    if reason is Reason.CHOSEN:
        return f"{subject}: {verdict}"
    fields = " and ".join(_FIELD_NAMES[name] for name in fell_back)
    too_few = "" if runs == 0 else f", too few to predict from (at least {MIN_SAMPLES} successful ones needed)"
    return f"{subject}{too_few}: {fields} as declared; {verdict}"


def describe(candidate: Candidate) -> str:
    """A candidate as a person reads it: "8 CPUs x 2 nodes, 00:30:00, 4G on cluster a partition debug"."""
    counts = " x ".join(_plural(count, noun) for count, noun in ((candidate.cpus, "CPU"), (candidate.nodes, "node"))
                        if count is not None)
    parts = [text for text in (counts, _time_text(candidate.time_seconds), _memory_text(candidate.memory_mib)) if text]
    where = (f"cluster {candidate.cluster} partition {candidate.partition}" if candidate.partition is not None
             else f"cluster {candidate.cluster} (default partition)")
    return f"{', '.join(parts)} on {where}" if parts else where


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _declared(request: Request) -> Declared:
    """The request as declared, each auto field taking its fallback."""
    return Declared(**{name: getattr(request.fallback if getattr(request, name) == AUTO else request, name)
                       for name in _FIELD_NAMES})


def _time_text(seconds: int | None) -> str | None:
    return None if seconds is None else seconds_to_time(seconds)


def _memory_text(mib: float | None) -> str | None:
    return None if mib is None else mib_to_memory(mib)
