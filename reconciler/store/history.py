"""The history book: every finished Slurm job of the reconciler, as the Optimizer learns from it.

Written by the recording edge (``reconciler.engine.history``) once a job has ended and Slurm's
accounting has it; read by ``reconciler history``, by the run-time model through ``runs`` and by
the planner for each task's efficiency (``usage``). It guarantees:

- one row per Slurm job (an array chunk is one row; see ``reconciler.core.history.RunSample``),
  recorded once: recording the same (cluster, job id) again changes nothing;
- an attempt is marked as taken into the history in the same transaction that records its runs,
  so ``unrecorded_attempts`` lists exactly the ended attempts still to read from accounting, and
  costs one indexed query when there are none;
- rows outlive their workflow's run: a pruned workflow's runs still teach the model.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..core.history import RunSample, TaskUsage
from ..core.indexranges import expand
from ..core.observed import JobKey
from .connection import StoreConnection
from .encoding import from_iso, iso

_MAX_ELEMENTS = 10_000_000  # ``expand``'s bound, far above any array Slurm accepts

_RUN_COLUMNS = ("kind", "workflow", "task", "attempt", "job_id", "cluster", "partition", "nodes", "cpus",
                "memory_mib", "time_limit_seconds", "size_hint", "state", "elements", "elapsed_seconds",
                "queue_wait_seconds", "max_rss_mib", "total_cpu_seconds", "billed_core_seconds", "finished_at")


@dataclass(frozen=True, kw_only=True)
class RecordedRun:
    """A run as the book keeps it: the sample and the workflow run and task spec it belongs to."""

    uid: str
    fingerprint: str | None
    sample: RunSample


@dataclass(frozen=True, kw_only=True)
class UnrecordedAttempt:
    """An attempt that ended whose jobs are not in the history yet."""

    uid: str
    key: JobKey
    fingerprint: str | None
    job_id: str  # the array's id for an array chunk
    elements: int  # how many jobs accounting should report for it (1 for a plain job)
    array: bool
    finished_at: datetime | None


class HistoryBook(StoreConnection):
    def unrecorded_attempts(self, cluster: str, uids: Sequence[str]) -> list[UnrecordedAttempt]:
        """The ended attempts of these workflow runs on ``cluster`` not yet taken into the history."""
        if not uids:
            return []
        marks = ",".join("?" * len(uids))
        with self._lock:
            rows = self._db.execute(
                f"SELECT uid, task, attempt, part, fingerprint, job_id, indices, finished_at FROM attempts "
                f"WHERE cluster = ? AND uid IN ({marks}) AND done = 1 AND in_history = 0 AND job_id IS NOT NULL "
                f"ORDER BY uid, task, attempt, part", (cluster, *uids)).fetchall()
        return [UnrecordedAttempt(
            uid=uid, key=JobKey(task=task, attempt=attempt, part=part), fingerprint=fingerprint, job_id=job_id,
            elements=1 if indices is None else len(expand(indices, limit=_MAX_ELEMENTS)), array=indices is not None,
            finished_at=from_iso(finished_at)) for uid, task, attempt, part, fingerprint, job_id, indices, finished_at
            in rows]

    def record_runs(self, runs: Iterable[RecordedRun], *, attempts: Iterable[UnrecordedAttempt] = ()) -> None:
        """Keep these runs (a run already kept is left as it is) and mark ``attempts`` as taken
        into the history, whether or not they left a run (a job that never started leaves none)."""
        runs, attempts = list(runs), list(attempts)
        if not runs and not attempts:
            return
        with self._transaction() as db:
            for run in runs:
                _insert(db, run)
            db.executemany("UPDATE attempts SET in_history = 1 WHERE uid = ? AND task = ? AND attempt = ? AND part = ?",
                           [(a.uid, a.key.task, a.key.attempt, a.key.part) for a in attempts])

    def history_mark(self) -> int:
        """A number that changes whenever a run is added (the newest row's id: rows are only ever
        added), so a change says the models are stale. Read every tick for every workflow that
        chooses, so it must not cost a scan as COUNT(*) would: the rowid's maximum is one lookup."""
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(MAX(rowid), 0) FROM runs").fetchone()[0])

    def runs(self, kind: str | None = None, *, limit: int | None = None) -> list[RunSample]:
        """Runs, newest first; of one kind when ``kind`` is given."""
        where, params = ("WHERE kind = ?", (kind,)) if kind is not None else ("", ())
        bound = "" if limit is None else f" LIMIT {max(0, int(limit))}"
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs {where} "
                                    f"ORDER BY finished_at DESC, job_id DESC{bound}", params).fetchall()
        return [_sample(row) for row in rows]

    def usage(self, uid: str) -> dict[tuple[str, str], TaskUsage]:
        """By (task, fingerprint): what the latest attempt of that task spec in this workflow run
        used, for the attempts the history has."""
        with self._lock:
            rows = self._db.execute(f"SELECT fingerprint, {', '.join(_RUN_COLUMNS)} FROM runs "
                                    f"WHERE uid = ? AND fingerprint IS NOT NULL", (uid,)).fetchall()
        samples: dict[tuple[str, str], list[RunSample]] = {}
        for fingerprint, *columns in rows:
            sample = _sample(tuple(columns))
            samples.setdefault((sample.task, fingerprint), []).append(sample)
        return {key: usage for key, found in samples.items() if (usage := TaskUsage.of(found)) is not None}


def _insert(db: sqlite3.Connection, run: RecordedRun) -> None:
    s = run.sample
    values = (s.kind, s.workflow, s.task, s.attempt, s.job_id, s.cluster, s.partition, s.nodes, s.cpus,
              s.memory_mib, s.time_limit_seconds, s.size_hint, s.state, s.elements, s.elapsed_seconds,
              s.queue_wait_seconds, s.max_rss_mib, s.total_cpu_seconds, s.billed_core_seconds, iso(s.finished_at))
    db.execute(f"INSERT OR IGNORE INTO runs (uid, fingerprint, {', '.join(_RUN_COLUMNS)}) "
               f"VALUES (?, ?, {', '.join('?' * len(_RUN_COLUMNS))})", (run.uid, run.fingerprint, *values))


def _sample(row: tuple) -> RunSample:
    values = dict(zip(_RUN_COLUMNS, row, strict=True))
    values["finished_at"] = datetime.fromisoformat(values["finished_at"])
    return RunSample(**values)
