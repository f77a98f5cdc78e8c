"""The SQLite store: in Git mode, the home of every workflow's status and of the history of every
submission made for it.

The controller writes it (once per tick, plus approvals from the webhook thread); ``reconciler
get``, ``describe`` and ``approve`` open the same file from other processes. It guarantees:

- the database runs in WAL mode with a busy timeout, so readers never wait for the loop and a
  second writer waits its turn instead of failing (``connection``);
- every write method is one transaction: a crash leaves the state before or after it, never half;
- an attempt is recorded as an intent *before* ``sbatch`` and confirmed with its job id after,
  so a restarted loop knows what it may have submitted (crash-safety rests on this order);
- a workflow identified by namespace/name gets a fresh uid each time it appears after having been
  pruned, so the history of an old run is never mistaken for the new one's;
- an array attempt is kept as groups of elements with one outcome each ("0-29999" succeeded), so
  a 30,000-element array costs a few hundred bytes, not one row per element
  (``reconciler.store.array_outcomes``).

Times are stored as ISO-8601 UTC text and returned as timezone-aware datetimes. One connection
per ``Store``, guarded by a lock, so one object may be shared between threads.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from ..api import FailureKind, Resources, TaskPhase, WorkflowStatus
from ..core.indexranges import compress, expand
from ..core.observed import AttemptRecord, JobKey, JobOutcome, ObservedJob
from ..core.plan import Event
from .approvals import ApprovalBook
from .array_outcomes import (
    MAX_ELEMENTS,
    Group,
    Groups,
    apply_to_groups,
    array_summary,
    decode_groups,
    encode_groups,
)
from .array_sizes import ArraySizeBook
from .choices import ChoiceBook
from .clusters import ClusterBook
from .connection import StoreConnection
from .encoding import canonical_json, from_iso, iso, iso_or_none
from .history import HistoryBook
from .outputs import OutputBook
from .requests import RequestBook
from .rows import AttemptHistory, EventRow, WorkflowRow

STATE_DB = "state.db"
MAX_EVENTS = 1000  # per workflow; older events are dropped


def state_dir_default() -> Path:
    """``$RECONCILER_STATE_DIR``, else ``$XDG_STATE_HOME/slurm-reconciler``, else
    ``~/.local/state/slurm-reconciler``."""
    explicit = os.environ.get("RECONCILER_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    # The XDG spec says a relative value is invalid and must be ignored.
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "slurm-reconciler"
    return Path.home() / ".local" / "state" / "slurm-reconciler"


def database_path(state_dir: Path) -> Path:
    return state_dir / STATE_DB


# -- documents -----------------------------------------------------------------------------------

def _document(value: Any) -> str:
    """A resource or status as written: key order kept (tasks in DAG order, fields as declared)."""
    return json.dumps(value, separators=(",", ":"))


def _declared_task_labels(resource: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Each task's labels as the resource itself declares them (none for a template instance)."""
    tasks = (resource.get("spec") or {}).get("tasks") or []
    return {task["name"]: dict(task.get("labels") or {}) for task in tasks if isinstance(task, dict) and "name" in task}


def spec_hash(spec: Mapping[str, Any]) -> str:
    """The hash of a spec's canonical JSON: equal specs hash equal whatever their key order."""
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()


# -- workflows -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class StoredWorkflow:
    uid: str
    namespace: str
    name: str
    generation: int
    resource: dict  # the whole resource (metadata and spec) as last read valid, in wire form
    spec_hash: str
    revision: str | None
    source_file: str | None
    created_at: datetime
    removed_at: datetime | None
    status: WorkflowStatus | None
    labels: dict[str, str] = field(default_factory=dict)
    # Each task's labels by name, in the order of the tasks: as resolved, so a template
    # instance's come from its template.
    task_labels: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.removed_at is None

    def as_row(self) -> WorkflowRow:
        """What the CLI's tables and ``describe`` render (``WorkflowRow.spec`` is the spec part)."""
        return WorkflowRow(
            namespace=self.namespace, name=self.name, uid=self.uid, generation=self.generation,
            created_at=self.created_at, spec=dict(self.resource.get("spec") or {}), labels=dict(self.labels),
            status=self.status, source_file=self.source_file, task_labels=dict(self.task_labels),
        )


_WORKFLOW_COLUMNS = ("uid, namespace, name, generation, resource, spec_hash, revision, source_file, labels, "
                     "created_at, removed_at, status, task_labels")


def _stored(values: tuple) -> StoredWorkflow:
    (uid, namespace, name, generation, resource, digest, revision, source_file, labels, created, removed, status,
     task_labels) = values
    return StoredWorkflow(
        uid=uid, namespace=namespace, name=name, generation=generation, resource=json.loads(resource),
        spec_hash=digest, revision=revision, source_file=source_file, created_at=datetime.fromisoformat(created),
        removed_at=from_iso(removed),
        status=None if status is None else WorkflowStatus.model_validate(json.loads(status)), labels=json.loads(labels),
        task_labels=json.loads(task_labels),
    )


# The most rows a decoded-row memory holds before it starts afresh: bounds what a loop that
# has run for months keeps of workflows long gone.
_DECODED_MAX = 200_000


_Key = TypeVar("_Key")
_Value = TypeVar("_Value")


class _Decoded(Generic[_Key, _Value]):
    """Rows as last decoded, by key. A tick reads every active workflow's row several times, and
    every attempt of every active workflow once or twice; most have not changed since the tick
    before, and decoding them (resource and status JSON, the status model, an attempt's records)
    costs far more than comparing a row's text with the text decoded last time. What it hands out
    is shared by every reader: nothing changes the rows, dicts and models it holds (a change is a
    new row, written through the store)."""

    def __init__(self, decode: Callable[[tuple], _Value]) -> None:
        self._decode = decode
        self._by_key: dict[_Key, tuple[tuple, _Value]] = {}

    def __call__(self, key: _Key, values: tuple) -> _Value:
        found = self._by_key.get(key)
        if found is not None and found[0] == values:
            return found[1]
        decoded = self._decode(values)
        if len(self._by_key) >= _DECODED_MAX:
            self._by_key.clear()  # rows of long-removed workflows go too; the next read decodes again
        self._by_key[key] = (values, decoded)
        return decoded


def _decoded_attempt(values: tuple) -> tuple[_AttemptRow, list[AttemptRecord]]:
    row = _AttemptRow.read(values)
    return row, row.records()


# -- attempts ------------------------------------------------------------------------------------

# The columns of an attempt's outcome, named as ``JobOutcome``'s fields. An array's hold the
# outcome that speaks for the whole attempt; each group's own is in the ``outcomes`` column.
_OUTCOME_COLUMNS = ("phase", "failure", "exit_code", "reason", "node_list", "started_at", "finished_at",
                    "core_seconds")
_ATTEMPT_COLUMNS = ", ".join(("task", "attempt", "part", "fingerprint", "indices", "resources", "cluster",
                              "recorded_at", "job_id", "submitted_at", "message", "outcomes", "done",
                              "cancelled_by_reconciler", *_OUTCOME_COLUMNS))


def _outcome_columns(outcome: JobOutcome | None) -> dict[str, Any]:
    """The outcome columns as written; all empty, with no core-hours, for an attempt never observed."""
    if outcome is None:
        return {**dict.fromkeys(_OUTCOME_COLUMNS), "core_seconds": 0}
    return {"phase": outcome.phase.value, "failure": outcome.failure.value if outcome.failure else None,
            "exit_code": outcome.exit_code, "reason": outcome.reason, "node_list": outcome.node_list,
            "started_at": iso_or_none(outcome.started_at), "finished_at": iso_or_none(outcome.finished_at),
            "core_seconds": outcome.core_seconds}


def _outcome_from_columns(phase: str | None, failure: str | None, exit_code: int | None, reason: str | None,
                          node_list: str | None, started_at: str | None, finished_at: str | None,
                          core_seconds: int) -> JobOutcome | None:
    if phase is None:
        return None
    return JobOutcome(phase=TaskPhase(phase), failure=FailureKind(failure) if failure else None,
                      exit_code=exit_code, reason=reason, node_list=node_list, started_at=from_iso(started_at),
                      finished_at=from_iso(finished_at), core_seconds=core_seconds)


@dataclass(frozen=True)
class _AttemptRow:
    """One row of ``attempts`` as read, with its outcome columns as one value."""

    key: JobKey
    fingerprint: str | None
    indices: str | None  # an array's task indices as ranges; None for a plain job
    resources: str
    cluster: str
    recorded_at: datetime
    job_id: str | None
    submitted_at: datetime | None
    message: str | None
    outcomes: str | None  # an array's groups (``reconciler.store.array_outcomes``)
    done: bool
    cancelled_by_reconciler: bool
    outcome: JobOutcome | None

    @classmethod
    def read(cls, values: tuple) -> _AttemptRow:
        (task, attempt, part, fingerprint, indices, resources, cluster, recorded_at, job_id, submitted_at, message,
         outcomes, done, cancelled, *outcome) = values
        return cls(key=JobKey(task=task, attempt=attempt, part=part), fingerprint=fingerprint, indices=indices,
                   resources=resources, cluster=cluster, recorded_at=datetime.fromisoformat(recorded_at),
                   job_id=job_id, submitted_at=from_iso(submitted_at), message=message, outcomes=outcomes,
                   done=bool(done), cancelled_by_reconciler=bool(cancelled), outcome=_outcome_from_columns(*outcome))

    def records(self) -> list[AttemptRecord]:
        """One record per group of elements with the same outcome, plus one for elements never
        reported (no outcome), so the core sees every finished element's final phase."""
        # What every record of this row shares; each adds what is known of its elements.
        base = AttemptRecord(key=self.key, fingerprint=self.fingerprint, indices=None, job_id=self.job_id,
                             recorded_at=self.recorded_at, cancelled_by_reconciler=self.cancelled_by_reconciler)
        if self.indices is None:
            return [replace(base, outcome=self.outcome)]
        unseen = set(expand(self.indices, limit=MAX_ELEMENTS))
        records = []
        for key, group in decode_groups(self.outcomes).items():
            unseen -= group.indices
            records.append(replace(base, indices=tuple(sorted(group.indices)), outcome=group.outcome(key)))
        if unseen:
            records.append(replace(base, indices=tuple(sorted(unseen))))
        records.sort(key=lambda r: r.indices[0] if r.indices else 0)
        return records

    def history(self) -> AttemptHistory:
        return AttemptHistory(
            key=self.key, fingerprint=self.fingerprint, cluster=self.cluster, job_id=self.job_id,
            resources=Resources.model_validate(json.loads(self.resources)), recorded_at=self.recorded_at,
            submitted_at=self.submitted_at, outcome=self.outcome, message=self.message,
            cancelled_by_reconciler=self.cancelled_by_reconciler, indices=self.indices, states=self._states(),
        )

    def _states(self) -> dict[TaskPhase, str] | None:
        """An array's element ranges per phase ("0-9,12")."""
        if self.indices is None:
            return None
        states: dict[TaskPhase, set[int]] = {}
        for key, group in decode_groups(self.outcomes).items():
            states.setdefault(key.phase, set()).update(group.indices)
        return {phase: compress(indices) for phase, indices in sorted(states.items())}


# -- the store -----------------------------------------------------------------------------------

class Store(OutputBook, ApprovalBook, ArraySizeBook, RequestBook, HistoryBook, ChoiceBook, ClusterBook,
            StoreConnection):
    """Every workflow's status, the record of every submission, approvals and events, in one SQLite
    file (see :class:`StoreConnection` for how it is opened and shared)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._decoded: _Decoded[str, StoredWorkflow] = _Decoded(_stored)
        self._decoded_attempts: _Decoded[tuple[str, str, int, int], tuple[_AttemptRow, list[AttemptRecord]]] = \
            _Decoded(_decoded_attempt)

    # -- workflows -------------------------------------------------------------------------------

    def upsert_workflow(self, *, namespace: str, name: str, resource: dict, revision: str | None,
                        source_file: str | None, now: datetime, uid: str | None = None,
                        task_labels: Mapping[str, Mapping[str, str]] | None = None) -> StoredWorkflow:
        """The active run of namespace/name, created on first sight, with ``resource`` kept as its
        last good one; the generation goes up only when ``resource["spec"]`` changes.

        ``uid`` is the run's identity when the source has one (Kubernetes' metadata.uid); an
        active run of the same name under another uid is a previous object, and ends here.
        ``task_labels`` are the resolved tasks' labels by name (a template instance's tasks are
        not in its resource); without them, the labels its resource's own tasks declare.
        """
        digest = spec_hash(resource.get("spec") or {})
        labels = dict((resource.get("metadata") or {}).get("labels") or {})
        by_task = _document(_declared_task_labels(resource) if task_labels is None
                            else {task: dict(values) for task, values in task_labels.items()})
        with self._transaction() as db:
            current = db.execute("SELECT uid, generation, spec_hash FROM workflows WHERE namespace = ? "
                                 "AND name = ? AND removed_at IS NULL", (namespace, name)).fetchone()
            if current is not None and uid is not None and current[0] != uid:
                db.execute("UPDATE workflows SET removed_at = ? WHERE uid = ?", (iso(now), current[0]))
                current = None
            if current is None:
                uid = uid or uuid.uuid4().hex[:16]
                db.execute(f"INSERT INTO workflows ({_WORKFLOW_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,NULL,NULL,?)",
                           (uid, namespace, name, 1, _document(resource), digest, revision, source_file,
                            canonical_json(labels), iso(now), by_task))
            else:
                uid, generation, old_digest = current
                db.execute("UPDATE workflows SET generation = ?, resource = ?, spec_hash = ?, revision = ?, "
                           "source_file = ?, labels = ?, task_labels = ? WHERE uid = ?",
                           (generation + (digest != old_digest), _document(resource), digest, revision, source_file,
                            canonical_json(labels), by_task, uid))
            stored = self._workflow_by_uid(db, uid)
            assert stored is not None, "the workflow's row was written in this transaction"
            return stored

    def _workflow_by_uid(self, db: sqlite3.Connection, uid: str) -> StoredWorkflow | None:
        values = db.execute(f"SELECT {_WORKFLOW_COLUMNS} FROM workflows WHERE uid = ?", (uid,)).fetchone()
        return None if values is None else self._decoded(values[0], values)

    def _select_workflows(self, where: str, params: tuple = ()) -> list[StoredWorkflow]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_WORKFLOW_COLUMNS} FROM workflows {where}", params).fetchall()
        return [self._decoded(values[0], values) for values in rows]

    def active_workflows(self) -> list[StoredWorkflow]:
        return self._select_workflows("WHERE removed_at IS NULL ORDER BY namespace, name")

    def all_workflows(self, include_removed: bool = False) -> list[StoredWorkflow]:
        if not include_removed:
            return self.active_workflows()
        return self._select_workflows("ORDER BY namespace, name, created_at")

    def workflow(self, namespace: str, name: str) -> StoredWorkflow | None:
        """The active run of namespace/name, else its most recently pruned one."""
        found = self._select_workflows(
            "WHERE namespace = ? AND name = ? ORDER BY removed_at IS NULL DESC, removed_at DESC, created_at DESC "
            "LIMIT 1", (namespace, name))
        return found[0] if found else None

    def workflow_by_uid(self, uid: str) -> StoredWorkflow | None:
        with self._lock:
            return self._workflow_by_uid(self._db, uid)

    def mark_removed(self, uid: str, *, now: datetime) -> None:
        """The workflow left its source: its rows stay (history), it is no longer active."""
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM workflows WHERE uid = ?", (uid,)).fetchone() is None:
                raise KeyError(f"no workflow with uid {uid}")
            db.execute("UPDATE workflows SET removed_at = ? WHERE uid = ? AND removed_at IS NULL", (iso(now), uid))

    def save_status(self, uid: str, status: WorkflowStatus) -> None:
        self.save_statuses({uid: status})

    def save_statuses(self, statuses: Mapping[str, WorkflowStatus]) -> None:
        """Every status of a tick in one transaction; an unknown uid writes none of them."""
        with self._transaction() as db:
            for uid, status in statuses.items():
                text = _document(status.model_dump(mode="json", by_alias=True, exclude_none=True))
                if db.execute("UPDATE workflows SET status = ? WHERE uid = ?", (text, uid)).rowcount != 1:
                    raise KeyError(f"no workflow with uid {uid}")

    # -- attempts --------------------------------------------------------------------------------

    def record_intent(self, uid: str, *, key: JobKey, fingerprint: str, indices: tuple[int, ...] | None,
                      resources: dict, cluster: str, now: datetime) -> None:
        """Written before ``sbatch``. Idempotent per key: a confirmed or finished row is kept as it
        is; an unconfirmed one (an intent whose job never appeared) takes the new intent."""
        values = (fingerprint, None if indices is None else compress(indices), canonical_json(resources), cluster,
                  iso(now))
        with self._transaction() as db:
            db.execute(
                "INSERT INTO attempts (uid, task, attempt, part, fingerprint, indices, resources, cluster, "
                "recorded_at) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (uid, task, attempt, part) DO UPDATE SET "
                "fingerprint = excluded.fingerprint, indices = excluded.indices, resources = excluded.resources, "
                "cluster = excluded.cluster, recorded_at = excluded.recorded_at "
                "WHERE attempts.job_id IS NULL AND attempts.done = 0",
                (uid, key.task, key.attempt, key.part, *values))

    def confirm_submission(self, uid: str, *, key: JobKey, job_id: str, now: datetime) -> None:
        with self._transaction() as db:
            self._update_key(db, uid, key, job_id=job_id, submitted_at=iso(now))

    def record_rejection(self, uid: str, *, key: JobKey, reason: str, message: str, now: datetime) -> None:
        """``sbatch`` refused the submission for good: the attempt ends Failed with no job."""
        with self._transaction() as db:
            found = self._attempt_row(db, uid, key)
            if found is None:
                raise KeyError(f"no recorded intent for {uid} {key}")
            columns: dict[str, Any] = {"phase": TaskPhase.FAILED.value, "reason": reason, "message": message,
                                       "finished_at": iso(now), "done": 1}
            if found.indices is not None:
                universe = set(expand(found.indices, limit=MAX_ELEMENTS))
                groups: Groups = {JobOutcome(phase=TaskPhase.FAILED, reason=reason): Group(universe, finished_at=now)}
                columns["outcomes"] = encode_groups(groups)
            self._update_key(db, uid, key, **columns)

    def forget_intent(self, uid: str, *, key: JobKey) -> None:
        """The submission went out neither way (e.g. the cluster was at capacity): no trace is
        kept. A confirmed submission is never forgotten."""
        with self._transaction() as db:
            db.execute("DELETE FROM attempts WHERE uid = ? AND task = ? AND attempt = ? AND part = ? "
                       "AND job_id IS NULL", (uid, key.task, key.attempt, key.part))

    def update_from_observation(self, uid: str, jobs: Iterable[ObservedJob], *, now: datetime,
                                cluster: str | None = None) -> None:
        """Remember what Slurm reported of this workflow's jobs, for when it reports them no more.

        A job with no row (its intent was lost in a crash) is adopted: a row is created for it on
        ``cluster``, or when that is not given, on the cluster of the workflow's other attempts.
        """
        by_key: dict[JobKey, list[ObservedJob]] = {}
        for job in jobs:
            by_key.setdefault(job.key, []).append(job)
        if not by_key:
            return
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM workflows WHERE uid = ?", (uid,)).fetchone() is None:
                raise KeyError(f"no workflow with uid {uid}")
            rows = {row.key: row for row in (self._attempt(uid, values)[0] for values in self._attempt_values(db, uid))}
            for key, observed in by_key.items():
                found = rows.get(key)
                if found is None:
                    self._adopt(db, uid, key, observed, cluster=cluster, now=now)
                    found = self._attempt_row(db, uid, key)
                    assert found is not None
                columns = self._observed_columns(found, observed)
                if columns:
                    self._update_key(db, uid, key, **columns)

    def _adopt(self, db: sqlite3.Connection, uid: str, key: JobKey, observed: list[ObservedJob], *,
               cluster: str | None, now: datetime) -> None:
        if cluster is None:
            found = db.execute("SELECT cluster FROM attempts WHERE uid = ? ORDER BY recorded_at DESC LIMIT 1",
                               (uid,)).fetchone()
            if found is None:
                resource = db.execute("SELECT resource FROM workflows WHERE uid = ?", (uid,)).fetchone()
                spec = (json.loads(resource[0]).get("spec") or {}) if resource else {}
                found = (spec.get("cluster") or "",)
            cluster = str(found[0])
        arrays = [job.indices for job in observed if job.indices is not None]
        indices = compress(i for covered in arrays for i in covered) if arrays else None
        db.execute("INSERT INTO attempts (uid, task, attempt, part, fingerprint, indices, resources, cluster, "
                   "recorded_at) VALUES (?,?,?,?,?,?,?,?,?)",
                   (uid, key.task, key.attempt, key.part, observed[0].fingerprint, indices, "{}", cluster, iso(now)))

    @staticmethod
    def _observed_columns(found: _AttemptRow, observed: list[ObservedJob]) -> dict[str, Any]:
        newest = sorted(observed, key=lambda j: j.outcome.done)[-1]
        columns: dict[str, Any] = {}
        if found.job_id != newest.job_id:
            columns["job_id"] = newest.job_id
        if found.fingerprint is None and newest.fingerprint is not None:
            columns["fingerprint"] = newest.fingerprint
        if found.indices is None and all(job.indices is None for job in observed):
            # A plain job: the latest report is the whole truth (Slurm may requeue it, so a
            # finished state can legitimately become pending again). Written only when it differs
            # from the row's (which does not keep ``accounted``): most reports of most jobs say
            # again what the last one said.
            if (found.outcome is None or found.done != newest.outcome.done
                    or replace(newest.outcome, accounted=found.outcome.accounted) != found.outcome):
                columns.update(_outcome_columns(newest.outcome), done=int(newest.outcome.done))
            return columns
        universe = set(expand(found.indices, limit=MAX_ELEMENTS)) if found.indices else set()
        groups = decode_groups(found.outcomes)
        if apply_to_groups(groups, observed, universe):
            summary = array_summary(groups, universe)
            columns.update(_outcome_columns(summary.outcome), outcomes=encode_groups(groups), done=int(summary.done),
                           indices=compress(universe))
        return columns

    def mark_cancelled(self, uid: str, *, job_ids: Iterable[str]) -> None:
        """The reconciler cancelled these jobs: their end is not a dependency's doing."""
        ids = sorted(set(job_ids))
        if not ids:
            return
        with self._transaction() as db:
            db.execute(f"UPDATE attempts SET cancelled_by_reconciler = 1 WHERE uid = ? "
                       f"AND job_id IN ({','.join('?' * len(ids))})", (uid, *ids))

    def attempts(self, uid: str) -> list[AttemptRecord]:
        """Every submission of the workflow; an array attempt as one record per outcome group."""
        return [record for values in self._attempt_values(self._db, uid)
                for record in self._attempt(uid, values)[1]]

    def has_attempts(self, uid: str) -> bool:
        """Whether the store holds any submission of the workflow (without decoding them)."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM attempts WHERE uid = ? LIMIT 1", (uid,)).fetchone() is not None

    def submitted_task_names(self, cluster: str) -> list[tuple[str, str]]:
        """(workflow name, task) of every task with a submission on the cluster, of the workflows
        still declared: whose jobs accounting may report news of."""
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT workflows.name, attempts.task FROM attempts JOIN workflows "
                                    "USING (uid) WHERE workflows.removed_at IS NULL AND attempts.cluster = ? "
                                    "ORDER BY 1, 2", (cluster,)).fetchall()
        return [(str(workflow), str(task)) for workflow, task in rows]

    def has_attempts_on(self, cluster: str) -> bool:
        """Whether the store holds any submission on the cluster, of any workflow, ended or not."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM attempts WHERE cluster = ? LIMIT 1",
                                    (cluster,)).fetchone() is not None

    def history(self, uid: str) -> list[AttemptHistory]:
        """Every submission of the workflow for ``describe``, oldest first: request, job id, outcome."""
        return [found.history() for found in self._attempt_rows(uid)]

    def _attempt_rows(self, uid: str) -> list[_AttemptRow]:
        return [self._attempt(uid, values)[0] for values in self._attempt_values(self._db, uid)]

    def _attempt_values(self, db: sqlite3.Connection, uid: str) -> list[tuple]:
        with self._lock:
            return db.execute(f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE uid = ? "
                              "ORDER BY recorded_at, task, attempt, part", (uid,)).fetchall()

    def _attempt_row(self, db: sqlite3.Connection, uid: str, key: JobKey) -> _AttemptRow | None:
        values = db.execute(f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE uid = ? AND task = ? AND attempt = ? "
                            "AND part = ?", (uid, key.task, key.attempt, key.part)).fetchone()
        return None if values is None else self._attempt(uid, values)[0]

    def _attempt(self, uid: str, values: tuple) -> tuple[_AttemptRow, list[AttemptRecord]]:
        """An attempt's row, decoded, and its records."""
        return self._decoded_attempts((uid, values[0], values[1], values[2]), values)

    def _update_key(self, db: sqlite3.Connection, uid: str, key: JobKey, **columns: Any) -> None:
        assignments = ", ".join(f"{name} = ?" for name in columns)
        cursor = db.execute(f"UPDATE attempts SET {assignments} WHERE uid = ? AND task = ? AND attempt = ? "
                            "AND part = ?", (*columns.values(), uid, key.task, key.attempt, key.part))
        if cursor.rowcount != 1:
            raise KeyError(f"no recorded intent for {uid} {key}")

    # Queries across the active workflows of one cluster, for the loop's observation.

    _OPEN = ("FROM attempts JOIN workflows USING (uid) WHERE workflows.removed_at IS NULL "
             "AND attempts.cluster = ? AND attempts.done = 0")

    def unfinished_job_ids(self, cluster: str) -> list[str]:
        """Confirmed jobs whose last known phase is not final."""
        with self._lock:
            rows = self._db.execute(f"SELECT DISTINCT job_id {self._OPEN} AND job_id IS NOT NULL ORDER BY job_id",
                                    (cluster,)).fetchall()
        return [job_id for (job_id,) in rows]

    def unconfirmed_intents(self, cluster: str) -> int:
        """Intents with no job id: submissions that may or may not have reached Slurm."""
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) {self._OPEN} AND job_id IS NULL", (cluster,)).fetchone()[0])

    def oldest_unconfirmed_at(self, cluster: str) -> datetime | None:
        """When the oldest intent with no job id was recorded: its job, if sbatch created one, can
        only be found by its tag, so sacct must look back that far."""
        with self._lock:
            (oldest,) = self._db.execute(f"SELECT MIN(recorded_at) {self._OPEN} AND job_id IS NULL",
                                         (cluster,)).fetchone()
        return from_iso(oldest)

    def oldest_unfinished_at(self, cluster: str) -> datetime | None:
        """When the oldest unfinished attempt (unconfirmed intents included) was recorded: sacct
        must look back at least that far."""
        with self._lock:
            (oldest,) = self._db.execute(f"SELECT MIN(recorded_at) {self._OPEN}", (cluster,)).fetchone()
        return from_iso(oldest)

    # -- events ----------------------------------------------------------------------------------

    def add_events(self, uid: str, events: Iterable[Event], *, now: datetime) -> None:
        batch = [(uid, iso(now), e.type, e.reason, e.message) for e in events]
        if not batch:
            return
        with self._transaction() as db:
            db.executemany("INSERT INTO events (uid, at, type, reason, message) VALUES (?,?,?,?,?)", batch)
            db.execute("DELETE FROM events WHERE uid = ? AND id <= (SELECT id FROM events WHERE uid = ? "
                       "ORDER BY id DESC LIMIT 1 OFFSET ?)", (uid, uid, MAX_EVENTS))

    def events(self, uid: str, *, limit: int = 20) -> list[EventRow]:
        """The newest ``limit`` events, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT at, type, reason, message FROM events WHERE uid = ? "
                                    "ORDER BY id DESC LIMIT ?", (uid, limit)).fetchall()
        return [EventRow(at=datetime.fromisoformat(at), type=t, reason=r, message=m) for at, t, r, m in reversed(rows)]
