"""The state of each element of a task, merged from Slurm's report and the attempt history.

Called by the reconcile core once per task and tick. Pure. Only attempts made for the task's
current fingerprint count towards its state; live jobs of an older fingerprint are reported so
the core can cancel them, and every attempt's core-seconds count towards the bill.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from ..api import FailureKind, TaskPhase
from .observed import LIVE_PHASES, AttemptRecord, JobKey, JobOutcome, ObservedJob

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
    core_seconds: int
    latest_job_ids: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class _Sighting:
    """One attempt's outcome for one element, as Slurm reported it or the history remembers it."""

    attempt: int
    job_id: str | None
    outcome: JobOutcome
    by_reconciler: bool  # the reconciler cancelled the job

    @property
    def cancelled_by_dependency(self) -> bool:
        """Slurm cancelled the job because a prerequisite failed (--kill-on-invalid-dep).

        The reason is not always there to say so: on 22.05.8, sacct shows such a job as CANCELLED
        with reason None for a moment before "Dependency" is written. A job that never got a node
        and was not cancelled by the reconciler ended the same way, so it counts too (a pending job
        someone cancelled by hand is then submitted again, as the declared state asks).
        """
        outcome = self.outcome
        if outcome.phase is not TaskPhase.CANCELLED or self.by_reconciler:
            return False
        return (outcome.reason or "") in DEPENDENCY_REASONS or (outcome.reason is None and outcome.node_list is None)

    @property
    def failed(self) -> bool:
        """A failure of this task. A job Slurm cancelled because its prerequisite failed is none:
        it is submitted again against the prerequisite's retry."""
        return self.outcome.phase is TaskPhase.FAILED or (
            self.outcome.phase is TaskPhase.CANCELLED and not self.cancelled_by_dependency)

    def failure(self) -> Failure:
        outcome = self.outcome
        return Failure(attempt=self.attempt, kind=outcome.failure, finished_at=outcome.finished_at,
                       node_list=outcome.node_list, exit_code=outcome.exit_code)


@dataclass
class _Merge:
    """What ``task_runs`` gathers from Slurm's report and the history before it sums up each
    element: the observation first, so the history speaks only for what Slurm no longer shows."""

    fingerprint: str
    accounting: bool
    accounting_complete_until: datetime | None
    sightings: dict[Index, list[_Sighting]] = field(default_factory=dict)
    seen: dict[JobKey, set[Index]] = field(default_factory=dict)  # elements each observed key covered
    core_seconds: int = 0
    obsolete: set[str] = field(default_factory=set)
    last_attempt: int = 0
    # Each attempt made for the current fingerprint, with the job ids it is known by.
    current: dict[int, set[str]] = field(default_factory=dict)

    def observe(self, job: ObservedJob) -> None:
        self.last_attempt = max(self.last_attempt, job.key.attempt)
        self.core_seconds += job.outcome.core_seconds
        covered = job.indices if job.indices is not None else (None,)
        self.seen.setdefault(job.key, set()).update(covered)
        if job.fingerprint != self.fingerprint:
            if job.phase in LIVE_PHASES:
                self.obsolete.add(job.job_id)
            return
        self._sighted(covered, _Sighting(job.key.attempt, job.job_id, job.outcome, by_reconciler=False))

    def recall(self, record: AttemptRecord) -> None:
        covered = record.indices if record.indices is not None else (None,)
        seen = self.seen.get(record.key, set())
        unseen = [i for i in covered if i not in seen]
        if not unseen:
            return
        outcome = record.outcome
        if outcome is not None and outcome.phase not in LIVE_PHASES:
            # Finished before this observation window: the history is the only witness, and its
            # core-seconds have not been counted from an observed job.
            self.core_seconds += outcome.core_seconds * len(unseen) // max(1, len(covered))
        elif record.job_id is None and self._accounted_for(record.recorded_at):
            return  # an intent that never reached Slurm: nothing was submitted
        else:
            # Submitted (or maybe submitted), but Slurm does not say.
            outcome = JobOutcome(phase=TaskPhase.UNKNOWN) if outcome is None else replace(
                outcome, phase=TaskPhase.UNKNOWN)
        self.last_attempt = max(self.last_attempt, record.key.attempt)
        if record.fingerprint != self.fingerprint:
            return
        self._sighted(unseen, _Sighting(record.key.attempt, record.job_id, outcome,
                                        by_reconciler=record.cancelled_by_reconciler))

    def _accounted_for(self, recorded_at: datetime) -> bool:
        # Absence proves nothing about a job submitted after accounting's horizon: a job that
        # ended within a second is gone from the queue before slurmdbd records it.
        horizon = self.accounting_complete_until
        return self.accounting and horizon is not None and horizon > recorded_at

    def _sighted(self, indices: Iterable[Index], sighting: _Sighting) -> None:
        job_ids = self.current.setdefault(sighting.attempt, set())
        if sighting.job_id:
            job_ids.add(sighting.job_id)
        for index in indices:
            self.sightings.setdefault(index, []).append(sighting)

    def runs(self, indices: Iterable[Index]) -> TaskRuns:
        newest = max(self.current, default=None)
        return TaskRuns(
            elements={index: _element(index, self.sightings.get(index, [])) for index in indices},
            last_attempt=self.last_attempt,
            current_attempts=len(self.current),
            obsolete_live_jobs=tuple(sorted(self.obsolete)),
            core_seconds=self.core_seconds,
            latest_job_ids=tuple(sorted(self.current[newest])) if newest is not None else (),
        )


def task_runs(
    *,
    indices: Iterable[Index],
    fingerprint: str,
    observed: Iterable[ObservedJob],
    records: Iterable[AttemptRecord],
    accounting: bool,
    accounting_complete_until: datetime | None = None,
) -> TaskRuns:
    """Merge observation and history into one state per element.

    ``indices`` are the task's elements (``[None]`` for a plain job). ``accounting`` says whether
    finished jobs could be read this tick: when they could not, a submitted job that left the
    queue is Unknown, never done. An intent with no confirmed job counts as never submitted only
    when ``accounting_complete_until`` (see ``ClusterView``) is past the time it was recorded;
    until then its elements are Unknown.
    """
    merge = _Merge(fingerprint=fingerprint, accounting=accounting,
                   accounting_complete_until=accounting_complete_until)
    for job in observed:
        merge.observe(job)
    for record in records:
        merge.recall(record)
    return merge.runs(indices)


def _element(index: Index, sightings: list[_Sighting]) -> Element:
    if not sightings:
        return Element(index=index, phase=TaskPhase.WAITING)
    if len(sightings) == 1:
        return _first_element(index, sightings[0])
    return _element_of(index, sightings)


def _element_of(index: Index, sightings: list[_Sighting]) -> Element:
    """An element sighted at least once: its latest attempt, with every failure before it."""
    sightings = sorted(sightings, key=lambda s: s.attempt)
    last = sightings[-1]
    return Element(
        index=index,
        phase=last.outcome.phase,
        attempt=last.attempt,
        job_id=last.job_id,
        reason=last.outcome.reason,
        exit_code=last.outcome.exit_code,
        started_at=min((s.outcome.started_at for s in sightings if s.outcome.started_at), default=None),
        finished_at=last.outcome.finished_at,
        failures=tuple(s.failure() for s in sightings if s.failed),
        cancelled_by_dependency=last.cancelled_by_dependency,
        submissions=len({s.attempt for s in sightings}),
        tries=len({s.attempt for s in sightings if not s.cancelled_by_dependency}),
    )


def _first_element(index: Index, sighting: _Sighting) -> Element:
    """``_element`` of an element sighted once, as most elements of a big array are: the same
    result without the sorting and counting that several attempts need."""
    outcome = sighting.outcome
    by_dependency = sighting.cancelled_by_dependency
    return Element(
        index=index, phase=outcome.phase, attempt=sighting.attempt, job_id=sighting.job_id, reason=outcome.reason,
        exit_code=outcome.exit_code, started_at=outcome.started_at, finished_at=outcome.finished_at,
        failures=(sighting.failure(),) if sighting.failed else (), cancelled_by_dependency=by_dependency,
        submissions=1, tries=0 if by_dependency else 1,
    )
