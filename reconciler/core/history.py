"""Finished runs as the Optimizer learns from them: one record per Slurm job that ended.

Built by the store (``reconciler.store.history``) from what sacct reported when the job ended,
and read by the run-time model (``reconciler.core.runmodel``) and ``reconciler history``. An
array job is one record: its elements share one request, so they are one observation of how
that request runs (``elements`` of them, ``elapsed_seconds`` their mean).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ..manifests.resolve import ResolvedWorkflow


@dataclass(frozen=True, kw_only=True)
class RunSample:
    """One finished job of a task kind, with what it asked for and what it used."""

    kind: str  # the task kind (see ``task_kind``)
    workflow: str  # namespace/name
    task: str
    attempt: int
    job_id: str
    cluster: str
    partition: str | None
    nodes: int
    cpus: int  # per element (--cpus-per-task as allocated)
    memory_mib: float | None  # requested, per element
    time_limit_seconds: int | None  # requested
    size_hint: float | None  # the task's sizeHint, when it gives one
    state: str  # Slurm's end state: COMPLETED, FAILED, TIMEOUT, OUT_OF_MEMORY, CANCELLED, NODE_FAIL...
    elements: int  # 1 for a plain job
    elapsed_seconds: float  # per element (the mean over an array's elements)
    queue_wait_seconds: float | None  # Start - Submit (the mean over elements)
    max_rss_mib: float | None  # of the batch step (the largest over elements)
    total_cpu_seconds: float | None  # summed over elements
    billed_core_seconds: int  # elapsed x the billing TRES (else allocated CPUs), summed over elements
    finished_at: datetime

    @property
    def succeeded(self) -> bool:
        return self.state == "COMPLETED"


def kind_of(resolved: ResolvedWorkflow, name: str) -> str:
    """The kind of task ``name`` of ``resolved``, as ``task_kind`` keys it."""
    template = resolved.workflow.spec.template_ref
    return task_kind(explicit=resolved.tasks[name].kind, template=template.name if template else None,
                     workflow=resolved.workflow.metadata.name, task=name)


def task_kind(*, explicit: str | None, template: str | None, workflow: str, task: str) -> str:
    """The key runs of one kind of task share: the task's own ``kind:``; else the template's name
    and the task's, so every instance of a template learns from the others; else the workflow's
    name and the task's."""
    if explicit:
        return explicit
    return f"{template or workflow}/{task}"


@dataclass(frozen=True, kw_only=True)
class TaskUsage:
    """How much of what it was given one attempt of a task used, over all its jobs: what a
    task's status shows as its efficiency."""

    attempt: int
    cpu_efficiency: float | None  # TotalCPU / (elapsed x allocated CPUs)
    memory_efficiency: float | None  # the largest MaxRSS / requested memory

    @classmethod
    def of(cls, samples: Sequence[RunSample]) -> TaskUsage | None:
        """The usage of the latest attempt among ``samples`` (one task's runs); None without any."""
        if not samples:
            return None
        attempt = max(s.attempt for s in samples)
        runs = [s for s in samples if s.attempt == attempt]
        given = sum(s.elapsed_seconds * s.elements * s.cpus for s in runs)
        used = [s.total_cpu_seconds for s in runs if s.total_cpu_seconds is not None]
        cpu = sum(used) / given if used and given > 0 else None
        memory = [s.max_rss_mib / s.memory_mib for s in runs if s.max_rss_mib is not None and s.memory_mib]
        return cls(attempt=attempt, cpu_efficiency=None if cpu is None else round(cpu, 3),
                   memory_efficiency=round(max(memory), 3) if memory else None)
