"""The state of each element of a task, merged from Slurm's report and the attempt history.

Called by the reconcile core once per task and tick. Pure. Only attempts made for the task's
current fingerprint count towards its state; live jobs of an older fingerprint are reported so
the core can cancel them, and every attempt's core-hours count towards the bill.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from ..api import FailureKind, TaskPhase
from .observed import LIVE_PHASES, AttemptRecord, JobKey, ObservedJob

# Slurm's pending reason (22.05) of a job whose dependency can never be satisfied; with
# --kill-on-invalid-dep=yes such a job ends CANCELLED with it.
DEPENDENCY_REASONS = frozenset({"DependencyNeverSatisfied", "Dependency"})

Index = int | None  # None: the one element of a task that is not an array


@dataclass(frozen=True)
class Failure:
    attempt: int
    kind: FailureKind | None  # None: ended in a way no retry policy covers (e.g. cancelled)
    finished_at: datetime | None
    node_list: str | None
    exit_code: int | None


@dataclass(frozen=True)
class Element:
    index: Index
    phase: TaskPhase  # WAITING (never submitted for this spec), a live phase, or a final one
    attempt: int | None = None
    job_id: str | None = None
    reason: str | None = None
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    failures: tuple[Failure, ...] = ()
    cancelled_by_dependency: bool = False
    submissions: int = 0  # how often this element went to Slurm for the current spec
    tries: int = 0  # of those, the ones Slurm did not cancel for a failed prerequisite: its attempts

    @property
    def array_index(self) -> int:
        """The index of an array task's element (only a task that is not an array has None)."""
        assert self.index is not None, "an element of a task that is not an array has no array index"
        return self.index


@dataclass(frozen=True)
class TaskRuns:
    elements: dict[Index, Element]
    last_attempt: int  # the highest attempt number used for this task, any fingerprint
    current_attempts: int  # submissions made for the current fingerprint
    obsolete_live_jobs: tuple[str, ...]
    core_hours: float
    latest_job_ids: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class _Sighting:
    attempt: int
    job_id: str | None
    phase: TaskPhase
    failure: FailureKind | None
    exit_code: int | None
    reason: str | None
    node_list: str | None
    started_at: datetime | None
    finished_at: datetime | None
    by_reconciler: bool


def task_runs(
    *,
    indices: Iterable[Index],
    fingerprint: str,
    observed: Iterable[ObservedJob],
    records: Iterable[AttemptRecord],
    accounting: bool,
) -> TaskRuns:
    """Merge observation and history into one state per element.

    ``indices`` are the task's elements (``[None]`` for a plain job). ``accounting`` says whether
    finished jobs could be read this tick: when they could not, a submitted job that left the
    queue is Unknown, never done.
    """
    observed = list(observed)
    records = list(records)
    sightings: dict[Index, list[_Sighting]] = {}
    seen_keys: dict[JobKey, set[Index]] = {}
    core_hours = 0.0
    obsolete: set[str] = set()
    last_attempt = 0
    current: set[int] = set()
    latest: dict[int, set[str]] = {}

    for job in observed:
        last_attempt = max(last_attempt, job.key.attempt)
        core_hours += job.core_hours
        covered = job.indices if job.indices is not None else (None,)
        seen_keys.setdefault(job.key, set()).update(covered)
        if job.fingerprint != fingerprint:
            if job.phase in LIVE_PHASES:
                obsolete.add(job.job_id)
            continue
        current.add(job.key.attempt)
        latest.setdefault(job.key.attempt, set()).add(job.job_id)
        for index in covered:
            sightings.setdefault(index, []).append(_Sighting(
                job.key.attempt, job.job_id, job.phase, job.failure, job.exit_code, job.reason, job.node_list,
                job.started_at, job.finished_at, False,
            ))

    for record in records:
        covered_by_record = record.indices if record.indices is not None else (None,)
        unseen = [i for i in covered_by_record if i not in seen_keys.get(record.key, set())]
        if not unseen:
            continue
        if record.phase is not None and record.phase not in LIVE_PHASES:
            # Finished before this observation window: the history is the only witness, and its
            # core-hours have not been counted from an observed job.
            core_hours += record.core_hours * len(unseen) / max(1, len(covered_by_record))
            phase = record.phase
        elif record.job_id is None and accounting:
            continue  # an intent that never reached Slurm: nothing was submitted
        else:
            phase = TaskPhase.UNKNOWN  # submitted (or maybe submitted), but Slurm does not say
        last_attempt = max(last_attempt, record.key.attempt)
        if record.fingerprint != fingerprint:
            continue
        current.add(record.key.attempt)
        if record.job_id:
            latest.setdefault(record.key.attempt, set()).add(record.job_id)
        for index in unseen:
            sightings.setdefault(index, []).append(_Sighting(
                record.key.attempt, record.job_id, phase, record.failure, record.exit_code, record.reason,
                record.node_list, record.started_at, record.finished_at, record.cancelled_by_reconciler,
            ))

    elements = {index: _element(index, sightings.get(index, [])) for index in indices}
    newest = max(current) if current else None
    return TaskRuns(
        elements=elements,
        last_attempt=last_attempt,
        current_attempts=len(current),
        obsolete_live_jobs=tuple(sorted(obsolete)),
        core_hours=core_hours,
        latest_job_ids=tuple(sorted(latest.get(newest, set()))) if newest is not None else (),
    )


def _cancelled_by_dependency(sighting: _Sighting) -> bool:
    """Slurm cancelled the job because a prerequisite failed (--kill-on-invalid-dep).

    The reason is not always there to say so: on 22.05.8, sacct shows such a job as CANCELLED
    with reason None for a moment before "Dependency" is written. A job that never got a node
    and was not cancelled by the reconciler ended the same way, so it counts too (a pending job
    someone cancelled by hand is then submitted again, as the declared state asks).
    """
    if sighting.phase is not TaskPhase.CANCELLED or sighting.by_reconciler:
        return False
    return (sighting.reason or "") in DEPENDENCY_REASONS or (sighting.reason is None and sighting.node_list is None)


def _element(index: Index, sightings: list[_Sighting]) -> Element:
    if not sightings:
        return Element(index=index, phase=TaskPhase.WAITING)
    sightings.sort(key=lambda s: s.attempt)
    # A job Slurm cancelled because its prerequisite failed is no failure of this task: it is
    # submitted again against the prerequisite's retry.
    failures = tuple(
        Failure(s.attempt, s.failure, s.finished_at, s.node_list, s.exit_code)
        for s in sightings
        if s.phase is TaskPhase.FAILED or (s.phase is TaskPhase.CANCELLED and not _cancelled_by_dependency(s))
    )
    last = sightings[-1]
    return Element(
        index=index,
        phase=last.phase,
        attempt=last.attempt,
        job_id=last.job_id,
        reason=last.reason,
        exit_code=last.exit_code,
        started_at=min((s.started_at for s in sightings if s.started_at), default=None),
        finished_at=last.finished_at,
        failures=failures,
        cancelled_by_dependency=_cancelled_by_dependency(last),
        submissions=len({s.attempt for s in sightings}),
        tries=len({s.attempt for s in sightings if not _cancelled_by_dependency(s)}),
    )
