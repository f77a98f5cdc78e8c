"""The store's record of what people asked of tasks by hand: cancel them, or retry them.

Part of :class:`reconciler.store.database.Store`. ``reconciler cancel`` and ``reconciler retry``
write here from their own process while a loop runs (like ``approve``); the operator writes here
from the Workflow's annotations; the loop reads ``requests(uid)`` each tick and hands them to the
planner (``reconciler.core.requests`` says what they mean). Guarantees:

* one standing request of each kind per task: a new one replaces the old;
* a cancel withdraws a pending retry of the task and a retry withdraws its cancel, in the same
  transaction, so the two never stand together;
* a retry records the task's highest attempt number at the moment it is written, read in the
  same transaction as the attempts, so it is satisfied by exactly the next attempt;
* each annotation entry is acted on once per run (``claim_entries``), however many ticks see it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from datetime import datetime

from ..core.requests import CancelRequest, RequestKind, RetryRequest, TaskRequests
from .connection import StoreConnection
from .encoding import iso


class RequestBook(StoreConnection):
    def request_cancel(self, uid: str, tasks: Mapping[str, str], *, by: str, now: datetime) -> None:
        """Cancel each task of ``tasks`` (task -> the fingerprint it has now) of run ``uid``."""
        with self._transaction() as db:
            self._require_workflow(db, uid)
            for task, fingerprint in sorted(tasks.items()):
                db.execute("DELETE FROM requests WHERE uid = ? AND task = ?", (uid, task))
                db.execute("INSERT INTO requests (uid, task, kind, fingerprint, after_attempt, requested_by, "
                           "requested_at) VALUES (?,?,?,?,NULL,?,?)",
                           (uid, task, RequestKind.CANCEL.value, fingerprint, by, iso(now)))

    def request_retry(self, uid: str, task: str, *, by: str, now: datetime) -> int:
        """Ask for one new attempt of ``task``; returns the attempt number it comes after."""
        with self._transaction() as db:
            self._require_workflow(db, uid)
            (last,) = db.execute("SELECT COALESCE(MAX(attempt), 0) FROM attempts WHERE uid = ? AND task = ?",
                                 (uid, task)).fetchone()
            db.execute("DELETE FROM requests WHERE uid = ? AND task = ?", (uid, task))
            db.execute("INSERT INTO requests (uid, task, kind, fingerprint, after_attempt, requested_by, "
                       "requested_at) VALUES (?,?,?,NULL,?,?,?)",
                       (uid, task, RequestKind.RETRY.value, int(last), by, iso(now)))
            return int(last)

    def requests(self, uid: str) -> TaskRequests:
        with self._lock:
            rows = self._db.execute("SELECT task, kind, fingerprint, after_attempt, requested_by, requested_at "
                                    "FROM requests WHERE uid = ? ORDER BY task, kind", (uid,)).fetchall()
        cancels: list[CancelRequest] = []
        retries: list[RetryRequest] = []
        for task, kind, fingerprint, after_attempt, by, at in rows:
            when = datetime.fromisoformat(at)
            if kind == RequestKind.CANCEL.value:
                cancels.append(CancelRequest(task=task, fingerprint=fingerprint, requested_by=by, requested_at=when))
            else:
                retries.append(RetryRequest(task=task, after_attempt=after_attempt, requested_by=by,
                                            requested_at=when))
        return TaskRequests(cancels=tuple(cancels), retries=tuple(retries))

    def claim_entries(self, uid: str, annotation: str, entries: Iterable[str]) -> list[str]:
        """The entries of ``annotation`` on run ``uid`` not acted on before, now marked as acted
        on: a caller that gets an entry back acts on it, and no later call returns it again."""
        fresh: list[str] = []
        with self._transaction() as db:
            for entry in dict.fromkeys(entries):
                cursor = db.execute("INSERT OR IGNORE INTO handled_annotations (uid, annotation, entry) "
                                    "VALUES (?,?,?)", (uid, annotation, entry))
                if cursor.rowcount == 1:
                    fresh.append(entry)
        return fresh

    @staticmethod
    def _require_workflow(db: sqlite3.Connection, uid: str) -> None:
        if db.execute("SELECT 1 FROM workflows WHERE uid = ?", (uid,)).fetchone() is None:
            raise KeyError(f"no workflow with uid {uid}")
