"""The store's SQLite connection: how the file is opened, shared between threads and written.

The base of :class:`reconciler.store.database.Store` and of the record books it is made of (one
module per kind of record). It guarantees: WAL mode with a busy timeout, so readers never wait for
the loop and a second writer waits its turn; every ``_transaction`` is taken with ``BEGIN
IMMEDIATE`` and commits whole or not at all; the schema is migrated on open (``schema.migrate``).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from .schema import migrate

BUSY_TIMEOUT_SECONDS = 30.0  # a tick's write is milliseconds; this only has to outlast a slow disk


class StoreConnection:
    """One SQLite connection to ``path`` (parent directories are created), shared by threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # Autocommit mode: transactions are opened explicitly, writes with BEGIN IMMEDIATE so a
        # writer takes the lock up front instead of failing on an upgrade from a read lock.
        self._db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")  # durable at each checkpoint; safe in WAL mode
        self._db.execute("PRAGMA foreign_keys = ON")
        migrate(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute(f"BEGIN {mode}")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

