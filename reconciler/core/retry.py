"""Retry decisions: whether a failed element runs again, when, and with what request.

Pure. Escalation multiplies the declared request once per matching failure (more time after
each TIMEOUT, more memory after each OUT_OF_MEMORY) and never asks for more time than the
partition allows; a NODE_FAIL retry keeps away from the nodes that failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from ..api import FailureKind, Resources, RetryPolicy
from ..api.units import memory_to_mib, mib_to_memory, seconds_to_time, time_to_seconds
from .taskruns import Failure


def can_retry(policy: RetryPolicy | None, failures: Sequence[Failure]) -> bool:
    """True when the newest failure is of a kind the policy retries and retries are left."""
    if policy is None or not failures:
        return False
    last = failures[-1]
    return last.kind is not None and last.kind in policy.on_failures and len(failures) <= policy.limit


def retry_due_at(policy: RetryPolicy, failures: Sequence[Failure], *, fallback: datetime) -> datetime:
    """When the next attempt may go out: exponential backoff from the newest failure."""
    delay = policy.backoff_seconds * policy.backoff_factor ** (len(failures) - 1)
    return (failures[-1].finished_at or fallback) + timedelta(seconds=delay)


def escalated_resources(
    base: Resources,
    policy: RetryPolicy | None,
    failures: Sequence[Failure],
    *,
    partition_max_time: int | None,
) -> Resources:
    if policy is None or policy.escalate is None:
        return base
    update: dict[str, str] = {}
    timeouts = sum(1 for f in failures if f.kind is FailureKind.TIMEOUT)
    if policy.escalate.time and timeouts and base.time:
        seconds = time_to_seconds(base.time) * policy.escalate.time**timeouts
        if partition_max_time is not None:
            seconds = min(seconds, partition_max_time)
        update["time"] = seconds_to_time(seconds)
    out_of_memory = sum(1 for f in failures if f.kind is FailureKind.OUT_OF_MEMORY)
    if policy.escalate.memory and out_of_memory and base.memory:
        update["memory"] = mib_to_memory(memory_to_mib(base.memory) * policy.escalate.memory**out_of_memory)
    return base.model_copy(update=update) if update else base


def failed_nodes(failures: Sequence[Failure]) -> tuple[str, ...]:
    # Node lists stay Slurm hostlist expressions ("cn[1,3]"); --exclude takes them as they are.
    return tuple(sorted({
        failure.node_list
        for failure in failures
        if failure.kind is FailureKind.NODE_FAIL and failure.node_list and failure.node_list != "None assigned"
    }))
