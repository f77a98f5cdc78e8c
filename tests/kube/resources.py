"""The resource types the test API server serves: the built-in ones it starts with and the ones
each CustomResourceDefinition adds.

Called by storage (to find a type, its schema, its generation and status rules), by discovery and
OpenAPI (to describe the types) and by the handlers (to resolve URLs). Guarantees: a type is known
by its group, version and plural, carries what discovery must say about it (kind, singular, short
names, categories, verbs, scope, subresources) and what storage needs (a structural schema for
pruning, defaulting and validation, whether ``generation`` is tracked and how, which fields are
selectable, which table columns it prints).

Deviations: ServiceAccounts, Services, Pods, Deployments and the RBAC types are stored as sent,
without a schema (no pruning or type checks). The other built-in types' schemas are small
hand-written subsets of the real ones (enough for pruning unknown fields and type checks); their
type errors surface as 400 decode errors, as the real typed decoders do, but with apimachinery's
Go field names replaced by JSON paths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import Resource
from .tables import Column, age, age_column, created_at_column, name_column, printer_column

Schema = dict[str, Any]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")


@dataclass
class ResourceType:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    schema: Schema
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    status_subresource: bool = False
    custom: bool = False
    # "spec": generation follows .spec (built-ins that have one); "content": anything but metadata
    # (and status, when the status subresource is on), the custom-resource rule; None: no generation.
    generation: str | None = None
    # Where objects live: two types that are views of one storage (core and events.k8s.io Events)
    # share it.
    storage: str = ""
    extra_field_selectors: frozenset[str] = frozenset()
    columns: list[Column] = field(default_factory=list)
    crd_name: str = ""

    def __post_init__(self) -> None:
        if not self.storage:
            self.storage = f"{self.group}/{self.plural}"
        if not self.columns:
            self.columns = [name_column(), created_at_column()]

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def qualified(self) -> Resource:
        return Resource(self.group, self.plural)

    @property
    def qualified_kind(self) -> Resource:
        return Resource(self.group, self.kind)

    @property
    def field_selectors(self) -> frozenset[str]:
        base = {"metadata.name", "metadata.namespace"} if self.namespaced else {"metadata.name"}
        return frozenset(base) | self.extra_field_selectors

    def unsupported_field(self, name: str) -> str:
        if self.custom:
            known = ", ".join(f'"{f}"' for f in sorted(self.field_selectors))
            return f'"{name}" is not a known field selector: only {known}'
        return f"field label not supported: {name}"

    @property
    def path_prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


# --- schemas of the built-in types ---------------------------------------------------------------

_STR: Schema = {"type": "string"}
_INT: Schema = {"type": "integer"}
_BOOL: Schema = {"type": "boolean"}
_TIME: Schema = {"type": "string", "format": "date-time"}
_STRMAP: Schema = {"type": "object", "additionalProperties": _STR}
_ANY: Schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_OBJREF: Schema = {
    "type": "object",
    "properties": dict.fromkeys(
        ("apiVersion", "kind", "name", "namespace", "uid", "resourceVersion", "fieldPath"), _STR),
}
_TOP: dict[str, Schema] = {"apiVersion": _STR, "kind": _STR, "metadata": {"type": "object"}}


def _obj(**props: Schema) -> Schema:
    return {"type": "object", "properties": {**_TOP, **props}}


NAMESPACE_SCHEMA = _obj(
    spec={"type": "object", "properties": {"finalizers": {"type": "array", "items": _STR}}},
    status={
        "type": "object",
        "properties": {"phase": _STR, "conditions": {"type": "array", "items": _ANY}},
    },
)
CONFIGMAP_SCHEMA = _obj(
    data=_STRMAP,
    binaryData={"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
    immutable=_BOOL,
)
SECRET_SCHEMA = _obj(
    data={"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
    stringData=_STRMAP,
    type=_STR,
    immutable=_BOOL,
)
_SERIES: Schema = {"type": "object", "properties": {"count": _INT, "lastObservedTime": _TIME}}
CORE_EVENT_SCHEMA = _obj(
    involvedObject=_OBJREF,
    reason=_STR,
    message=_STR,
    source={"type": "object", "properties": {"component": _STR, "host": _STR}},
    firstTimestamp={**_TIME, "nullable": True},
    lastTimestamp={**_TIME, "nullable": True},
    count=_INT,
    type=_STR,
    eventTime={**_TIME, "nullable": True},
    series=_SERIES,
    action=_STR,
    related=_OBJREF,
    reportingComponent=_STR,
    reportingInstance=_STR,
)
EVENTS_V1_SCHEMA = _obj(
    eventTime={**_TIME, "nullable": True},
    series=_SERIES,
    reportingController=_STR,
    reportingInstance=_STR,
    action=_STR,
    reason=_STR,
    regarding=_OBJREF,
    related=_OBJREF,
    note=_STR,
    type=_STR,
    deprecatedSource={"type": "object", "properties": {"component": _STR, "host": _STR}},
    deprecatedFirstTimestamp={**_TIME, "nullable": True},
    deprecatedLastTimestamp={**_TIME, "nullable": True},
    deprecatedCount=_INT,
)
LEASE_SCHEMA = _obj(
    spec={
        "type": "object",
        "properties": {
            "holderIdentity": {**_STR, "nullable": True},
            "leaseDurationSeconds": {**_INT, "nullable": True},
            "acquireTime": {**_TIME, "nullable": True},
            "renewTime": {**_TIME, "nullable": True},
            "leaseTransitions": {**_INT, "nullable": True},
            "strategy": {**_STR, "nullable": True},
            "preferredHolder": {**_STR, "nullable": True},
        },
    }
)
CRD_SCHEMA = _obj(spec=_ANY, status=_ANY)
_OPEN: Schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _cells(*getters: tuple[str, str, Callable[[dict[str, Any]], Any]]) -> list[Column]:
    return [name_column()] + [Column(n, t, "", "", 0, g) for n, t, g in getters] + [age_column()]


def _get(obj: dict[str, Any], *path: str) -> Any:
    node: Any = obj
    for p in path:
        node = node.get(p) if isinstance(node, dict) else None
    return node


def _event_object(o: dict[str, Any]) -> str:
    ref = o.get("involvedObject") or o.get("regarding") or {}
    return f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}"


def builtin_types() -> list[ResourceType]:
    """The built-in types, with the columns of kube-apiserver's own printers (the Age column is a
    human-readable string there, as here)."""
    return [
        ResourceType(
            "",
            "v1",
            "namespaces",
            "namespace",
            "Namespace",
            False,
            NAMESPACE_SCHEMA,
            short_names=("ns",),
            verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
            status_subresource=True,
            extra_field_selectors=frozenset({"status.phase"}),
            columns=_cells(("Status", "string", lambda o: _get(o, "status", "phase") or "")),
        ),
        ResourceType(
            "",
            "v1",
            "configmaps",
            "configmap",
            "ConfigMap",
            True,
            CONFIGMAP_SCHEMA,
            short_names=("cm",),
            columns=_cells(("Data", "integer", lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}))),
        ),
        ResourceType(
            "",
            "v1",
            "secrets",
            "secret",
            "Secret",
            True,
            SECRET_SCHEMA,
            extra_field_selectors=frozenset({"type"}),
            columns=_cells(
                ("Type", "string", lambda o: o.get("type", "")),
                ("Data", "integer", lambda o: len(o.get("data") or {})),
            ),
        ),
        ResourceType(
            "",
            "v1",
            "events",
            "event",
            "Event",
            True,
            CORE_EVENT_SCHEMA,
            short_names=("ev",),
            storage="events",
            extra_field_selectors=frozenset(
                {
                    "involvedObject.kind",
                    "involvedObject.namespace",
                    "involvedObject.name",
                    "involvedObject.uid",
                    "involvedObject.apiVersion",
                    "involvedObject.resourceVersion",
                    "involvedObject.fieldPath",
                    "reason",
                    "reportingComponent",
                    "source",
                    "type",
                }
            ),
            columns=[
                Column(
                    "Last Seen",
                    "string",
                    "",
                    "",
                    0,
                    lambda o: age(
                        o.get("lastTimestamp") or o.get("eventTime") or _get(o, "metadata", "creationTimestamp")
                    ),
                ),
                Column("Type", "string", "", "", 0, lambda o: o.get("type", "")),
                Column("Reason", "string", "", "", 0, lambda o: o.get("reason", "")),
                Column("Object", "string", "", "", 0, _event_object),
                Column("Message", "string", "", "", 0, lambda o: o.get("message", "")),
                name_column(),
            ],
        ),
        ResourceType(
            "events.k8s.io",
            "v1",
            "events",
            "event",
            "Event",
            True,
            EVENTS_V1_SCHEMA,
            short_names=("ev",),
            storage="events",
            extra_field_selectors=frozenset(
                {"regarding.kind", "regarding.name", "regarding.namespace", "reason", "type"}
            ),
        ),
        ResourceType(
            "coordination.k8s.io",
            "v1",
            "leases",
            "lease",
            "Lease",
            True,
            LEASE_SCHEMA,
            columns=_cells(("Holder", "string", lambda o: _get(o, "spec", "holderIdentity") or "")),
        ),
        # What an operator's Helm chart holds. Stored as sent (no schema, no controllers: a
        # Deployment never gets pods, a ServiceAccount no token).
        ResourceType("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", True, _OPEN, short_names=("sa",)),
        ResourceType(
            "", "v1", "services", "service", "Service", True, _OPEN, short_names=("svc",), status_subresource=True
        ),
        ResourceType(
            "",
            "v1",
            "pods",
            "pod",
            "Pod",
            True,
            _OPEN,
            short_names=("po",),
            status_subresource=True,
            categories=("all",),
        ),
        ResourceType(
            "apps",
            "v1",
            "deployments",
            "deployment",
            "Deployment",
            True,
            _OPEN,
            short_names=("deploy",),
            status_subresource=True,
            generation="spec",
            categories=("all",),
        ),
        *[
            ResourceType("rbac.authorization.k8s.io", "v1", plural, plural[:-1], kind, namespaced, _OPEN)
            for plural, kind, namespaced in (
                ("roles", "Role", True),
                ("rolebindings", "RoleBinding", True),
                ("clusterroles", "ClusterRole", False),
                ("clusterrolebindings", "ClusterRoleBinding", False),
            )
        ],
        ResourceType(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "customresourcedefinition",
            "CustomResourceDefinition",
            False,
            CRD_SCHEMA,
            short_names=("crd", "crds"),
            categories=("api-extensions",),
            status_subresource=True,
            generation="spec",
        ),
    ]


def crd_types(crd: dict[str, Any]) -> list[ResourceType]:
    """The types a CRD serves: one per served version."""
    spec = crd["spec"]
    names = spec["names"]
    types = []
    for version in spec.get("versions", []):
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        columns = version.get("additionalPrinterColumns")
        if columns is None:
            # The default a CRD gets when it declares no columns.
            columns = [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
        schema = (version.get("schema") or {}).get("openAPIV3Schema") or {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
        }
        types.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                singular=names.get("singular") or names["kind"].lower(),
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                schema=schema,
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status_subresource="status" in subresources,
                custom=True,
                generation="content",
                columns=[name_column()] + [printer_column(c) for c in columns],
                crd_name=crd["metadata"]["name"],
            )
        )
    return types


class Registry:
    """The served types, keyed by (group, version, plural). Not thread-safe: storage guards it."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        for t in builtin_types():
            self.add(t)

    def add(self, rt: ResourceType) -> None:
        self._types[(rt.group, rt.version, rt.plural)] = rt

    def remove_crd(self, crd_name: str) -> None:
        for key in [k for k, t in self._types.items() if t.crd_name == crd_name]:
            del self._types[key]

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def all(self) -> list[ResourceType]:
        return list(self._types.values())

    def group_versions(self) -> dict[str, list[str]]:
        """Group -> its versions, in the order they were first served (core group is "")."""
        groups: dict[str, list[str]] = {}
        for t in self._types.values():
            versions = groups.setdefault(t.group, [])
            if t.version not in versions:
                versions.append(t.version)
        return groups

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self._types.values() if t.group == group and t.version == version]
