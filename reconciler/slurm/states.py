"""Slurm job states (as squeue and sacct print them) mapped to task phases and failure kinds.

Called by the observation layer for every record it keeps. Pure and total: any text maps to a
phase, and a state this table does not know maps to Unknown, so a new Slurm version can never
make the reconciler believe a job finished.
"""

from __future__ import annotations

import re

from ..api import FailureKind, TaskPhase

# Pending reasons that mean someone (or something) holds the job: `scontrol release` lets it go.
HELD_REASONS = frozenset({"JobHeldUser", "JobHeldAdmin"})

_PHASES: dict[str, tuple[TaskPhase, FailureKind | None]] = {
    "PENDING": (TaskPhase.SUBMITTED, None),
    "REQUEUED": (TaskPhase.SUBMITTED, None),
    "REQUEUE_FED": (TaskPhase.SUBMITTED, None),
    "REQUEUE_HOLD": (TaskPhase.HELD, None),
    "RESV_DEL_HOLD": (TaskPhase.HELD, None),
    "RUNNING": (TaskPhase.RUNNING, None),
    "COMPLETING": (TaskPhase.RUNNING, None),
    "CONFIGURING": (TaskPhase.RUNNING, None),
    "SUSPENDED": (TaskPhase.RUNNING, None),
    "STOPPED": (TaskPhase.RUNNING, None),
    "STAGE_OUT": (TaskPhase.RUNNING, None),
    "SIGNALING": (TaskPhase.RUNNING, None),
    "RESIZING": (TaskPhase.RUNNING, None),
    "COMPLETED": (TaskPhase.SUCCEEDED, None),
    "FAILED": (TaskPhase.FAILED, FailureKind.FAILED),
    "SPECIAL_EXIT": (TaskPhase.FAILED, FailureKind.FAILED),
    "TIMEOUT": (TaskPhase.FAILED, FailureKind.TIMEOUT),
    "DEADLINE": (TaskPhase.FAILED, FailureKind.TIMEOUT),
    "OUT_OF_MEMORY": (TaskPhase.FAILED, FailureKind.OUT_OF_MEMORY),
    "NODE_FAIL": (TaskPhase.FAILED, FailureKind.NODE_FAIL),
    "BOOT_FAIL": (TaskPhase.FAILED, FailureKind.NODE_FAIL),
    "PREEMPTED": (TaskPhase.FAILED, FailureKind.PREEMPTED),
    "CANCELLED": (TaskPhase.CANCELLED, None),
    "REVOKED": (TaskPhase.CANCELLED, None),
}

_EXIT_CODE = re.compile(r"([0-9]{1,9})(?::([0-9]{1,9}))?")


def job_phase(state: str, reason: str | None) -> tuple[TaskPhase, FailureKind | None]:
    """The phase of a job in ``state``; ``reason`` tells a held pending job from a waiting one.

    sacct decorates some states ("CANCELLED by 1000"); without -P it truncates them with "+".
    Only the first word counts.
    """
    words = state.strip().split()
    name = words[0].rstrip("+").upper() if words else ""
    phase, failure = _PHASES.get(name, (TaskPhase.UNKNOWN, None))
    # squeue joins the reasons of pending elements it shows as one line: "JobHeldUser,JobHeldAdmin".
    if phase is TaskPhase.SUBMITTED and HELD_REASONS.intersection(r.strip() for r in (reason or "").split(",")):
        return TaskPhase.HELD, None
    return phase, failure


def parse_exit_code(text: str) -> tuple[int | None, int | None]:
    """sacct's ExitCode "3:0" as (exit code, signal); (None, None) when there is none to read."""
    match = _EXIT_CODE.fullmatch(text.strip())
    if not match:
        return None, None
    signal = match.group(2)
    return int(match.group(1)), int(signal) if signal is not None else None
