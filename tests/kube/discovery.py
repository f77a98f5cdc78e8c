"""Discovery and OpenAPI documents of the test API server, built from the served types.

Called by the handlers for ``/version``, ``/api``, ``/apis``, ``/apis/GROUP``, ``/api/v1``,
``/apis/GROUP/VERSION``, ``/openapi/v3`` and ``/openapi/v3/{api/v1,apis/GROUP/VERSION}``.
Guarantees:

- ``/api`` and ``/apis`` answer aggregated discovery (``apidiscovery.k8s.io/v2``
  ``APIGroupDiscoveryList``, the format kubectl 1.32 asks for first) when the Accept header asks
  for it, else the legacy ``APIVersions`` / ``APIGroupList``;
- every ``APIResourceList`` lists each type with its verbs, kind, singular name, short names,
  categories and scope, and its ``status`` subresource;
- each OpenAPI v3 group-version document has, for every type, path items with ``get``, ``put``,
  ``patch``, ``delete`` and ``post`` operations tagged with ``x-kubernetes-group-version-kind``,
  the ``patch`` (and ``post``/``put``) operations carrying the ``fieldValidation`` query parameter
  (kubectl checks for it before it lets the server validate), and component schemas with
  ``x-kubernetes-group-version-kind`` built from the type's schema, ``metadata`` a reference to
  ObjectMeta (whose ``finalizers`` and ``ownerReferences`` carry their patch strategies);
- the root ``/openapi/v3`` lists each group-version with a content hash in its URL, so a changed
  CRD schema is a new URL to kubectl's cache.

Deviations: ``/openapi/v2`` is not served (404); the documents hold only what kubectl reads, not the
full set of operations (no ``watch`` paths) and descriptions of the real ones.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

from .resources import STATUS_VERBS, Registry, ResourceType

JSON = dict[str, Any]

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"

VERSION_INFO: JSON = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.3",
    "gitCommit": "32cc146f75aad04beaaa245a7157eb35063a9f99",
    "gitTreeState": "clean",
    "buildDate": "2025-03-11T19:52:21Z",
    "goVersion": "go1.23.6",
    "compiler": "gc",
    "platform": "linux/amd64",
}

_GROUP_PRIORITY = {
    "": 0,
    "apps": 1,
    "events.k8s.io": 2,
    "rbac.authorization.k8s.io": 3,
    "apiextensions.k8s.io": 4,
    "coordination.k8s.io": 5,
}


def wants_aggregated(accept: str) -> str | None:
    """The aggregated-discovery media type the Accept header asks for, if any (v2 preferred)."""
    compact = accept.replace(" ", "")
    if "g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList" in compact:
        return AGGREGATED_V2
    if "g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList" in compact:
        return AGGREGATED_V2BETA1
    return None


def _groups(registry: Registry) -> list[tuple[str, list[str]]]:
    items = registry.group_versions().items()
    return sorted(items, key=lambda kv: (_GROUP_PRIORITY.get(kv[0], 10), kv[0]))


def api_versions(server_address: str) -> JSON:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _api_group(name: str, versions: list[str]) -> JSON:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list(registry: Registry) -> JSON:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_api_group(g, vs) for g, vs in _groups(registry) if g],
    }


def api_group(registry: Registry, group: str) -> JSON | None:
    versions = registry.group_versions().get(group)
    if not versions or not group:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_api_group(group, versions)}


def _storage_version_hash(rt: ResourceType) -> str:
    digest = hashlib.sha256(f"{rt.group}/{rt.version}/{rt.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def api_resource_list(registry: Registry, group: str, version: str) -> JSON | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    resources: list[JSON] = []
    for rt in sorted(types, key=lambda t: t.plural):
        entry: JSON = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        entry["storageVersionHash"] = _storage_version_hash(rt)
        resources.append(entry)
        if rt.status_subresource:
            resources.append(
                {
                    "name": f"{rt.plural}/status",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": list(STATUS_VERBS),
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": types[0].group_version,
        "resources": resources,
    }


def _discovery_resource(rt: ResourceType) -> JSON:
    kind = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    entry: JSON = {
        "resource": rt.plural,
        "responseKind": kind,
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": rt.singular,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    if rt.status_subresource:
        entry["subresources"] = [{"subresource": "status", "responseKind": kind, "verbs": list(STATUS_VERBS)}]
    return entry


def aggregated(registry: Registry, *, core: bool, media_type: str) -> JSON:
    """The ``APIGroupDiscoveryList`` of ``/api`` (core) or ``/apis`` (every other group)."""
    items = []
    for group, versions in _groups(registry):
        if (group == "") != core:
            continue
        item: JSON = {"metadata": {"name": group} if group else {}, "versions": []}
        for version in versions:
            types = sorted(registry.in_group_version(group, version), key=lambda t: t.plural)
            item["versions"].append(
                {"version": version, "resources": [_discovery_resource(t) for t in types], "freshness": "Current"}
            )
        items.append(item)
    api_version = "apidiscovery.k8s.io/v2" if media_type == AGGREGATED_V2 else "apidiscovery.k8s.io/v2beta1"
    return {"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items}


# --- OpenAPI v3 ------------------------------------------------------------------------------------

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
_REF = "#/components/schemas/"

_SCHEMA_PACKAGES = {
    "": "io.k8s.api.core",
    "coordination.k8s.io": "io.k8s.api.coordination",
    "events.k8s.io": "io.k8s.api.events",
    "apiextensions.k8s.io": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions",
    "apps": "io.k8s.api.apps",
    "rbac.authorization.k8s.io": "io.k8s.api.rbac",
}


def schema_name(rt: ResourceType, kind: str | None = None) -> str:
    package = _SCHEMA_PACKAGES.get(rt.group) if not rt.custom else None
    if package is None:
        package = ".".join(reversed(rt.group.split(".")))
    return f"{package}.{rt.version}.{kind or rt.kind}"


def _gvk(rt: ResourceType, kind: str | None = None) -> JSON:
    return {"group": rt.group, "version": rt.version, "kind": kind or rt.kind}


_STRING = {"type": "string"}
_OBJECT_META: JSON = {
    "type": "object",
    "properties": {
        "name": _STRING,
        "generateName": _STRING,
        "namespace": _STRING,
        "selfLink": _STRING,
        "uid": _STRING,
        "resourceVersion": _STRING,
        "generation": {"type": "integer", "format": "int64"},
        "creationTimestamp": {"type": "string", "format": "date-time"},
        "deletionTimestamp": {"type": "string", "format": "date-time"},
        "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
        "labels": {"type": "object", "additionalProperties": {"type": "string", "default": ""}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string", "default": ""}},
        "finalizers": {
            "type": "array",
            "items": {"type": "string", "default": ""},
            "x-kubernetes-list-type": "set",
            "x-kubernetes-patch-strategy": "merge",
        },
        "ownerReferences": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["apiVersion", "kind", "name", "uid"],
                "properties": {
                    "apiVersion": _STRING,
                    "kind": _STRING,
                    "name": _STRING,
                    "uid": _STRING,
                    "controller": {"type": "boolean"},
                    "blockOwnerDeletion": {"type": "boolean"},
                },
            },
            "x-kubernetes-list-map-keys": ["uid"],
            "x-kubernetes-list-type": "map",
            "x-kubernetes-patch-merge-key": "uid",
            "x-kubernetes-patch-strategy": "merge",
        },
        "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    },
}

_META_SCHEMAS: dict[str, JSON] = {
    f"{META}.ObjectMeta": _OBJECT_META,
    f"{META}.ListMeta": {
        "type": "object",
        "properties": {"continue": _STRING, "remainingItemCount": {"type": "integer"}, "resourceVersion": _STRING},
    },
    f"{META}.Status": {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "x-kubernetes-group-version-kind": [{"group": "", "kind": "Status", "version": "v1"}],
    },
    f"{META}.DeleteOptions": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    f"{META}.Patch": {"type": "object"},
}


def _param(name: str, where: str = "query", required: bool = False) -> JSON:
    return {"name": name, "in": where, "required": required, "schema": {"type": "string", "uniqueItems": True}}


_WRITE_PARAMS = [_param("dryRun"), _param("fieldManager"), _param("fieldValidation")]
_LIST_PARAMS = [
    _param(p)
    for p in (
        "allowWatchBookmarks",
        "continue",
        "fieldSelector",
        "labelSelector",
        "limit",
        "resourceVersion",
        "resourceVersionMatch",
        "sendInitialEvents",
        "timeoutSeconds",
        "watch",
    )
]


def _operation(
    rt: ResourceType, action: str, op_id: str, params: list[JSON], response: str, body: bool | str = False
) -> JSON:
    tag = f"{rt.group or 'core'}_{rt.version}".replace(".", "")
    content = {"schema": {"$ref": _REF + response}}
    op: JSON = {
        "tags": [tag],
        "operationId": op_id,
        "parameters": copy.deepcopy(params),
        "responses": {
            "200": {"description": "OK", "content": {"application/json": content, "application/yaml": content}},
            "401": {"description": "Unauthorized"},
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(rt),
    }
    if body == "patch":
        patch_schema = {"schema": {"$ref": _REF + f"{META}.Patch"}}
        types = ["application/json-patch+json", "application/merge-patch+json"]
        if not rt.custom:
            types.append("application/strategic-merge-patch+json")
        op["requestBody"] = {"content": dict.fromkeys(types, patch_schema), "required": True}
    elif body:
        op["requestBody"] = {"content": {"*/*": {"schema": {"$ref": _REF + str(body)}}}, "required": True}
    if action in ("post", "put"):
        op["responses"]["201"] = op["responses"]["200"]
    return op


def _paths(rt: ResourceType) -> dict[str, JSON]:
    obj, lst = schema_name(rt), schema_name(rt, rt.list_kind)
    stem = "".join(p.capitalize() for p in rt.group.replace("-", ".").split(".") if p) + rt.version.capitalize()
    ns = "Namespaced" if rt.namespaced else ""
    base = (
        f"{rt.path_prefix}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{rt.path_prefix}/{rt.plural}"
    )
    scope_params = [_param("namespace", "path", True)] if rt.namespaced else []
    name_params = [_param("name", "path", True), *scope_params]
    delete_params = [_param("dryRun"), _param("gracePeriodSeconds"), _param("propagationPolicy")]
    paths: dict[str, JSON] = {
        base: {
            "get": _operation(rt, "list", f"list{stem}{ns}{rt.kind}", _LIST_PARAMS, lst),
            "post": _operation(rt, "post", f"create{stem}{ns}{rt.kind}", _WRITE_PARAMS, obj, body=obj),
            "delete": _operation(
                rt,
                "deletecollection",
                f"deletecollection{stem}{ns}{rt.kind}",
                delete_params + _LIST_PARAMS,
                f"{META}.Status",
                body=f"{META}.DeleteOptions",
            ),
            "parameters": [*scope_params, _param("pretty")],
        },
        f"{base}/{{name}}": {
            "get": _operation(rt, "get", f"read{stem}{ns}{rt.kind}", [_param("resourceVersion")], obj),
            "put": _operation(rt, "put", f"replace{stem}{ns}{rt.kind}", _WRITE_PARAMS, obj, body=obj),
            "patch": _operation(
                rt, "patch", f"patch{stem}{ns}{rt.kind}", [*_WRITE_PARAMS, _param("force")], obj, body="patch"
            ),
            "delete": _operation(
                rt, "delete", f"delete{stem}{ns}{rt.kind}", delete_params, obj, body=f"{META}.DeleteOptions"
            ),
            "parameters": [*name_params, _param("pretty")],
        },
    }
    if rt.status_subresource:
        paths[f"{base}/{{name}}/status"] = {
            "get": _operation(rt, "get", f"read{stem}{ns}{rt.kind}Status", [_param("resourceVersion")], obj),
            "put": _operation(rt, "put", f"replace{stem}{ns}{rt.kind}Status", _WRITE_PARAMS, obj, body=obj),
            "patch": _operation(
                rt, "patch", f"patch{stem}{ns}{rt.kind}Status", [*_WRITE_PARAMS, _param("force")], obj, body="patch"
            ),
            "parameters": [*name_params, _param("pretty")],
        }
    if rt.namespaced:
        paths[f"{rt.path_prefix}/{rt.plural}"] = {
            "get": _operation(rt, "list", f"list{stem}{rt.kind}ForAllNamespaces", _LIST_PARAMS, lst),
            "parameters": [_param("pretty")],
        }
    return paths


def _component(rt: ResourceType) -> JSON:
    component = copy.deepcopy(rt.schema)
    props = component.setdefault("properties", {})
    props["metadata"] = {"allOf": [{"$ref": _REF + f"{META}.ObjectMeta"}], "default": {}}
    props.setdefault("apiVersion", _STRING)
    props.setdefault("kind", _STRING)
    component["x-kubernetes-group-version-kind"] = [_gvk(rt)]
    return component


def openapi_v3(registry: Registry, group: str, version: str) -> JSON | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    paths: dict[str, JSON] = {}
    schemas: dict[str, JSON] = copy.deepcopy(_META_SCHEMAS)
    for rt in sorted(types, key=lambda t: t.plural):
        paths.update(_paths(rt))
        schemas[schema_name(rt)] = _component(rt)
        schemas[schema_name(rt, rt.list_kind)] = {
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": _STRING,
                "kind": _STRING,
                "items": {"type": "array", "items": {"$ref": _REF + schema_name(rt)}},
                "metadata": {"allOf": [{"$ref": _REF + f"{META}.ListMeta"}], "default": {}},
            },
            "x-kubernetes-group-version-kind": [_gvk(rt, rt.list_kind)],
        }
    title = "Kubernetes" if not any(t.custom for t in types) else "Kubernetes CRD Swagger"
    return {
        "openapi": "3.0.0",
        "info": {"title": title, "version": "v0.1.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def document_hash(doc: JSON) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest().upper()


def openapi_v3_root(registry: Registry) -> JSON:
    paths: JSON = {}
    for group, versions in _groups(registry):
        for version in versions:
            key = f"apis/{group}/{version}" if group else f"api/{version}"
            doc = openapi_v3(registry, group, version)
            assert doc is not None
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={document_hash(doc)}"}
    return {"paths": paths}
