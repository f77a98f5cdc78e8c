"""Waking the loop as soon as a job ends: the watch of one cluster's end records.

Created by the controller for each cluster it holds a client of (``reconciler run`` and
``reconciler operator`` alike) and by ``reconciler submit --wait``; each passes the ``wake`` of
what it waits on. Every job the reconciler submits writes an end record as it ends
(:mod:`reconciler.slurm.endrecords`); the transport streams the names that appear in that folder
(``Transport.watch_names``: inotify or watchfiles where they see the writes, else a listing each
second, never a Slurm command).

What it guarantees:

- a record rings ``wake`` at once, at most once per ``MIN_GAP`` seconds whatever the number of
  records (a 30,000-element array ending is a handful of wakes, not 30,000 ticks);
- records never become truth: they only make the caller observe Slurm sooner. The job that
  wrote one is often still completing when the wake's observation runs, so ``settle`` (called
  with every observation) rings again shortly, at doubling delays, until accounting reports each
  recorded job ended, and gives a record up after ``GIVE_UP`` seconds (then the regular tick is
  all there is, as for a job killed before it could write);
- the records of jobs accounting reports ended are removed, in one ``rm`` per call of ``settle``;
- a watch that breaks (the connection dropped) is started again with backoff, on its own thread:
  the caller's loop never waits for it, and records written meanwhile are listed when it resumes.
"""

from __future__ import annotations

import logging
import math
import posixpath
import threading
import time
from collections.abc import Callable, Iterable

from ..backoff import backoff_delay
from ..slurm import endrecords
from ..slurm.commands import JobRecord
from ..slurm.transport import Transport, TransportError

log = logging.getLogger(__name__)

MIN_GAP = 0.5  # seconds between two wakes rung for new records
# The first wait before observing again a recorded job Slurm did not report ended. A record is
# written as the batch script exits, a moment before slurmctld calls the job COMPLETED (tens of
# milliseconds on an idle cluster): the first observation often comes too early, and the next
# one, this much later, usually sees the end; one observation (squeue and sacct at once) takes
# about as long on an idle cluster, so asking sooner would only add load.
RECHECK = 0.1
RECHECK_CAP = 8.0
GIVE_UP = 60.0  # after this, a record no observation matched is removed and forgotten
WATCH_BACKOFF = 1.0
WATCH_BACKOFF_CAP = 60.0
# A watch that ran this long before it broke starts again without the backoff of earlier faults.
WATCH_HEALTHY = 60.0


class EndWatch:
    """The end records of one cluster (``workdir``: its working directory), watched through
    ``transport`` on daemon threads; ``wake`` is rung from those threads."""

    def __init__(self, transport: Transport, *, workdir: str, wake: Callable[[], None], name: str) -> None:
        self._transport = transport
        self._folder = endrecords.folder(workdir)
        self._wake = wake
        self._name = name
        self._stop = threading.Event()
        self._changed = threading.Condition()
        # Guarded by _changed: records heard of and not yet settled (name -> when first heard),
        # when to ring next, when it last rang, and how many rechecks since the last new record.
        self._pending: dict[str, float] = {}
        self._due: float | None = None
        self._rang = -math.inf
        self._rechecks = 0
        self._threads = [threading.Thread(target=self._watch, name=f"end-watch {name}", daemon=True),
                         threading.Thread(target=self._ring, name=f"end-wake {name}", daemon=True)]
        for thread in self._threads:
            thread.start()

    @property
    def pending(self) -> frozenset[str]:
        """The records heard of whose job no observation has reported ended yet."""
        with self._changed:
            return frozenset(self._pending)

    @property
    def ending_jobs(self) -> set[str]:
        """The plain jobs (not array elements) among :attr:`pending`: the ones worth asking
        accounting for by id (an array's elements are many, and its window rows are read anyway)."""
        return endrecords.plain_jobs(self.pending)

    def settle(self, records: Iterable[JobRecord]) -> None:
        """After an observation that has accounting's answer (``records``): forget and remove
        the records of the jobs it reports ended, and ring again soon while any is left."""
        with self._changed:
            if not self._pending:
                return  # most ticks: nothing heard of, nothing to match
        now = time.monotonic()
        ended = endrecords.ended_names(records)
        with self._changed:
            done = [name for name, heard in self._pending.items() if name in ended or now - heard > GIVE_UP]
            for name in done:
                del self._pending[name]
            if self._pending:
                delay = min(RECHECK_CAP, RECHECK * 2 ** self._rechecks)
                self._rechecks += 1
                self._schedule(now + delay)
        if done:
            self._remove(done)

    def close(self) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        for thread in self._threads:
            thread.join(timeout=10.0)

    def _remove(self, names: list[str]) -> None:
        for start in range(0, len(names), endrecords.REMOVE_BATCH):
            paths = [posixpath.join(self._folder, name) for name in names[start:start + endrecords.REMOVE_BATCH]]
            try:
                self._transport.run(["rm", "-f", "--", *paths], timeout=30.0)
            except TransportError as exc:  # left for a later listing to report again
                log.debug("cluster %s: removing end records: %s", self._name, exc)
                return

    def _found(self, names: list[str]) -> None:
        now = time.monotonic()
        with self._changed:
            new = [name for name in names if endrecords.is_record_name(name) and name not in self._pending]
            if not new:
                return
            for name in new:
                self._pending[name] = now
            self._rechecks = 0
            self._schedule(max(now, self._rang + MIN_GAP))

    def _schedule(self, at: float) -> None:
        # Called with _changed held.
        if self._due is None or at < self._due:
            self._due = at
            self._changed.notify_all()

    def _ring(self) -> None:
        while not self._stop.is_set():
            with self._changed:
                now = time.monotonic()
                if self._due is None or self._due > now:
                    self._changed.wait(None if self._due is None else self._due - now)
                    continue
                self._due = None
                self._rang = now
            self._wake()

    def _watch(self) -> None:
        failures = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._transport.watch_names(self._folder, self._found, self._stop)
            except (TransportError, OSError) as exc:
                failures = 1 if time.monotonic() - started > WATCH_HEALTHY else failures + 1
                delay = backoff_delay(failures, base=WATCH_BACKOFF, cap=WATCH_BACKOFF_CAP, jitter=(0.8, 1.2))
                log.info("cluster %s: the watch of job ends broke (%s); the regular tick still sees every end, "
                         "watching again in %.0fs", self._name, exc, delay)
                self._stop.wait(delay)
