"""Every Kubernetes API call the operator makes, as RBAC rules: the single list the Helm chart's
Role must grant (a test compares them) and the operator's calls must stay within (the end-to-end
tests record what it asks the API server for and check it against this list)."""

from __future__ import annotations

from dataclasses import dataclass

from ..api import GROUP


@dataclass(frozen=True)
class Rule:
    api_group: str  # "" is the core group
    resource: str  # "workflows", "workflows/status", ...
    verbs: tuple[str, ...]


RULES: tuple[Rule, ...] = (
    # Desired state: watched; the finalizer is added and removed with a patch of the object.
    Rule(GROUP, "workflows", ("get", "list", "watch", "patch")),
    # Status is written only through the status subresource.
    Rule(GROUP, "workflows/status", ("get", "update", "patch")),
    Rule(GROUP, "workflowtemplates", ("get", "list", "watch")),
    Rule(GROUP, "slurmclusters", ("get", "list", "watch")),
    Rule(GROUP, "slurmclusters/status", ("get", "update", "patch")),
    # SSH keys of ssh SlurmClusters, read by name.
    Rule("", "secrets", ("get",)),
    # Task inputs from ConfigMaps, read by name.
    Rule("", "configmaps", ("get",)),
    Rule("", "events", ("create", "patch")),
    # Leader election.
    Rule("coordination.k8s.io", "leases", ("get", "create", "update")),
)


def allowed(api_group: str, resource: str, verb: str) -> bool:
    return any(r.api_group == api_group and r.resource == resource and verb in r.verbs for r in RULES)
