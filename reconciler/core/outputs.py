"""A succeeded task's declared outputs as an obligation: fetched until they are here, or shown
missing.

Pure. The store keeps one record per (run, task, fingerprint, attempt) (``reconciler.store.outputs``);
the controller hands them to the planner through ``DesiredWorkflow.outputs``; the planner asks
``decide_outputs`` for each task and ``reconciler.core.status`` folds the result into the task's
and the workflow's status. Guarantees:

* every succeeded task with ``outputs`` has a FetchOutputs planned each tick until its record for
  the task as it is now (fingerprint and attempt) is settled: fetched, or missing. A fetch that
  was lost (an error, a crash, a tick that stopped early) is planned again, because nothing but
  a settled record stops it;
* a failed try is tried again after a backoff that doubles with each try (``retry_delay``), never
  in a hot loop: until then the plan only asks to be run again when the try is due;
* a rerun (another fingerprint, or another attempt) is a new obligation; the earlier variant's
  record, and its files, stay as they are.

What the workflow makes of it (``outputs_phase``): a workflow is not Succeeded, and not Ready,
until every succeeded task's outputs are fetched, because a reader of ``Ready=True`` expects
the results on disk. A declared pattern that matched no file fails the workflow with reason
``OutputsMissing``, as a missing output artifact fails its step in Argo: the job ended well but
did not produce what the manifest promised, and waiting will not make it appear (a change of
the task, which reruns it, does). The task itself stays Succeeded, since its job did, and the
tasks after it, which may already have run, are not undone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..api import Condition, Task, TaskPhase, TaskStatus, WorkflowPhase
from ..api.workflow import OutputsPhase, TaskOutputsStatus
from .conditions import READY, RECONCILING, STALLED, condition
from .plan import FetchOutputs

OUTPUTS_FETCHED = "OutputsFetched"  # the condition's type, and its reason once all are here
OUTPUTS_PENDING = "OutputsPending"
OUTPUTS_FETCH_FAILED = "OutputsFetchFailed"
OUTPUTS_MISSING = "OutputsMissing"

FIRST_RETRY_SECONDS = 2.0
MAX_RETRY_SECONDS = 300.0


def retry_delay(tries: int) -> timedelta:
    """How long after its ``tries``-th failed try a fetch is tried again: doubling, capped."""
    return timedelta(seconds=min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** max(0, tries - 1)))


@dataclass(frozen=True, kw_only=True)
class OutputRecord:
    """Where one obligation stands, as the store recorded it."""

    task: str
    fingerprint: str
    attempt: int
    phase: OutputsPhase
    files: int = 0
    location: str | None = None  # the variant's directory on the reconciler's machine
    unmatched: tuple[str, ...] = ()  # patterns that matched no file
    error: str | None = None  # the last failed try's
    tries: int = 0  # failed tries so far
    next_try_at: datetime | None = None
    at: datetime | None = None  # when it was last written

    @property
    def settled(self) -> bool:
        return self.phase in (OutputsPhase.FETCHED, OutputsPhase.MISSING)


@dataclass(frozen=True)
class TaskOutputs:
    """Every output record of one run's tasks."""

    records: tuple[OutputRecord, ...] = ()

    def of(self, task: str, *, fingerprint: str, attempt: int) -> OutputRecord | None:
        return next((r for r in self.records
                     if r.task == task and r.fingerprint == fingerprint and r.attempt == attempt), None)


@dataclass(frozen=True)
class OutputsDecision:
    """A succeeded task's outputs this tick: the fetch to make now, or when the next is due."""

    status: TaskOutputsStatus
    fetch: FetchOutputs | None = None
    due: datetime | None = None


def decide_outputs(uid: str, name: str, *, task: Task, phase: TaskPhase, fingerprint: str, attempt: int,
                   outputs: TaskOutputs, cleaned: TaskOutputsStatus | None, now: datetime) -> OutputsDecision | None:
    """The obligation of task ``name`` as it is now; None when it declares no outputs or has not
    succeeded. ``cleaned``: what the status said of them when ttlSecondsAfterFinished removed the
    workflow's files (they were settled then), for a store that lost its record since (an
    operator on a fresh disk): the run directory is gone, so nothing is fetched again."""
    if not task.outputs or phase is not TaskPhase.SUCCEEDED:
        return None
    record = outputs.of(name, fingerprint=fingerprint, attempt=attempt)
    if record is None and cleaned is not None:
        return OutputsDecision(status=cleaned)
    status = outputs_status(record)
    if record is not None and record.settled:
        return OutputsDecision(status=status)
    if record is not None and record.next_try_at is not None and record.next_try_at > now:
        return OutputsDecision(status=status, due=record.next_try_at)
    fetch = FetchOutputs(uid, name, tuple(task.outputs), fingerprint=fingerprint, attempt=attempt,
                         tries=record.tries if record is not None else 0)
    return OutputsDecision(status=status, fetch=fetch)


def outputs_status(record: OutputRecord | None) -> TaskOutputsStatus:
    """What a task's status says of its outputs."""
    if record is None or record.phase is OutputsPhase.PENDING:
        return TaskOutputsStatus(phase=OutputsPhase.PENDING, reason=OUTPUTS_PENDING,
                                 message="the task succeeded; its outputs are being fetched")
    if record.phase is OutputsPhase.FETCHED:
        where = f"{record.files} file(s) in {record.location}" if record.location else "where was not recorded"
        return TaskOutputsStatus(phase=record.phase, reason=OUTPUTS_FETCHED, files=record.files, path=record.location,
                                 message=where)
    if record.phase is OutputsPhase.MISSING:
        return TaskOutputsStatus(phase=record.phase, reason=OUTPUTS_MISSING, files=record.files,
                                 path=record.location,
                                 message=f"no file matched {', '.join(record.unmatched)} in the task's run directory")
    when = record.next_try_at.isoformat() if record.next_try_at else "now"
    return TaskOutputsStatus(phase=record.phase, reason=OUTPUTS_FETCH_FAILED, tries=record.tries,
                             message=f"try {record.tries} failed: {record.error}; next try at {when}")


def unsettled(tasks: Mapping[str, TaskStatus]) -> tuple[str, ...]:
    """The tasks whose outputs are still to fetch."""
    return tuple(name for name, status in tasks.items()
                 if status.outputs is not None and status.outputs.phase in (OutputsPhase.PENDING, OutputsPhase.FAILED))


def outputs_phase(phase: WorkflowPhase, tasks: Mapping[str, TaskStatus]) -> WorkflowPhase:
    """The workflow's phase once its outputs are counted: a workflow whose tasks all succeeded
    runs on until their outputs are fetched, and fails when one declared pattern matched nothing."""
    if phase is not WorkflowPhase.SUCCEEDED:
        return phase
    if _with(tasks, OutputsPhase.MISSING):
        return WorkflowPhase.FAILED
    return WorkflowPhase.RUNNING if unsettled(tasks) else phase


def outputs_conditions(tasks: Mapping[str, TaskStatus], wanted: Sequence[Condition], *, phase: WorkflowPhase,
                       generation: int | None, now: datetime) -> list[Condition]:
    """``wanted`` with the OutputsFetched condition (present while some succeeded task declares
    outputs), and with Ready, Reconciling and Stalled telling of the outputs where they are what
    the workflow waits for or failed on."""
    if not any(status.outputs is not None for status in tasks.values()):
        return list(wanted)
    reason, message = _summary(tasks)
    result = [*wanted, condition(OUTPUTS_FETCHED, reason == OUTPUTS_FETCHED, reason, message, now=now,
                                 generation=generation)]
    jobs_failed = any(status.phase in (TaskPhase.FAILED, TaskPhase.CANCELLED) for status in tasks.values())
    if phase is WorkflowPhase.FAILED and reason == OUTPUTS_MISSING and not jobs_failed:
        return _replaced(result, {READY: False, STALLED: True}, reason, message, generation=generation, now=now)
    if phase is WorkflowPhase.RUNNING and all(status.phase is TaskPhase.SUCCEEDED for status in tasks.values()):
        return _replaced(result, {READY: False, RECONCILING: True}, reason, message, generation=generation, now=now)
    return result


def _summary(tasks: Mapping[str, TaskStatus]) -> tuple[str, str]:
    """The reason and message of the OutputsFetched condition, the most pressing first."""
    for phase, reason in ((OutputsPhase.MISSING, OUTPUTS_MISSING), (OutputsPhase.FAILED, OUTPUTS_FETCH_FAILED),
                          (OutputsPhase.PENDING, OUTPUTS_PENDING)):
        names = _with(tasks, phase)
        if names:
            return reason, "; ".join(f"task {name}: {_message(tasks[name])}" for name in names)
    fetched = _with(tasks, OutputsPhase.FETCHED)
    files = sum(outputs.files for name in fetched if (outputs := tasks[name].outputs) is not None)
    return OUTPUTS_FETCHED, f"{files} file(s) of task(s) {', '.join(fetched)} fetched"


def _with(tasks: Mapping[str, TaskStatus], phase: OutputsPhase) -> tuple[str, ...]:
    return tuple(name for name, status in tasks.items() if status.outputs is not None and status.outputs.phase is phase)


def _message(status: TaskStatus) -> str:
    return status.outputs.message or "" if status.outputs is not None else ""


def _replaced(conditions: Sequence[Condition], statuses: Mapping[str, bool], reason: str, message: str, *,
              generation: int | None, now: datetime) -> list[Condition]:
    """``conditions`` with those of the types in ``statuses`` set to that status, ``reason`` and
    ``message`` (appended where missing)."""
    result = [c for c in conditions if c.type not in statuses]
    fresh = [condition(kind, value, reason, message, now=now, generation=generation)
             for kind, value in statuses.items()]
    return [*fresh, *result]
