"""An array attempt's per-element outcomes, kept as groups of elements with one outcome each.

Used by the store (``reconciler.store.database``) for the ``outcomes`` column of an array attempt's row:
``apply_to_groups`` moves a tick's observed elements into the groups, ``array_summary`` gives the
row's own columns, and ``encode_groups``/``decode_groups`` the column's JSON text. Pure: no database.
It guarantees:

- elements with the same outcome share one group ("0-29999" succeeded), so a 30,000-element
  array costs a few hundred bytes, not one row per element;
- applying the same observation again changes nothing: a finished element reported every tick
  neither rewrites the row nor counts its core-hours twice;
- an element Slurm requeued leaves its old group with its share of that group's core-hours;
- where one batch reports an element twice, its finished state wins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..api import TaskPhase
from ..core.indexranges import compress, expand
from ..core.observed import DONE_PHASES, ObservedJob
from .encoding import canonical_json, from_iso, iso_or_none

# An array attempt's ranges are expanded in memory when it is read or updated; this is only the
# bound ``expand`` insists on, far above any array Slurm accepts.
MAX_ELEMENTS = 10_000_000

# Elements with equal (phase, failure, exit code, reason, node list) share one group. The node
# list is kept for failed elements only: a NODE_FAIL retry avoids those nodes, while keeping it
# for successes would split a big array into one group per node for nothing.
Signature = tuple[str, str | None, int | None, str | None, str | None]


@dataclass
class Group:
    indices: set[int]
    started_at: datetime | None = None
    finished_at: datetime | None = None
    core_hours: float = 0.0  # of the group's finished elements; live ones are the observation's


def _signature(job: ObservedJob) -> Signature:
    return (job.phase.value, job.failure.value if job.failure else None, job.exit_code, job.reason,
            job.node_list if job.phase is TaskPhase.FAILED else None)


def decode_groups(text: str | None) -> dict[Signature, Group]:
    groups: dict[Signature, Group] = {}
    for item in json.loads(text) if text else []:
        signature = (item["phase"], item.get("failure"), item.get("exitCode"), item.get("reason"),
                     item.get("nodeList"))
        groups[signature] = Group(set(expand(item["indices"], limit=MAX_ELEMENTS)), from_iso(item.get("startedAt")),
                                  from_iso(item.get("finishedAt")), item.get("coreHours", 0.0))
    return groups


def encode_groups(groups: dict[Signature, Group]) -> str:
    items = []
    for (phase, failure, exit_code, reason, node_list), group in sorted(groups.items(),
                                                                        key=lambda kv: min(kv[1].indices)):
        item: dict[str, Any] = {"phase": phase, "indices": compress(group.indices), "failure": failure,
                                "exitCode": exit_code, "reason": reason, "nodeList": node_list,
                                "startedAt": iso_or_none(group.started_at),
                                "finishedAt": iso_or_none(group.finished_at),
                                "coreHours": round(group.core_hours, 9) or None}
        items.append({k: v for k, v in item.items() if v is not None})
    return canonical_json(items)


def apply_to_groups(groups: dict[Signature, Group], jobs: list[ObservedJob], universe: set[int]) -> bool:
    """Move each observed element into the group of its new outcome; True if anything moved.

    An element already in the group of its outcome is left alone, so sacct reporting the same
    finished element every tick neither rewrites the row nor counts its core-hours twice.
    """
    where = {index: signature for signature, group in groups.items() for index in group.indices}
    changed = False
    # Finished sightings last: where one batch reports an element twice, the final state wins.
    for job in sorted(jobs, key=lambda j: j.phase in DONE_PHASES):
        covered = job.indices if job.indices is not None else tuple(sorted(universe))
        signature = _signature(job)
        moving = [index for index in covered if where.get(index) != signature]
        if not moving:
            continue
        changed = True
        universe.update(moving)
        target = groups.setdefault(signature, Group(set()))
        for index in moving:
            old = where.get(index)
            if old is not None:
                # Slurm requeued the element: its share of the old group's core-hours leaves with it.
                source = groups[old]
                source.core_hours -= source.core_hours / len(source.indices)
                source.indices.discard(index)
                if not source.indices:
                    del groups[old]
            target.indices.add(index)
            where[index] = signature
        if job.phase in DONE_PHASES:
            target.core_hours += job.core_hours * len(moving) / max(1, len(covered))
        if job.started_at is not None and (target.started_at is None or job.started_at < target.started_at):
            target.started_at = job.started_at
        if job.finished_at is not None and (target.finished_at is None or job.finished_at > target.finished_at):
            target.finished_at = job.finished_at
    return changed


# Which phase speaks for a whole array attempt in its summary, most pressing first.
_SUMMARY_ORDER = (TaskPhase.RUNNING, TaskPhase.SUBMITTED, TaskPhase.HELD, TaskPhase.UNKNOWN,
                  TaskPhase.FAILED, TaskPhase.CANCELLED, TaskPhase.SUCCEEDED)


def array_summary(groups: dict[Signature, Group], universe: set[int]) -> dict[str, Any]:
    """The attempt row's own columns for an array: a representative phase and the totals."""
    finished = sum(len(g.indices) for s, g in groups.items() if TaskPhase(s[0]) in DONE_PHASES)
    observed = sum(len(g.indices) for g in groups.values())
    present = {TaskPhase(s[0]) for s in groups}
    if observed and observed < len(universe):
        present.add(TaskPhase.UNKNOWN)  # some elements were never reported
    phase = next((p for p in _SUMMARY_ORDER if p in present), None)
    first = min((kv for kv in groups.items() if phase is not None and kv[0][0] == phase.value),
                key=lambda kv: min(kv[1].indices), default=None)
    done = finished == len(universe)
    return {
        "phase": phase.value if phase else None,
        "failure": first[0][1] if first else None,
        "exit_code": first[0][2] if first else None,
        "reason": first[0][3] if first else None,
        "node_list": None,
        "started_at": iso_or_none(min((g.started_at for g in groups.values() if g.started_at), default=None)),
        "finished_at": iso_or_none(max((g.finished_at for g in groups.values() if g.finished_at), default=None))
        if done else None,
        "core_hours": sum(g.core_hours for g in groups.values()),
        "outcomes": encode_groups(groups),
        "done": int(done),
        "indices": compress(universe),
    }
