"""The store's record of approvals: who signed off which task, for which fingerprint, and how.

Part of :class:`reconciler.store.database.Store`. ``reconciler approve`` writes here from its own
process while a loop runs; the operator writes the annotation's approvals; the loop records the
``approved:`` values of manifests (``record_declared``) and reads ``approvals(uid)`` each tick for
the planner (``reconciler.core.approvals`` says what they mean). Guarantees:

* an approval is kept per (run, task, fingerprint); the first one given for a fingerprint is the
  one kept, so who approved it first stays on record;
* a manifest's ``approved:`` value is recorded as an approval once, when it first appears for the
  task (or changes), bound to the fingerprint the task has then; the value seen and the approval
  are written in one transaction, so a crash between the two cannot approve twice or never.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from ..core.approvals import Approval, ApprovalVia, TaskApprovals
from .connection import StoreConnection
from .encoding import iso


class ApprovalBook(StoreConnection):
    def approve(self, namespace: str, name: str, task: str, *, fingerprint: str, via: ApprovalVia, by: str,
                now: datetime, revision: str | None = None) -> str:
        """Approve ``task`` of the active run of namespace/name at ``fingerprint``; returns the
        run's uid."""
        with self._transaction() as db:
            found = db.execute("SELECT uid FROM workflows WHERE namespace = ? AND name = ? AND removed_at IS NULL",
                               (namespace, name)).fetchone()
            if found is None:
                raise KeyError(f"no active workflow {namespace}/{name}")
            db.execute("INSERT OR IGNORE INTO task_approvals (uid, task, fingerprint, via, approved_by, approved_at, "
                       "revision) VALUES (?,?,?,?,?,?,?)",
                       (found[0], task, fingerprint, via.value, by, iso(now), revision))
            return str(found[0])

    def approvals(self, uid: str) -> TaskApprovals:
        """Every approval of the run's tasks, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT task, fingerprint, via, approved_by, approved_at, revision "
                                    "FROM task_approvals WHERE uid = ? ORDER BY approved_at, task",
                                    (uid,)).fetchall()
        return TaskApprovals(tuple(
            Approval(task=task, fingerprint=fingerprint, via=ApprovalVia(via), by=by, at=datetime.fromisoformat(at),
                     revision=revision)
            for task, fingerprint, via, by, at, revision in rows))

    def record_declared(self, uid: str, declared: Mapping[str, str | None], *, fingerprints: Mapping[str, str],
                        revision: str | None, now: datetime) -> list[str]:
        """Record the manifest's ``approved:`` values of run ``uid`` (approval task -> value, None
        when it approves nothing): a value not seen before for its task approves the task at its
        fingerprint in ``fingerprints``; a task that approves nothing forgets its value, so setting
        it again approves again. Returns the tasks approved now."""
        approved: list[str] = []
        if not declared:
            return approved  # no approval task: no write transaction on every tick
        with self._transaction() as db:
            seen = dict(db.execute("SELECT task, value FROM declared_approvals WHERE uid = ?", (uid,)).fetchall())
            for task, value in sorted(declared.items()):
                if value is None:
                    if task in seen:
                        db.execute("DELETE FROM declared_approvals WHERE uid = ? AND task = ?", (uid, task))
                    continue
                if seen.get(task) == value:
                    continue
                db.execute("INSERT OR REPLACE INTO declared_approvals (uid, task, value) VALUES (?,?,?)",
                           (uid, task, value))
                db.execute("INSERT OR IGNORE INTO task_approvals (uid, task, fingerprint, via, approved_by, "
                           "approved_at, revision) VALUES (?,?,?,?,?,?,?)",
                           (uid, task, fingerprints[task], ApprovalVia.MANIFEST.value, value, iso(now), revision))
                approved.append(task)
        return approved
