"""The store's record of the obligations a finished task leaves: fetching its declared outputs,
and removing a finished workflow's files when its ``ttlSecondsAfterFinished`` has passed.

Part of :class:`reconciler.store.database.Store`. The executor writes here as it fetches and
cleans (``reconciler.engine.executor``); the controller reads ``outputs(uid)`` and
``cleanup(uid)`` each tick for the planner (``reconciler.core.outputs`` and
``reconciler.core.cleanup`` say what they mean). Guarantees:

* one row per (run, task, fingerprint, attempt): a rerun's fetch is a row of its own, and the
  earlier variant's row stays as it was;
* a fetch is marked pending before it is tried, and its end (fetched, missing, or failed with the
  error, the number of tries and when to try again) is one transaction: a crash in between
  leaves it pending, which the planner fetches again;
* a settled row (fetched or missing) is never changed by a later failure report;
* one cleanup row per run, for the end (``finished_at``) it was done for.
"""

from __future__ import annotations

import json
from datetime import datetime

from ..api.workflow import OutputsPhase
from ..core.cleanup import CleanupOutcome, CleanupRecord
from ..core.outputs import OutputRecord, TaskOutputs
from .connection import StoreConnection
from .encoding import from_iso, iso

_SETTLED = (OutputsPhase.FETCHED.value, OutputsPhase.MISSING.value)


class OutputBook(StoreConnection):
    def outputs(self, uid: str) -> TaskOutputs:
        """Every output record of the run's tasks."""
        with self._lock:
            rows = self._db.execute(
                "SELECT task, fingerprint, attempt, phase, files, location, unmatched, error, tries, next_try_at, "
                "updated_at FROM task_outputs WHERE uid = ? ORDER BY task, updated_at", (uid,)).fetchall()
        return TaskOutputs(tuple(
            OutputRecord(task=task, fingerprint=fingerprint, attempt=attempt, phase=OutputsPhase(phase), files=files,
                         location=location, unmatched=tuple(json.loads(unmatched or "[]")), error=error, tries=tries,
                         next_try_at=from_iso(next_try_at), at=from_iso(updated_at))
            for task, fingerprint, attempt, phase, files, location, unmatched, error, tries, next_try_at, updated_at
            in rows))

    def outputs_pending(self, uid: str, task: str, *, fingerprint: str, attempt: int, now: datetime) -> None:
        """Record that the outputs of this variant of ``task`` are being fetched (kept as it is
        if already recorded)."""
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO task_outputs (uid, task, fingerprint, attempt, phase, updated_at) "
                       "VALUES (?,?,?,?,?,?)", (uid, task, fingerprint, attempt, OutputsPhase.PENDING.value, iso(now)))

    def outputs_fetched(self, uid: str, task: str, *, fingerprint: str, attempt: int, files: int, location: str,
                        unmatched: tuple[str, ...], now: datetime) -> None:
        """The fetch is done: Fetched, or Missing when some pattern in ``unmatched`` matched nothing."""
        phase = OutputsPhase.MISSING if unmatched else OutputsPhase.FETCHED
        with self._transaction() as db:
            db.execute(
                "INSERT INTO task_outputs (uid, task, fingerprint, attempt, phase, files, location, unmatched, "
                "updated_at) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (uid, task, fingerprint, attempt) DO UPDATE SET "
                "phase = excluded.phase, files = excluded.files, location = excluded.location, "
                "unmatched = excluded.unmatched, error = NULL, next_try_at = NULL, updated_at = excluded.updated_at",
                (uid, task, fingerprint, attempt, phase.value, files, location, json.dumps(list(unmatched)), iso(now)))

    def outputs_failed(self, uid: str, task: str, *, fingerprint: str, attempt: int, error: str, tries: int,
                       next_try_at: datetime, now: datetime) -> None:
        """A try failed: the error, how many tries have failed, and when to try again."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO task_outputs (uid, task, fingerprint, attempt, phase, error, tries, next_try_at, "
                "updated_at) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (uid, task, fingerprint, attempt) DO UPDATE SET "
                "phase = excluded.phase, error = excluded.error, tries = excluded.tries, "
                "next_try_at = excluded.next_try_at, updated_at = excluded.updated_at "
                f"WHERE task_outputs.phase NOT IN ({', '.join('?' for _ in _SETTLED)})",
                (uid, task, fingerprint, attempt, OutputsPhase.FAILED.value, error, tries, iso(next_try_at), iso(now),
                 *_SETTLED))

    def cleanup(self, uid: str) -> CleanupRecord | None:
        """The run's last ttlSecondsAfterFinished cleanup, if any."""
        with self._lock:
            row = self._db.execute("SELECT finished_at, cleaned_at, outcome, message FROM cleanups WHERE uid = ?",
                                   (uid,)).fetchone()
        if row is None:
            return None
        finished_at, cleaned_at, outcome, message = row
        return CleanupRecord(finished_at=datetime.fromisoformat(finished_at), at=datetime.fromisoformat(cleaned_at),
                             outcome=CleanupOutcome(outcome), message=message or "")

    def record_cleanup(self, uid: str, *, finished_at: datetime, outcome: CleanupOutcome, message: str,
                       now: datetime) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO cleanups (uid, finished_at, cleaned_at, outcome, message) "
                       "VALUES (?,?,?,?,?)", (uid, iso(finished_at), iso(now), outcome.value, message))

