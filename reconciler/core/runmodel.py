"""Models fitted on the runs a task kind has had: how long it runs, how much memory it needs, and
how long jobs wait in each queue.

Called by the Orchestrator (``reconciler.core.orchestrator``) with the ``RunSample`` records the
store keeps, and by ``reconciler history`` and ``explain`` for their one-line ``describe()``.
Pure and deterministic: the same samples give the same model. A model needs ``MIN_SAMPLES``
successful runs; with fewer the fit functions return None and the caller falls back to the
declared resources. Failures feed back: a run that timed out (or ran out of memory) raises every
later prediction for the same or a harder configuration above the limit it hit.

"cores" below is CPUs per task times nodes: the processors one element holds, the ``p`` of
Amdahl's law.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from .history import RunSample

MIN_SAMPLES = 3
SAFETY_QUANTILE = 0.9  # of observed / predicted: the safe prediction covers 9 runs in 10
TIME_MARGIN = 1.25  # on top of the safe prediction when requesting --time
MEMORY_QUANTILE = 0.95
MEMORY_MARGIN = 1.2
# A run that hit its time (memory) limit needed more than it; the next one asks for this much more.
FAILURE_GROWTH = 1.5
RECENT_WAITS = 20  # queue waits change with the load: only the newest runs per queue count
# A kind's code and inputs change over time, and the fit's cost grows with the runs: the run-time
# model learns from the newest this many successful runs.
RECENT_RUNS = 200
# Candidate size exponents: 0 (size does not matter) to 3 (cubic), fine enough for a few percent.
_EXPONENTS = tuple(step / 100 for step in range(301))

TIMEOUT = "TIMEOUT"
OUT_OF_MEMORY = "OUT_OF_MEMORY"


def _size(size_hint: float | None) -> float:
    return 1.0 if size_hint is None else size_hint


def _cores(sample: RunSample) -> int:
    return max(1, sample.cpus) * max(1, sample.nodes)


def _quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile, interpolating linearly between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class RuntimeFloor:
    """A run that timed out: the kind needs more than ``seconds`` on ``cores`` at ``size``, and so
    on fewer cores or at a larger size too."""

    cores: int
    size: float
    seconds: float

    def binds(self, cores: int, size: float) -> bool:
        return cores <= self.cores and size >= self.size


@dataclass(frozen=True, kw_only=True)
class RuntimeModel:
    """time(cores, size) = (a + b / cores) x size^c seconds: ``a`` the part no core count speeds
    up, ``b`` the part that divides among cores (Amdahl), ``c`` how the work grows with the size.
    When every run had the same core count, ``b`` is 0 and ``a`` carries the whole time: the
    history says nothing about scaling, so the model does not guess (every core count predicts
    the same). When every run had the same size, ``c`` is 0."""

    a: float
    b: float
    c: float
    safety: float  # >= 1: the ``SAFETY_QUANTILE`` of observed / predicted over the fitted runs
    samples: int  # successful runs fitted
    floors: tuple[RuntimeFloor, ...] = ()  # from runs that timed out

    def _mean(self, cores: int, size: float | None) -> float:
        return (self.a + self.b / max(1, cores)) * _size(size) ** self.c

    def _floor(self, cores: int, size: float | None) -> float:
        return max((floor.seconds for floor in self.floors if floor.binds(cores, _size(size))), default=0.0)

    def predict(self, cores: int, size: float | None = None) -> float:
        """Expected run seconds; never below a time limit a run at least as hard ran out of."""
        return max(self._mean(cores, size), self._floor(cores, size))

    def safe(self, cores: int, size: float | None = None) -> float:
        """Run seconds that most runs stay under: the mean times ``safety``, and after a timeout at
        least ``FAILURE_GROWTH`` times the limit it hit."""
        return max(self._mean(cores, size) * self.safety, self._floor(cores, size) * FAILURE_GROWTH)

    def describe(self) -> str:
        formula = f"({_number(self.a)} + {_number(self.b)} / cores) s"
        if self.c:
            formula += f" x size^{self.c:.2f}"
        text = f"run time {formula} from {self.samples} runs, safety x{self.safety:.2f}"
        if self.floors:
            text += f", raised by {_count(len(self.floors), 'timeout')}"
        return text


@dataclass(frozen=True)
class _Fit:
    a: float
    b: float
    c: float
    error: float  # the sum of squared relative errors


@dataclass(frozen=True)
class _Point:
    cores: int
    size: float
    seconds: float


def fit_runtime(samples: Iterable[RunSample], *, quantile: float = SAFETY_QUANTILE) -> RuntimeModel | None:
    """The run-time model of one kind's runs, or None with fewer than ``MIN_SAMPLES`` usable runs
    (COMPLETED, a positive elapsed time, and a positive size when one is given; a run without a
    size counts as size 1). Only the newest ``RECENT_RUNS`` of them count.

    For each exponent c on a grid, a and b come from least squares of elapsed / size^c against
    (1, 1/cores), weighted so that every run's relative error counts alike (a one-minute run
    matters as much as a ten-hour one), with a and b kept >= 0; the c with the smallest relative
    error wins (the smallest c on a tie)."""
    runs = list(samples)
    usable = sorted((run for run in runs if run.succeeded and run.elapsed_seconds > 0 and _size(run.size_hint) > 0),
                    key=lambda run: run.finished_at)[-RECENT_RUNS:]
    points = [_Point(_cores(run), _size(run.size_hint), run.elapsed_seconds) for run in usable]
    if len(points) < MIN_SAMPLES:
        return None
    exponents = _EXPONENTS if len({point.size for point in points}) > 1 else (0.0,)
    scaling = len({point.cores for point in points}) > 1
    best = min((_fit_at(points, c, scaling=scaling) for c in exponents), key=lambda fit: fit.error)
    ratios = [point.seconds / ((best.a + best.b / point.cores) * point.size**best.c) for point in points]
    return RuntimeModel(a=best.a, b=best.b, c=best.c, safety=max(1.0, _quantile(ratios, quantile)),
                        samples=len(points), floors=_timeout_floors(runs))


def _fit_at(points: Sequence[_Point], c: float, *, scaling: bool) -> _Fit:
    """Non-negative weighted least squares of z = seconds / size^c ~ a + b x, x = 1 / cores, with
    weights 1 / z^2; by cases, as two variables allow: the free solution when both are >= 0, else
    the better of a alone and b alone."""
    zs = [point.seconds / point.size**c for point in points]
    xs = [1.0 / point.cores for point in points]
    ws = [1.0 / z**2 for z in zs]
    s_w, s_z = sum(ws), sum(w * z for w, z in zip(ws, zs, strict=True))
    only_a = (s_z / s_w, 0.0)
    fits = [only_a]
    if scaling:
        s_x = sum(w * x for w, x in zip(ws, xs, strict=True))
        s_xx = sum(w * x * x for w, x in zip(ws, xs, strict=True))
        s_xz = sum(w * x * z for w, x, z in zip(ws, xs, zs, strict=True))
        det = s_w * s_xx - s_x * s_x
        a, b = ((s_xx * s_z - s_x * s_xz) / det, (s_w * s_xz - s_x * s_z) / det) if det > 0 else (-1.0, -1.0)
        fits = [(a, b)] if a >= 0 and b >= 0 else [only_a, (0.0, s_xz / s_xx)]

    def error(ab: tuple[float, float]) -> float:
        return sum(w * (z - ab[0] - ab[1] * x) ** 2 for w, x, z in zip(ws, xs, zs, strict=True))

    a, b = min(fits, key=error)
    return _Fit(a=a, b=b, c=c, error=error((a, b)))


def _timeout_floors(runs: Iterable[RunSample]) -> tuple[RuntimeFloor, ...]:
    floors = {
        RuntimeFloor(cores=_cores(run), size=_size(run.size_hint),
                     seconds=float(run.time_limit_seconds or run.elapsed_seconds))
        for run in runs if run.state == TIMEOUT and (run.time_limit_seconds or run.elapsed_seconds) > 0
    }
    return tuple(sorted(floors, key=lambda floor: (floor.cores, floor.size, floor.seconds)))


@dataclass(frozen=True, kw_only=True)
class MemoryModel:
    """Memory to request per job: a high quantile of the peak resident memory of the batch step
    over successful runs, with a margin; never below ``FAILURE_GROWTH`` times the largest request
    that ran out of memory."""

    mib: float
    samples: int  # successful runs with a MaxRSS
    floor_mib: float | None = None  # from runs that ran out of memory

    def describe(self) -> str:
        text = f"memory {_mib(self.mib)} from the MaxRSS of {self.samples} runs"
        if self.floor_mib is not None:
            text += f", at least {_mib(self.floor_mib)} after an out-of-memory"
        return text


def fit_memory(samples: Iterable[RunSample], *, quantile: float = MEMORY_QUANTILE,
               margin: float = MEMORY_MARGIN) -> MemoryModel | None:
    """The memory model, or None when fewer than ``MIN_SAMPLES`` successful runs report a MaxRSS."""
    runs = list(samples)
    peaks = [run.max_rss_mib for run in runs if run.succeeded and run.max_rss_mib is not None and run.max_rss_mib > 0]
    if len(peaks) < MIN_SAMPLES:
        return None
    # A job that ran out of memory without a request got Slurm's default, which only its peak
    # (killed at the limit) tells.
    failed = [run.memory_mib or run.max_rss_mib for run in runs if run.state == OUT_OF_MEMORY]
    limits = [limit for limit in failed if limit]
    floor = max(limits) * FAILURE_GROWTH if limits else None
    mib = _quantile(peaks, quantile) * margin
    return MemoryModel(mib=max(mib, floor or 0.0), samples=len(peaks), floor_mib=floor)


Queue = tuple[str, str | None]  # (cluster, partition); None: the cluster's default partition


@dataclass(frozen=True)
class QueueModel:
    """Expected queue wait per (cluster, partition): the median of the newest runs' waits there.
    Queue waits belong to the queue, not to a task kind: fit it on every kind's runs."""

    waits: Mapping[Queue, float]
    samples: Mapping[Queue, int]

    def wait(self, cluster: str, partition: str | None) -> float | None:
        return self.waits.get((cluster, partition))

    def describe(self) -> str:
        if not self.waits:
            return "queue waits: no runs yet"
        parts = [f"{cluster}/{partition or '(default)'} {_duration(self.waits[cluster, partition])} "
                 f"({_count(self.samples[cluster, partition], 'run')})"
                 for cluster, partition in sorted(self.waits, key=lambda queue: (queue[0], queue[1] or ""))]
        return "queue waits: " + ", ".join(parts)


def fit_queue(samples: Iterable[RunSample], *, recent: int = RECENT_WAITS) -> QueueModel:
    by_queue: dict[Queue, list[tuple[datetime, float]]] = {}
    for run in samples:
        if run.queue_wait_seconds is not None:
            by_queue.setdefault((run.cluster, run.partition), []).append((run.finished_at, run.queue_wait_seconds))
    newest = {queue: [wait for _, wait in sorted(waits)[-recent:]] for queue, waits in by_queue.items()}
    return QueueModel(waits={queue: statistics.median(waits) for queue, waits in newest.items()},
                      samples={queue: len(waits) for queue, waits in newest.items()})


def time_request(seconds: float, *, max_time_seconds: int | None, margin: float = TIME_MARGIN) -> int:
    """Seconds of --time to ask for a run predicted (safely) to take ``seconds``: with a margin,
    rounded up to whole minutes as Slurm counts them, and no more than the partition allows."""
    request = max(1, math.ceil(seconds * margin / 60)) * 60
    return request if max_time_seconds is None else min(request, max_time_seconds)


def _number(value: float) -> str:
    return f"{value:.3g}" if value < 1000 else f"{value:.0f}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _mib(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{math.ceil(mib)} MiB"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
