"""Task fingerprints: what decides that a task must run again after a change.

A task's fingerprint covers its own effective spec and the fingerprints of its prerequisites,
so changing one step changes it and everything downstream, and nothing else. Fields that do not
change what a task computes (retry policy, labels, approval flag) are left out, so editing them
does not rerun finished work. The content of a task's inputs counts as well: the caller reads
the files at the edge and hands in one digest per task (``inputs``), so a changed file reruns
the task and what follows it. Pure.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import networkx as nx

from ..api import Task
from ..manifests.dag import task_of, topological_order

_IGNORED_FIELDS = {"retry", "labels", "approved", "depends_on"}


def own_fingerprint(task: Task) -> str:
    data = task.model_dump(mode="json", exclude=_IGNORED_FIELDS, exclude_none=True)
    if not data.get("inputs"):
        data.pop("inputs", None)  # so a task without inputs keeps the fingerprint it always had
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def fingerprints(graph: nx.DiGraph[str], inputs: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every task's fingerprint (16 hex digits), prerequisites folded in, and the digest of each
    task's input files where ``inputs`` has one."""
    result: dict[str, str] = {}
    for name in topological_order(graph):
        digest = hashlib.sha256(own_fingerprint(task_of(graph, name)).encode())
        if inputs and name in inputs:
            digest.update(f"inputs:{inputs[name]}".encode())
        for upstream in sorted(graph.predecessors(name)):
            digest.update(result[upstream].encode())
        result[name] = digest.hexdigest()[:16]
    return result
