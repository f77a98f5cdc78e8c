"""What a cluster can still take in one tick, shared by every workflow planned on it.

Pure. The planner makes one budget per cluster and tick (``CapacityBudget.for_cluster``) and lets
each job task take from it, oldest workflow first; what does not fit waits for a later tick.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..api import Capacity
from .observed import ClusterView


@dataclass
class CapacityBudget:
    """What the cluster can still take this tick: the reconciler's own limit and Slurm's visible
    submit limit, less everything the user already has in the queue (ours or not).

    Mutable on purpose: it is the one thing the workflows on a cluster share within a tick, and
    each admission must see what the ones before it took."""

    jobs: int | None
    cores: int | None

    @classmethod
    def for_cluster(cls, capacity: Capacity, view: ClusterView) -> CapacityBudget:
        limits = [limit for limit in (capacity.max_submitted_jobs, view.submit_limit) if limit is not None]
        jobs = max(0, min(limits) - view.queued_jobs) if limits else None
        cores = max(0, capacity.max_cores - view.queued_cores) if capacity.max_cores is not None else None
        return cls(jobs=jobs, cores=cores)

    def admit(self, elements: int, cores_each: int) -> int:
        """How many of ``elements`` fit, and take them."""
        fit = elements
        if self.jobs is not None:
            fit = min(fit, self.jobs)
        if self.cores is not None:
            fit = min(fit, self.cores // max(1, cores_each))
        if self.jobs is not None:
            self.jobs -= fit
        if self.cores is not None:
            self.cores -= fit * cores_each
        return fit
