"""The store's record of approvals: who signed off which task, for which fingerprint, with which
values, and how; and who rejected it, and why.

Part of :class:`reconciler.store.database.Store`. ``reconciler approve`` and ``reconciler reject``
write here from their own process while a loop runs; the operator writes the annotations'
decisions; the loop records the ``approved:`` and ``rejected:`` values of manifests
(``record_declared``) and reads ``approvals(uid)`` each tick for the planner
(``reconciler.core.approvals`` says what they mean). Guarantees:

* every decision is kept, in the order given, per (run, task, fingerprint): an iteration;
  giving the decision that holds already (the same verdict with the same values) again adds
  nothing, so who gave it first stays on record and a repeated annotation is no new iteration;
* a manifest's value is recorded once, when it first appears for the task (or changes), bound
  to the fingerprint the task has then; the value seen and the decision are written in one
  transaction, so a crash between the two cannot decide twice or never.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from datetime import datetime

from ..api.approval import ApprovalValue
from ..core.approval_values import canonical
from ..core.approvals import Approval, ApprovalVia, DeclaredApproval, TaskApprovals
from .connection import StoreConnection
from .encoding import iso


def _decide(db: sqlite3.Connection, uid: str, task: str, *, fingerprint: str, via: ApprovalVia, by: str,
            now: datetime, revision: str | None, values: Mapping[str, ApprovalValue] | None,
            rejected: str | None) -> bool:
    """Record one decision unless it is the one that holds already; True when recorded."""
    text = canonical(values) if values else None
    newest = db.execute("SELECT approved_values, rejected FROM approval_decisions WHERE uid = ? AND task = ? "
                        "AND fingerprint = ? ORDER BY seq DESC LIMIT 1", (uid, task, fingerprint)).fetchone()
    if newest is not None and newest[0] == text and newest[1] == rejected:
        return False
    db.execute("INSERT INTO approval_decisions (uid, task, fingerprint, via, approved_by, approved_at, revision, "
               "approved_values, rejected) VALUES (?,?,?,?,?,?,?,?,?)",
               (uid, task, fingerprint, via.value, by, iso(now), revision, text, rejected))
    return True


class ApprovalBook(StoreConnection):
    def approve(self, namespace: str, name: str, task: str, *, fingerprint: str, via: ApprovalVia, by: str,
                now: datetime, revision: str | None = None, values: Mapping[str, ApprovalValue] | None = None,
                rejected: str | None = None) -> str:
        """Approve ``task`` of the active run of namespace/name at ``fingerprint`` with ``values``
        (checked by the caller), or reject it with the reason ``rejected``; returns the run's uid."""
        with self._transaction() as db:
            found = db.execute("SELECT uid FROM workflows WHERE namespace = ? AND name = ? AND removed_at IS NULL",
                               (namespace, name)).fetchone()
            if found is None:
                raise KeyError(f"no active workflow {namespace}/{name}")
            _decide(db, str(found[0]), task, fingerprint=fingerprint, via=via, by=by, now=now, revision=revision,
                    values=values, rejected=rejected)
            return str(found[0])

    def approvals(self, uid: str) -> TaskApprovals:
        """Every decision on the run's tasks, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT task, fingerprint, via, approved_by, approved_at, revision, "
                                    "approved_values, rejected FROM approval_decisions WHERE uid = ? ORDER BY seq",
                                    (uid,)).fetchall()
        return TaskApprovals(tuple(
            Approval(task=task, fingerprint=fingerprint, via=ApprovalVia(via), by=by, at=datetime.fromisoformat(at),
                     revision=revision, values=json.loads(values) if values else {}, rejected=rejected)
            for task, fingerprint, via, by, at, revision, values, rejected in rows))

    def record_declared(self, uid: str, declared: Mapping[str, DeclaredApproval | str | None], *,
                        fingerprints: Mapping[str, str], revision: str | None, now: datetime) -> list[str]:
        """Record the manifest's decisions of run ``uid`` (approval task -> what it declares, a
        plain string approving without values; None when it decides nothing): a value not seen
        before for its task decides the task at its fingerprint in ``fingerprints``; a task that
        decides nothing forgets its value, so setting it again decides again. Returns the tasks
        decided now."""
        decided: list[str] = []
        if not declared:
            return decided  # no approval task: no write transaction on every tick
        with self._transaction() as db:
            seen = dict(db.execute("SELECT task, value FROM declared_approvals WHERE uid = ?", (uid,)).fetchall())
            for task, value in sorted(declared.items()):
                if value is None:
                    if task in seen:
                        db.execute("DELETE FROM declared_approvals WHERE uid = ? AND task = ?", (uid, task))
                    continue
                found = value if isinstance(value, DeclaredApproval) else DeclaredApproval(text=value)
                if seen.get(task) == found.text:
                    continue
                db.execute("INSERT OR REPLACE INTO declared_approvals (uid, task, value) VALUES (?,?,?)",
                           (uid, task, found.text))
                _decide(db, uid, task, fingerprint=fingerprints[task], via=ApprovalVia.MANIFEST,
                        by=found.rejected or found.text, now=now, revision=revision, values=found.values,
                        rejected=found.rejected)
                decided.append(task)
        return decided
