"""Every Kubernetes API call the operator makes, as RBAC rules, and no other: the single list the
Helm chart's Role grants (a test compares them), which the operator's calls must stay within and
use in full (the end-to-end tests read what it asked the API server for from its audit log)."""

from __future__ import annotations

from dataclasses import dataclass

from ..api import GROUP


@dataclass(frozen=True)
class Rule:
    api_group: str  # "" is the core group
    resource: str  # "workflows", "workflows/status", ...
    verbs: tuple[str, ...]


RULES: tuple[Rule, ...] = (
    # Desired state comes from the informers (list, then watch); the finalizer and the pinned
    # approve annotation are JSON patches of the object.
    Rule(GROUP, "workflows", ("list", "watch", "patch")),
    # Status: server-side apply (and the merge patch removing fields another writer left).
    Rule(GROUP, "workflows/status", ("patch",)),
    Rule(GROUP, "workflowtemplates", ("list", "watch")),
    Rule(GROUP, "slurmclusters", ("list", "watch")),
    Rule(GROUP, "slurmclusters/status", ("patch",)),
    # SSH keys of ssh SlurmClusters, read by name.
    Rule("", "secrets", ("get",)),
    # Task inputs from ConfigMaps, read by name.
    Rule("", "configmaps", ("get",)),
    # Each event is a new object: nothing is counted up in an existing one.
    Rule("", "events", ("create",)),
    # Leader election.
    Rule("coordination.k8s.io", "leases", ("get", "create", "update")),
)


def allowed(api_group: str, resource: str, verb: str) -> bool:
    return any(r.api_group == api_group and r.resource == resource and verb in r.verbs for r in RULES)
