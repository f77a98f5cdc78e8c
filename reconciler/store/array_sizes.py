"""The store's record of arrays sized at run time: what each size file said when it was read.

Part of :class:`reconciler.store.database.Store`. The loop records a file's reading once, after the
task that writes it succeeded (``record_array_size``), and hands the readings of a run's current
writers to the planner each tick (``array_sizes``); the executor takes the item list from here when
it puts the copy a job reads on the cluster (``array_items``). Guarantees:

* a reading is kept per (run, array task, fingerprint of the writing task): a rerun of the writer
  with other parameters has another fingerprint, so its file is read again, and an older reading
  is never taken for it;
* the first reading recorded for a key is the one kept, so a size never changes under an array
  that is already running; an invalid file is recorded too (the task fails with its message until
  the writer changes);
* an item list is kept whole (compressed) beside its count and digest, but only the count and the
  digest are read each tick.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from datetime import datetime

from ..core.fanout import ArraySize, InvalidSize, KnownSize
from .connection import StoreConnection
from .encoding import iso


class ArraySizeBook(StoreConnection):
    def record_array_size(self, uid: str, task: str, *, upstream_fingerprint: str, size: ArraySize,
                          now: datetime) -> ArraySize:
        """Record what the file said for the writer at ``upstream_fingerprint``; the reading kept
        (an earlier one for the same key wins)."""
        known = size if isinstance(size, KnownSize) else None
        items = zlib.compress(known.items.encode()) if known is not None and known.items is not None else None
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO array_sizes (uid, task, upstream_fingerprint, count, items_digest, "
                       "items, problem, read_at) VALUES (?,?,?,?,?,?,?,?)",
                       (uid, task, upstream_fingerprint, known.count if known else None,
                        known.items_digest if known else None, items,
                        size.message if isinstance(size, InvalidSize) else None, iso(now)))
        kept = self.array_sizes(uid, {task: upstream_fingerprint}).get(task)
        assert kept is not None
        return kept

    def array_sizes(self, uid: str, writers: Mapping[str, str]) -> dict[str, ArraySize]:
        """The readings recorded for run ``uid``'s array tasks, each for its writer's fingerprint
        in ``writers`` (array task -> fingerprint of the task that writes its file)."""
        with self._lock:
            rows = self._db.execute("SELECT task, upstream_fingerprint, count, items_digest, problem "
                                    "FROM array_sizes WHERE uid = ?", (uid,)).fetchall()
        return {task: (InvalidSize(problem) if count is None else KnownSize(count=count, items_digest=digest))
                for task, fingerprint, count, digest, problem in rows if writers.get(task) == fingerprint}

    def array_items(self, uid: str, task: str, *, items_digest: str) -> str | None:
        """The item list recorded with ``items_digest`` for the run's task, or None."""
        with self._lock:
            row = self._db.execute("SELECT items FROM array_sizes WHERE uid = ? AND task = ? AND items_digest = ? "
                                   "AND items IS NOT NULL LIMIT 1", (uid, task, items_digest)).fetchone()
        return zlib.decompress(row[0]).decode() if row is not None else None
