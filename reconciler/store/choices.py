"""The store's record of the Orchestrator's choices: each attempt's configuration and why, and
the cluster each workflow that names candidates was placed on.

Part of :class:`reconciler.store.database.Store`. The executor records a choice with the intent
of the submission it goes out with; the loop records a placement before the workflow's first
submission. Guarantees: the first record of a (run, task, fingerprint, attempt) is kept, so a
choice on record is the one the attempt's jobs were submitted with; a placement is replaced only
when the loop places the workflow again (its cluster is no longer a candidate).
"""

from __future__ import annotations

import json
from datetime import datetime

from ..api.orchestration import ChoiceStatus
from ..core.choices import Placement, RecordedChoice, TaskChoices
from .connection import StoreConnection
from .encoding import iso


class ChoiceBook(StoreConnection):
    def record_choice(self, uid: str, choice: RecordedChoice, *, now: datetime) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO choices (uid, task, fingerprint, attempt, recorded_at, status, ranked) "
                       "VALUES (?,?,?,?,?,?,?)",
                       (uid, choice.task, choice.fingerprint, choice.attempt, iso(now),
                        choice.status.model_dump_json(by_alias=True, exclude_none=True),
                        json.dumps(list(choice.ranked))))

    def choices(self, uid: str) -> TaskChoices:
        with self._lock:
            rows = self._db.execute("SELECT task, fingerprint, attempt, status, ranked FROM choices WHERE uid = ? "
                                    "ORDER BY task, attempt", (uid,)).fetchall()
        return TaskChoices(tuple(
            RecordedChoice(task=task, fingerprint=fingerprint, attempt=attempt,
                           status=ChoiceStatus.model_validate_json(status), ranked=tuple(json.loads(ranked)))
            for task, fingerprint, attempt, status, ranked in rows))

    def place(self, uid: str, placement: Placement, *, now: datetime) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO placements (uid, cluster, placed_at, message, ranked) "
                       "VALUES (?,?,?,?,?)",
                       (uid, placement.cluster, iso(now), placement.message, json.dumps(list(placement.ranked))))

    def placement(self, uid: str) -> Placement | None:
        with self._lock:
            row = self._db.execute("SELECT cluster, message, ranked FROM placements WHERE uid = ?",
                                   (uid,)).fetchone()
        if row is None:
            return None
        return Placement(cluster=row[0], message=row[1], ranked=tuple(json.loads(row[2])))
