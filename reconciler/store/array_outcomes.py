"""An array attempt's per-element outcomes, kept as groups of elements with one outcome each.

Used by the store (``reconciler.store.database``) for the ``outcomes`` column of an array attempt's row:
``apply_to_groups`` moves a tick's observed elements into the groups, ``array_summary`` gives the
outcome that speaks for the whole attempt in the row's own columns, ``Group.outcome`` each group's
outcome for the core, and ``encode_groups``/``decode_groups`` the column's JSON text. Pure: no
database. It guarantees:

- elements with the same outcome share one group ("0-29999" succeeded), so a 30,000-element
  array costs a few hundred bytes, not one row per element;
- applying the same observation again changes nothing: a finished element reported every tick
  neither rewrites the row nor counts its core-hours twice;
- an element Slurm requeued leaves its old group with its share of that group's core-hours;
- an element whose end squeue showed first moves once accounting reports it, so that it counts
  the core-seconds accounting bills, not squeue's elapsed x CPUs;
- where one batch reports an element twice, its finished state wins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from ..api import FailureKind, TaskPhase
from ..core.indexranges import compress, expand
from ..core.observed import JobOutcome, ObservedJob
from .encoding import canonical_json, from_iso, iso_or_none

# An array attempt's ranges are expanded in memory when it is read or updated; this is only the
# bound ``expand`` insists on, far above any array Slurm accepts.
MAX_ELEMENTS = 10_000_000


def group_key(outcome: JobOutcome) -> JobOutcome:
    """What elements must share to share a group: their outcome without the times and core-hours,
    which the group bounds and sums. The node list is kept for failed elements only: a NODE_FAIL
    retry avoids those nodes, while keeping it for successes would split a big array into one
    group per node for nothing. Whether accounting reported the end is kept: an element squeue
    saw end moves to accounting's group when accounting reports it, with the billed figure."""
    return JobOutcome(phase=outcome.phase, failure=outcome.failure, exit_code=outcome.exit_code, reason=outcome.reason,
                      node_list=outcome.node_list if outcome.phase is TaskPhase.FAILED else None,
                      accounted=outcome.accounted)


@dataclass
class Group:
    """The elements of one group key, with the earliest start, the latest end and the core-hours
    of the group's finished elements (live ones are the observation's)."""

    indices: set[int]
    started_at: datetime | None = None
    finished_at: datetime | None = None
    core_seconds: int = 0

    def outcome(self, key: JobOutcome) -> JobOutcome:
        """The group's outcome: its key with the group's times and core-hours."""
        return replace(key, started_at=self.started_at, finished_at=self.finished_at, core_seconds=self.core_seconds)

    def join(self, outcome: JobOutcome, *, moved: int, covered: int) -> None:
        """``moved`` of the ``covered`` elements of an observed job joined the group: they bring
        their share of the job's core-hours, and the group's times widen to cover the job's."""
        if outcome.done:
            self.core_seconds += outcome.core_seconds * moved // max(1, covered)
        if outcome.started_at is not None and (self.started_at is None or outcome.started_at < self.started_at):
            self.started_at = outcome.started_at
        if outcome.finished_at is not None and (self.finished_at is None or outcome.finished_at > self.finished_at):
            self.finished_at = outcome.finished_at

    def leave(self, index: int) -> None:
        """Slurm requeued the element: its share of the group's core-hours leaves with it."""
        self.core_seconds -= self.core_seconds // len(self.indices)
        self.indices.discard(index)


Groups = dict[JobOutcome, Group]  # keyed by ``group_key``


def decode_groups(text: str | None) -> Groups:
    groups: Groups = {}
    for item in json.loads(text) if text else []:
        failure = item.get("failure")
        key = JobOutcome(phase=TaskPhase(item["phase"]), failure=FailureKind(failure) if failure else None,
                         exit_code=item.get("exitCode"), reason=item.get("reason"), node_list=item.get("nodeList"),
                         accounted=item.get("accounted", False))
        groups[key] = Group(set(expand(item["indices"], limit=MAX_ELEMENTS)), from_iso(item.get("startedAt")),
                            from_iso(item.get("finishedAt")), _core_seconds(item))
    return groups


def _core_seconds(item: dict[str, Any]) -> int:
    # Rows written before schema 7 kept core-hours as a float.
    if "coreSeconds" in item:
        return int(item["coreSeconds"])
    return round(item.get("coreHours", 0.0) * 3600)


def encode_groups(groups: Groups) -> str:
    items = []
    for key, group in sorted(groups.items(), key=lambda kv: min(kv[1].indices)):
        item: dict[str, Any] = {"phase": key.phase.value, "indices": compress(group.indices),
                                "failure": key.failure.value if key.failure else None,
                                "exitCode": key.exit_code, "reason": key.reason, "nodeList": key.node_list,
                                "startedAt": iso_or_none(group.started_at),
                                "finishedAt": iso_or_none(group.finished_at),
                                "coreSeconds": group.core_seconds or None, "accounted": key.accounted or None}
        items.append({k: v for k, v in item.items() if v is not None})
    return canonical_json(items)


def apply_to_groups(groups: Groups, jobs: list[ObservedJob], universe: set[int]) -> bool:
    """Move each observed element into the group of its new outcome; True if anything moved.

    An element already in the group of its outcome is left alone, so sacct reporting the same
    finished element every tick neither rewrites the row nor counts its core-hours twice.
    """
    where = {index: key for key, group in groups.items() for index in group.indices}
    # One object per key, so that each element's key is compared by identity: a big array's
    # elements are many.
    keys = {key: key for key in groups}
    changed = False
    # Finished sightings last: where one batch reports an element twice, the final state wins.
    for job in sorted(jobs, key=lambda j: j.outcome.done):
        covered = job.indices if job.indices is not None else tuple(sorted(universe))
        key = group_key(job.outcome)
        key = keys.setdefault(key, key)
        moving = [index for index in covered if where.get(index) is not key]
        if not moving:
            continue
        changed = True
        universe.update(moving)
        target = groups.setdefault(key, Group(set()))
        for index in moving:
            old = where.get(index)
            if old is not None:
                _leave(groups, old, index)
            target.indices.add(index)
            where[index] = key
        target.join(job.outcome, moved=len(moving), covered=len(covered))
    return changed


def _leave(groups: Groups, key: JobOutcome, index: int) -> None:
    source = groups[key]
    source.leave(index)
    if not source.indices:
        del groups[key]


@dataclass(frozen=True)
class ArraySummary:
    """What the attempt row's own columns say of the whole array."""

    # The most pressing phase with the failure, exit code and reason of its first group, the times
    # over every group (the end only once every element ended) and the core-hours of them all;
    # None while no element was reported.
    outcome: JobOutcome | None
    done: bool  # every element ended


# Which phase speaks for a whole array attempt in its summary, most pressing first.
_SUMMARY_ORDER = (TaskPhase.RUNNING, TaskPhase.SUBMITTED, TaskPhase.HELD, TaskPhase.UNKNOWN,
                  TaskPhase.FAILED, TaskPhase.CANCELLED, TaskPhase.SUCCEEDED)


def array_summary(groups: Groups, universe: set[int]) -> ArraySummary:
    """The representative outcome and the totals of an array attempt."""
    finished = sum(len(g.indices) for key, g in groups.items() if key.done)
    done = finished == len(universe)
    phase = _summary_phase(groups, universe)
    if phase is None:
        return ArraySummary(outcome=None, done=done)
    first = min((kv for kv in groups.items() if kv[0].phase is phase), key=lambda kv: min(kv[1].indices),
                default=None)
    spoken = first[0] if first else JobOutcome(phase=phase)
    outcome = replace(
        spoken, node_list=None,
        started_at=min((g.started_at for g in groups.values() if g.started_at), default=None),
        finished_at=max((g.finished_at for g in groups.values() if g.finished_at), default=None) if done else None,
        core_seconds=sum(g.core_seconds for g in groups.values()),
    )
    return ArraySummary(outcome=outcome, done=done)


def _summary_phase(groups: Groups, universe: set[int]) -> TaskPhase | None:
    present = {key.phase for key in groups}
    observed = sum(len(g.indices) for g in groups.values())
    if observed and observed < len(universe):
        present.add(TaskPhase.UNKNOWN)  # some elements were never reported
    return next((p for p in _SUMMARY_ORDER if p in present), None)
