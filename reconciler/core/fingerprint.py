"""Task fingerprints: what decides that a task must run again after a change.

A task's fingerprint covers its own effective spec and the fingerprints of its prerequisites,
so changing one step changes it and everything downstream, and nothing else. Fields that do not
change what a task computes (retry policy, labels, approval flag) are left out, so editing them
does not rerun finished work. Pure.
"""

from __future__ import annotations

import hashlib
import json

import networkx as nx

from ..api import Task
from ..manifests.dag import task_of, topological_order

_IGNORED_FIELDS = {"retry", "labels", "approved", "depends_on"}


def own_fingerprint(task: Task) -> str:
    data = task.model_dump(mode="json", exclude=_IGNORED_FIELDS, exclude_none=True)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def fingerprints(graph: nx.DiGraph[str]) -> dict[str, str]:
    """Every task's fingerprint (16 hex digits), prerequisites folded in."""
    result: dict[str, str] = {}
    for name in topological_order(graph):
        digest = hashlib.sha256(own_fingerprint(task_of(graph, name)).encode())
        for upstream in sorted(graph.predecessors(name)):
            digest.update(result[upstream].encode())
        result[name] = digest.hexdigest()[:16]
    return result
