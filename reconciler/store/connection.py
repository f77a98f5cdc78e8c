"""The store's SQLite connection: how the file is opened, shared between threads and written.

The base of :class:`reconciler.store.database.Store` and of the record books it is made of (one
module per kind of record). It guarantees: WAL mode with a busy timeout, so readers never wait for
the loop and a second writer waits its turn; every ``_transaction`` is taken with ``BEGIN
IMMEDIATE`` and commits whole or not at all; the schema is migrated on open (``schema.migrate``).
A write the disk has no room for (SQLite's ``SQLITE_FULL``, or ``ENOSPC``) leaves the file as it
was and raises :class:`StateWriteFailed`, so the loop can tell a full state directory from a bug.
"""

from __future__ import annotations

import errno
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from .schema import migrate

BUSY_TIMEOUT_SECONDS = 30.0  # a tick's write is milliseconds; this only has to outlast a slow disk
# SQLite's codes for a write that found no room: the disk (or its quota) is full.
_NO_ROOM = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR_WRITE})


class StateWriteFailed(Exception):
    """The state directory cannot take a write: nothing of that write was kept. Retrying is
    right once space returns; until then nothing may be done that would need recording."""


def no_room(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk had no room for a write."""
    if isinstance(exc, sqlite3.OperationalError):
        return getattr(exc, "sqlite_errorcode", None) in _NO_ROOM
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


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
            try:
                self._db.execute(f"BEGIN {mode}")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    # SQLite may have rolled back already (a full disk does that), and a second
                    # ROLLBACK would hide the error that matters.
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except (sqlite3.OperationalError, OSError) as exc:
                if no_room(exc):
                    raise StateWriteFailed(f"the state directory {self.path.parent} is full: {self.path.name} "
                                           f"not written ({exc})") from exc
                raise

