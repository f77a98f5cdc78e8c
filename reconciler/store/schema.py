"""The store's SQLite schema and its migrations.

Called by ``Store`` when it opens a database file. Guarantees: ``PRAGMA user_version`` says which
schema a file has; ``migrate`` brings it to ``SCHEMA_VERSION`` in one transaction taken under the
write lock (so several processes opening a new file at once create it once), and refuses a file
written by a newer reconciler instead of guessing at it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

_V1 = (
    """CREATE TABLE workflows (
        uid TEXT PRIMARY KEY,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        generation INTEGER NOT NULL,
        resource TEXT NOT NULL,
        spec_hash TEXT NOT NULL,
        revision TEXT,
        source_file TEXT,
        labels TEXT NOT NULL,
        created_at TEXT NOT NULL,
        removed_at TEXT,
        status TEXT
    )""",
    # At most one active run per name; pruned runs keep their rows beside it.
    "CREATE UNIQUE INDEX workflows_active ON workflows (namespace, name) WHERE removed_at IS NULL",
    """CREATE TABLE attempts (
        uid TEXT NOT NULL REFERENCES workflows (uid),
        task TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        part INTEGER NOT NULL,
        fingerprint TEXT,
        indices TEXT,
        resources TEXT NOT NULL,
        cluster TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        job_id TEXT,
        submitted_at TEXT,
        phase TEXT,
        failure TEXT,
        exit_code INTEGER,
        reason TEXT,
        message TEXT,
        node_list TEXT,
        started_at TEXT,
        finished_at TEXT,
        core_hours REAL NOT NULL DEFAULT 0,
        outcomes TEXT,
        done INTEGER NOT NULL DEFAULT 0,
        cancelled_by_reconciler INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (uid, task, attempt, part)
    )""",
    "CREATE INDEX attempts_open ON attempts (cluster, done)",
    "CREATE INDEX attempts_job ON attempts (uid, job_id)",
    """CREATE TABLE approvals (
        uid TEXT NOT NULL REFERENCES workflows (uid),
        task TEXT NOT NULL,
        approved_by TEXT NOT NULL,
        approved_at TEXT NOT NULL,
        PRIMARY KEY (uid, task)
    )""",
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        uid TEXT NOT NULL REFERENCES workflows (uid),
        at TEXT NOT NULL,
        type TEXT NOT NULL,
        reason TEXT NOT NULL,
        message TEXT NOT NULL
    )""",
    "CREATE INDEX events_by_workflow ON events (uid, id)",
)


def _create_v1(db: sqlite3.Connection) -> None:
    # Statement by statement: executescript() would commit the migration's transaction early.
    for statement in _V1:
        db.execute(statement)


# Version 2: an approval belongs to the fingerprint of what it approved, and says how it was
# given; the approved: values of manifests already recorded (so each is recorded once).
_V2 = (
    """CREATE TABLE task_approvals (
        uid TEXT NOT NULL REFERENCES workflows (uid),
        task TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        via TEXT NOT NULL,
        approved_by TEXT NOT NULL,
        approved_at TEXT NOT NULL,
        revision TEXT,
        PRIMARY KEY (uid, task, fingerprint)
    )""",
    """CREATE TABLE declared_approvals (
        uid TEXT NOT NULL REFERENCES workflows (uid),
        task TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (uid, task)
    )""",
)


def _create_v2(db: sqlite3.Connection) -> None:
    """An approval of version 1 was given for the task as the stored status showed it then: it
    keeps counting for that fingerprint. One given before the loop ever planned its task showed
    nothing to approve, and is dropped (the task asks a person again)."""
    for statement in _V2:
        db.execute(statement)
    rows = db.execute("SELECT approvals.uid, approvals.task, approvals.approved_by, approvals.approved_at, "
                      "workflows.status FROM approvals JOIN workflows USING (uid)").fetchall()
    for uid, task, by, at, status in rows:
        shown = ((json.loads(status) if status else {}).get("tasks") or {}).get(task) or {}
        if shown.get("fingerprint"):
            # Version 1 named an annotation's approvals "annotation hpc.reconciler.dev/approve".
            via, by = ("annotation", task) if by.startswith("annotation ") else ("cli", by)
            db.execute("INSERT INTO task_approvals (uid, task, fingerprint, via, approved_by, approved_at) "
                       "VALUES (?,?,?,?,?,?)", (uid, task, shown["fingerprint"], via, by, at))
    db.execute("DROP TABLE approvals")


# Version 3: the obligations a finished task leaves. A fetch of declared outputs per (run, task,
# fingerprint, attempt), so a rerun's outputs are kept apart and a lost fetch is tried again; and
# the ttlSecondsAfterFinished cleanup of a run, once per end.
_V3 = (
    """CREATE TABLE task_outputs (
        uid TEXT NOT NULL REFERENCES workflows (uid),
        task TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        phase TEXT NOT NULL,
        files INTEGER NOT NULL DEFAULT 0,
        location TEXT,
        unmatched TEXT,
        error TEXT,
        tries INTEGER NOT NULL DEFAULT 0,
        next_try_at TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (uid, task, fingerprint, attempt)
    )""",
    """CREATE TABLE cleanups (
        uid TEXT PRIMARY KEY REFERENCES workflows (uid),
        finished_at TEXT NOT NULL,
        cleaned_at TEXT NOT NULL,
        outcome TEXT NOT NULL,
        message TEXT
    )""",
)


def _create_v3(db: sqlite3.Connection) -> None:
    """A task that had succeeded before had its outputs fetched then, once, where nothing
    recorded: each is recorded as fetched (no place known), so it is not fetched again into a
    variant's directory from a run directory a later run may have changed since."""
    for statement in _V3:
        db.execute(statement)
    rows = db.execute("SELECT uid, status FROM workflows WHERE status IS NOT NULL").fetchall()
    for uid, status in rows:
        for task, shown in ((json.loads(status) or {}).get("tasks") or {}).items():
            if shown.get("phase") != "Succeeded" or not shown.get("fingerprint"):
                continue
            (attempt,) = db.execute("SELECT MAX(attempt) FROM attempts WHERE uid = ? AND task = ? AND fingerprint = ? "
                                    "AND phase = 'Succeeded'", (uid, task, shown["fingerprint"])).fetchone()
            if attempt is not None:
                db.execute("INSERT INTO task_outputs (uid, task, fingerprint, attempt, phase, updated_at) VALUES "
                           "(?,?,?,?,'Fetched',COALESCE(?, strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')))",
                           (uid, task, shown["fingerprint"], attempt, shown.get("finishedAt")))


# Version 4: what the size file of each array sized at run time said, per fingerprint of the task
# that wrote it. A new table: no earlier run had such an array.
_V4 = (
    """CREATE TABLE array_sizes (
        uid TEXT NOT NULL REFERENCES workflows (uid),
        task TEXT NOT NULL,
        upstream_fingerprint TEXT NOT NULL,
        count INTEGER,
        items_digest TEXT,
        items BLOB,
        problem TEXT,
        read_at TEXT NOT NULL,
        PRIMARY KEY (uid, task, upstream_fingerprint)
    )""",
)


def _create_v4(db: sqlite3.Connection) -> None:
    for statement in _V4:
        db.execute(statement)


# Version 5: requests made by hand (cancel, retry) and the annotation entries already acted on.
# New tables only: every existing row keeps its meaning (no request stands for an older run).
_V5 = (
    """CREATE TABLE requests (
        uid TEXT NOT NULL REFERENCES workflows (uid),
        task TEXT NOT NULL,
        kind TEXT NOT NULL,
        fingerprint TEXT,
        after_attempt INTEGER,
        requested_by TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        PRIMARY KEY (uid, task)
    )""",
    """CREATE TABLE handled_annotations (
        uid TEXT NOT NULL REFERENCES workflows (uid),
        annotation TEXT NOT NULL,
        entry TEXT NOT NULL,
        PRIMARY KEY (uid, annotation, entry)
    )""",
)


def _create_v5(db: sqlite3.Connection) -> None:
    for statement in _V5:
        db.execute(statement)


# Version 6: each task's labels as the loop resolved them, since a template instance's manifest
# names no tasks. A workflow stored before showed the labels its own manifest's tasks declare:
# those are written, so it reads as before until the loop records it again.
def _create_v6(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE workflows ADD COLUMN task_labels TEXT NOT NULL DEFAULT '{}'")
    for uid, resource in db.execute("SELECT uid, resource FROM workflows").fetchall():
        tasks = [task for task in (json.loads(resource).get("spec") or {}).get("tasks") or []
                 if isinstance(task, dict) and "name" in task]
        labels = {task["name"]: task.get("labels") or {} for task in tasks}
        db.execute("UPDATE workflows SET task_labels = ? WHERE uid = ?", (json.dumps(labels), uid))


# Version 7: the history of finished runs (``reconciler.store.history``): one row per Slurm job
# that ended, and on each attempt whether its jobs went into that history. Core-seconds as whole
# numbers (``core_seconds``; ``core_hours`` is no longer written), so that billed sums stay exact.
# Attempts that ended before are recorded too, on the next tick that sees their workflow.
_V7 = (
    """CREATE TABLE runs (
        cluster TEXT NOT NULL,
        job_id TEXT NOT NULL,
        uid TEXT NOT NULL REFERENCES workflows (uid),
        fingerprint TEXT,
        kind TEXT NOT NULL,
        workflow TEXT NOT NULL,
        task TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        partition TEXT,
        nodes INTEGER NOT NULL,
        cpus INTEGER NOT NULL,
        memory_mib REAL,
        time_limit_seconds INTEGER,
        size_hint REAL,
        state TEXT NOT NULL,
        elements INTEGER NOT NULL,
        elapsed_seconds REAL NOT NULL,
        queue_wait_seconds REAL,
        max_rss_mib REAL,
        total_cpu_seconds REAL,
        billed_core_seconds INTEGER NOT NULL,
        finished_at TEXT NOT NULL,
        PRIMARY KEY (cluster, job_id)
    )""",
    "CREATE INDEX runs_by_kind ON runs (kind, finished_at)",
    "CREATE INDEX runs_by_workflow ON runs (uid, task, attempt)",
    "ALTER TABLE attempts ADD COLUMN in_history INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX attempts_unrecorded ON attempts (cluster, uid) WHERE done = 1 AND in_history = 0",
    "ALTER TABLE attempts ADD COLUMN core_seconds INTEGER NOT NULL DEFAULT 0",
    "UPDATE attempts SET core_seconds = CAST(ROUND(core_hours * 3600) AS INTEGER)",
)


def _create_v7(db: sqlite3.Connection) -> None:
    for statement in _V7:
        db.execute(statement)


# MIGRATIONS[n] takes a database from version n - 1 to version n (version 0: an empty file).
# Version 8: the Orchestrator's choices (``reconciler.store.choices``): the configuration each
# attempt of a task with auto resources went out with, and the cluster each workflow that names
# candidates was placed on. Nothing earlier was chosen, so both start empty.
_V8 = (
    """CREATE TABLE choices (
        uid TEXT NOT NULL REFERENCES workflows (uid),
        task TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        recorded_at TEXT NOT NULL,
        status TEXT NOT NULL,
        ranked TEXT NOT NULL,
        PRIMARY KEY (uid, task, fingerprint, attempt)
    )""",
    """CREATE TABLE placements (
        uid TEXT PRIMARY KEY REFERENCES workflows (uid),
        cluster TEXT NOT NULL,
        placed_at TEXT NOT NULL,
        message TEXT NOT NULL,
        ranked TEXT NOT NULL
    )""",
)


def _create_v8(db: sqlite3.Connection) -> None:
    for statement in _V8:
        db.execute(statement)


# Version 9: an approval may carry values and a task may be decided again at one fingerprint
# (another iteration with other values, a rejection, an approval after it), so each decision is
# a row of its own, in the order given. Earlier approvals become the first iteration of their
# fingerprint, without values.
_V9 = (
    """CREATE TABLE approval_decisions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        uid TEXT NOT NULL REFERENCES workflows (uid),
        task TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        via TEXT NOT NULL,
        approved_by TEXT NOT NULL,
        approved_at TEXT NOT NULL,
        revision TEXT,
        approved_values TEXT,
        rejected TEXT
    )""",
    "CREATE INDEX approval_decisions_by_task ON approval_decisions (uid, task, fingerprint)",
    """INSERT INTO approval_decisions (uid, task, fingerprint, via, approved_by, approved_at, revision)
        SELECT uid, task, fingerprint, via, approved_by, approved_at, revision FROM task_approvals
        ORDER BY approved_at, task""",
    "DROP TABLE task_approvals",
)


def _create_v9(db: sqlite3.Connection) -> None:
    for statement in _V9:
        db.execute(statement)


# Version 10: the SlurmClusters the loop connected to, as declared (``reconciler.store.clusters``),
# so that reading a job's output needs no manifests. Earlier connections were not recorded: a
# cluster is recorded on the loop's next connection to it.
def _create_v10(db: sqlite3.Connection) -> None:
    db.execute("""CREATE TABLE clusters (
        name TEXT PRIMARY KEY,
        resource TEXT NOT NULL,
        recorded_at TEXT NOT NULL
    )""")


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _create_v1,
    2: _create_v2,
    3: _create_v3,
    4: _create_v4,
    5: _create_v5,
    6: _create_v6,
    7: _create_v7,
    8: _create_v8,
    9: _create_v9,
    10: _create_v10,
}
SCHEMA_VERSION = max(MIGRATIONS)


def migrate(db: sqlite3.Connection) -> int:
    """Bring the schema (``PRAGMA user_version``) up to ``SCHEMA_VERSION`` in one transaction.

    Safe when several processes open a new file at once: the version is read under the write lock.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"the state database is at schema version {version}, newer than this reconciler "
                f"({SCHEMA_VERSION}): upgrade the reconciler or point it at another state directory"
            )
        for target in sorted(MIGRATIONS):
            if target > version:
                MIGRATIONS[target](db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return SCHEMA_VERSION
