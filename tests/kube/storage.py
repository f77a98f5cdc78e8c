"""The object store of the test Kubernetes API server: CRUD with kube-apiserver's semantics, one
global resourceVersion counter, and a bounded event history that watches read from.

Called by the HTTP handlers (one call per request) and by ``ApiServer``'s test hooks. Thread-safe:
every operation runs under one lock, and watchers wait on a condition that every write notifies.
Guarantees, as the generic registry and the custom-resource strategy do:

- every write takes the next resourceVersion (a decimal string, increasing across all types, as
  etcd's revision does) and appends one ADDED/MODIFIED/DELETED event to the history;
- an update whose result equals the stored object is not written (no new resourceVersion, no event);
- ``uid``, ``creationTimestamp``, ``deletionTimestamp`` and ``generation`` are the server's:
  ``generation`` starts at 1 and grows only when the content that defines it changes (everything
  but metadata, and status when the status subresource is on; ``.spec`` for CRDs) and once when
  deletion starts on an object with finalizers;
- with a status subresource, writes to the main resource keep the stored ``.status`` and writes
  to ``/status`` change nothing else;
- DELETE of an object with finalizers sets ``deletionTimestamp`` and
  ``deletionGracePeriodSeconds: 0`` and keeps it; the write that empties its finalizers removes it;
  deleting a Namespace or a CRD deletes what it contains first;
- a watch can resume from any resourceVersion still in the history; older ones get 410 Expired.

Deviations: ``propagationPolicy`` is accepted but there is no garbage collector, so
``ownerReferences`` never cascade; ``resourceVersion``/``resourceVersionMatch`` on get and list
always read the latest state; ``limit`` is ignored (lists are never split, so no ``continue`` token
is ever returned); ``managedFields`` are not tracked and are dropped from requests.
"""

from __future__ import annotations

import copy
import random
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from . import admission, patching, schema
from .errors import (
    FieldError,
    already_exists,
    bad_request,
    conflict,
    forbidden_request,
    invalid_object,
    method_not_allowed,
    not_found,
    unsupported_media_type,
)
from .resources import Registry, ResourceType
from .selectors import FieldRequirement, Requirement, fields_match, labels_match

JSON = dict[str, Any]
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


@dataclass(frozen=True)
class Event:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    storage: str
    namespace: str
    obj: JSON  # stored form, as it was after the write (for DELETED: the last state, new rv)
    prev: JSON | None  # the state before a MODIFIED, for selector transitions


@dataclass(frozen=True)
class Selection:
    """What a list, watch or deletecollection selects."""

    namespace: str | None
    labels: list[Requirement]
    fields: list[FieldRequirement]

    def matches(self, obj: JSON) -> bool:
        if self.namespace is not None and obj["metadata"].get("namespace", "") != self.namespace:
            return False
        return labels_match(self.labels, obj) and fields_match(self.fields, obj)


@dataclass
class WriteResult:
    obj: JSON
    warnings: list[str]
    created: bool = False


NAMESPACES = "/namespaces"
CRDS = "apiextensions.k8s.io/customresourcedefinitions"
# Objects whose deletion first empties them (the namespace and CRD-cleanup controllers' work).
CONTAINERS = (NAMESPACES, CRDS)

_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's SimpleNameGenerator


class Store:
    """See the module docstring. ``history_size`` bounds the watch history."""

    def __init__(self, history_size: int = 1000) -> None:
        self.registry = Registry()
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.rv = 1
        self.history: deque[Event] = deque()
        self.history_size = history_size
        self.floor = 0  # a watch may resume from any resourceVersion >= floor
        self.objects: dict[str, dict[Key, JSON]] = {}
        self.conflicts: dict[str, int] = {}
        self.closed = False
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            rt = self.registry.get("", "v1", "namespaces")
            assert rt is not None
            self.create(rt, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    # --- history and notification ---------------------------------------------------------------

    def _bump(self) -> int:
        self.rv += 1
        return self.rv

    def _record(self, type_: str, storage: str, obj: JSON, prev: JSON | None) -> None:
        event = Event(
            int(obj["metadata"]["resourceVersion"]),
            type_,
            storage,
            obj["metadata"].get("namespace", ""),
            copy.deepcopy(obj),
            prev,
        )
        if len(self.history) >= self.history_size:
            self.floor = self.history.popleft().rv
        self.history.append(event)
        self.changed.notify_all()

    def expire_history(self) -> None:
        """Forget every event so far, as an etcd compaction at the current revision does: a watch
        from any older resourceVersion now gets 410 Expired."""
        with self.lock:
            self.history.clear()
            self.floor = self.rv
            self.changed.notify_all()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.changed.notify_all()

    def inject_conflicts(self, resource: str, count: int) -> None:
        with self.lock:
            self.conflicts[resource.removesuffix("/status")] = count

    # --- reads -----------------------------------------------------------------------------------

    def _bucket(self, rt: ResourceType) -> dict[Key, JSON]:
        return self.objects.setdefault(rt.storage, {})

    def get(self, rt: ResourceType, namespace: str, name: str) -> JSON:
        with self.lock:
            stored = self._bucket(rt).get((namespace, name))
            if stored is None:
                raise not_found(rt.qualified, name)
            return admission.to_view(rt, stored)

    def select(self, rt: ResourceType, selection: Selection) -> tuple[list[JSON], str]:
        with self.lock:
            bucket = self._bucket(rt)
            items = [admission.to_view(rt, bucket[k]) for k in sorted(bucket) if selection.matches(bucket[k])]
            return items, str(self.rv)

    # --- writes ----------------------------------------------------------------------------------

    def _validate(self, rt: ResourceType, obj: JSON, old: JSON | None) -> None:
        errors: list[FieldError] = admission.metadata_errors(rt, obj["metadata"])
        if old is not None:
            errors += admission.metadata_update_errors(old, obj)
        errors += admission.prepare(rt, obj, old)
        if rt.custom:
            errors += schema.validate(obj, rt.schema)
        if errors:
            raise invalid_object(rt.qualified_kind, obj["metadata"].get("name", ""), errors)

    def _check_namespace(self, rt: ResourceType, namespace: str, name: str) -> None:
        if not rt.namespaced:
            return
        ns = self.objects.get(NAMESPACES, {}).get(("", namespace))
        if ns is None:
            raise not_found(self._ns_type().qualified, namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise forbidden_request(
                f'{rt.qualified} "{name}" is forbidden: unable to create new content in namespace {namespace} '
                "because it is being terminated",
                rt.qualified,
                name,
            )

    def _ns_type(self) -> ResourceType:
        rt = self.registry.get("", "v1", "namespaces")
        assert rt is not None
        return rt

    def _crd_terminating(self, rt: ResourceType) -> bool:
        crd = self.objects.get(CRDS, {}).get(("", rt.crd_name))
        return bool(rt.custom and crd and crd["metadata"].get("deletionTimestamp"))

    def create(
        self, rt: ResourceType, namespace: str, body: Any, *, dry_run: bool = False, validation: str = "Warn"
    ) -> WriteResult:
        with self.lock:
            obj, warnings = admission.decode(rt, body, namespace, validation)
            meta = obj["metadata"]
            if meta.get("resourceVersion"):
                raise bad_request("resourceVersion should not be set on objects to be created")
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + "".join(random.choices(_GENERATE_ALPHABET, k=5))
            for f in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "selfLink",
            ):
                meta.pop(f, None)
            if rt.status_subresource and rt.custom:
                obj.pop("status", None)
            self._validate(rt, obj, None)
            if self._crd_terminating(rt):
                raise method_not_allowed("create not allowed while custom resource definition is terminating")
            self._check_namespace(rt, namespace, meta["name"])
            stored = admission.to_storage(rt, obj)
            key = (meta.get("namespace", ""), meta["name"])
            if key in self._bucket(rt):
                raise already_exists(rt.qualified, meta["name"])
            smeta = stored["metadata"]
            smeta["uid"] = str(uuid.uuid4())
            smeta["creationTimestamp"] = admission.now_rfc3339()
            if rt.generation:
                smeta["generation"] = 1
            if dry_run:
                return WriteResult(admission.to_view(rt, stored), warnings, created=True)
            smeta["resourceVersion"] = str(self._bump())
            self._bucket(rt)[key] = stored
            self._record("ADDED", rt.storage, stored, None)
            if rt.storage == CRDS:
                self._serve_crd(stored)
            return WriteResult(admission.to_view(rt, stored), warnings, created=True)

    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        subresource: str = "",
        dry_run: bool = False,
        validation: str = "Warn",
    ) -> WriteResult:
        with self.lock:
            if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
                body_name = body["metadata"].get("name")
                if body_name and body_name != name:
                    raise bad_request(
                        f"the name of the object ({body_name}) does not match the name on the URL ({name})"
                    )
            obj, warnings = admission.decode(rt, body, namespace, validation)
            obj["metadata"]["name"] = name
            return self._write(rt, namespace, name, obj, warnings, subresource=subresource, dry_run=dry_run)

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        patch_type: str,
        patch: Any,
        *,
        subresource: str = "",
        dry_run: bool = False,
        validation: str = "Warn",
    ) -> WriteResult:
        with self.lock:
            if (
                (patch_type == STRATEGIC_PATCH
                and rt.custom)
                or patch_type == APPLY_PATCH
                or patch_type not in (MERGE_PATCH, JSON_PATCH, STRATEGIC_PATCH)
            ):
                accepted = [JSON_PATCH, MERGE_PATCH] + ([] if rt.custom else [STRATEGIC_PATCH])
                raise unsupported_media_type(patch_type, accepted)
            current = self._bucket(rt).get((namespace, name))
            if current is None:
                raise not_found(rt.qualified, name)
            view = admission.to_view(rt, current)
            if patch_type == MERGE_PATCH:
                if not isinstance(patch, dict):
                    raise bad_request("json: cannot unmarshal non-object into Go value of type map[string]interface {}")
                patched = patching.merge_patch(view, patch)
            elif patch_type == JSON_PATCH:
                patched = patching.json_patch(view, patch)
            else:
                patched = patching.strategic_merge_patch(view, patch)
            if not isinstance(patched, dict):
                raise bad_request("the patched object is not a JSON object")
            meta = patched.get("metadata")
            if isinstance(meta, dict) and (meta.get("name") != name or meta.get("namespace", "") != namespace):
                raise bad_request("metadata.name and metadata.namespace cannot be changed by a patch")
            obj, warnings = admission.decode(rt, patched, namespace, validation)
            return self._write(rt, namespace, name, obj, warnings, subresource=subresource, dry_run=dry_run)

    def _write(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        obj: JSON,
        warnings: list[str],
        *,
        subresource: str,
        dry_run: bool,
    ) -> WriteResult:
        """The common tail of update and patch: preconditions, the strategies, storage."""
        key = (namespace if rt.namespaced else "", name)
        current = self._bucket(rt).get(key)
        if current is None:
            raise not_found(rt.qualified, name)
        old = admission.to_view(rt, current)
        meta, old_meta = obj["metadata"], old["metadata"]
        if meta.get("resourceVersion") and meta["resourceVersion"] != old_meta["resourceVersion"]:
            raise conflict(rt.qualified, name)
        if subresource == "status":
            remaining = self.conflicts.get(rt.plural, 0)
            if remaining > 0:
                self.conflicts[rt.plural] = remaining - 1
                raise conflict(rt.qualified, name)
            # The status strategy: the stored object with only .status taken from the request.
            status = obj.get("status")
            obj = copy.deepcopy(old)
            if status is None:
                obj.pop("status", None)
            else:
                obj["status"] = status
            meta = obj["metadata"]
        else:
            if rt.status_subresource:
                if "status" in old:
                    obj["status"] = copy.deepcopy(old["status"])
                else:
                    obj.pop("status", None)
            if not meta.get("uid"):
                meta["uid"] = old_meta["uid"]
            for f in ("creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
                if f in old_meta:
                    meta[f] = old_meta[f]
                else:
                    meta.pop(f, None)
            meta.pop("selfLink", None)
            meta["generation"] = old_meta.get("generation")
            if meta["generation"] is None:
                del meta["generation"]
        meta["resourceVersion"] = old_meta["resourceVersion"]
        self._validate(rt, obj, old)
        if (
            rt.generation
            and subresource != "status"
            and self._generation_content(rt, obj) != self._generation_content(rt, old)
        ):
            meta["generation"] = int(old_meta.get("generation", 0)) + 1
        if obj == old:
            return WriteResult(old, warnings)
        if dry_run:
            return WriteResult(obj, warnings)
        stored = admission.to_storage(rt, obj)
        if stored["metadata"].get("deletionTimestamp") and not stored["metadata"].get("finalizers"):
            # The registry deletes instead of writing an object whose last finalizer went away; the
            # DELETED event carries the last stored state.
            return WriteResult(self._remove(rt.storage, key), warnings)
        stored["metadata"]["resourceVersion"] = str(self._bump())
        self._bucket(rt)[key] = stored
        self._record("MODIFIED", rt.storage, stored, current)
        if rt.storage == CRDS:
            self._serve_crd(stored)
        return WriteResult(admission.to_view(rt, stored), warnings)

    @staticmethod
    def _generation_content(rt: ResourceType, obj: JSON) -> Any:
        if rt.generation == "spec":
            return obj.get("spec")
        skip = {"metadata", "status"} if rt.status_subresource else {"metadata"}
        return {k: v for k, v in obj.items() if k not in skip}

    # --- deletion --------------------------------------------------------------------------------

    def delete(self, rt: ResourceType, namespace: str, name: str, options: JSON, *, dry_run: bool = False) -> JSON:
        with self.lock:
            key = (namespace if rt.namespaced else "", name)
            current = self._bucket(rt).get(key)
            if current is None:
                raise not_found(rt.qualified, name)
            preconditions = options.get("preconditions") or {}
            meta = current["metadata"]
            if preconditions.get("uid") and preconditions["uid"] != meta["uid"]:
                raise conflict(
                    rt.qualified,
                    name,
                    f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                    f"UID in object meta: {meta['uid']}",
                )
            if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != meta["resourceVersion"]:
                raise conflict(
                    rt.qualified,
                    name,
                    f"Precondition failed: ResourceVersion in precondition: {preconditions['resourceVersion']}, "
                    f"ResourceVersion in object meta: {meta['resourceVersion']}",
                )
            if rt.storage == NAMESPACES and name in ("default", "kube-system", "kube-public"):
                raise forbidden_request(
                    f'namespaces "{name}" is forbidden: this namespace may not be deleted', rt.qualified, name
                )
            if dry_run:
                return admission.to_view(rt, current)
            if meta.get("finalizers") or rt.storage in CONTAINERS:
                return admission.to_view(rt, self._mark_deleting(rt.storage, key))
            return admission.to_view(rt, self._remove(rt.storage, key))

    def delete_collection(self, rt: ResourceType, selection: Selection, options: JSON, *, dry_run: bool) -> list[JSON]:
        with self.lock:
            items, _ = self.select(rt, selection)
            return [
                self.delete(rt, i["metadata"].get("namespace", ""), i["metadata"]["name"], options, dry_run=dry_run)
                for i in items
            ]

    def _mark_deleting(self, storage: str, key: Key) -> JSON:
        current = self.objects[storage][key]
        obj = copy.deepcopy(current)
        meta = obj["metadata"]
        if not meta.get("deletionTimestamp"):
            if meta.get("generation"):
                meta["generation"] += 1
            meta["deletionTimestamp"] = admission.now_rfc3339()
            meta["deletionGracePeriodSeconds"] = 0
            if storage == NAMESPACES:
                obj.setdefault("status", {})["phase"] = "Terminating"
            meta["resourceVersion"] = str(self._bump())
            self.objects[storage][key] = obj
            self._record("MODIFIED", storage, obj, current)
            if storage in CONTAINERS:
                self._empty(obj)
        return self.objects[storage].get(key, obj)

    def _remove(self, storage: str, key: Key) -> JSON:
        obj = copy.deepcopy(self.objects[storage].pop(key))
        obj["metadata"]["resourceVersion"] = str(self._bump())
        self._record("DELETED", storage, obj, None)
        if storage == CRDS:
            self.registry.remove_crd(obj["metadata"]["name"])
        self._reap()
        return obj

    def _contents(self, container: JSON) -> list[tuple[str, Key]]:
        """What a terminating Namespace or CRD still holds."""
        if container["kind"] == "Namespace":
            ns = container["metadata"]["name"]
            return [(s, k) for s, bucket in self.objects.items() for k in bucket if k[0] == ns and s != NAMESPACES]
        spec = container["spec"]
        storage = f"{spec['group']}/{spec['names']['plural']}"
        return [(storage, k) for k in self.objects.get(storage, {})]

    def _empty(self, container: JSON) -> None:
        """What the namespace and CRD-cleanup controllers do: delete everything inside."""
        for storage, key in self._contents(container):
            obj = self.objects.get(storage, {}).get(key)
            if obj is None:
                continue
            if obj["metadata"].get("finalizers"):
                self._mark_deleting(storage, key)
            else:
                self._remove(storage, key)
        self._reap()

    def _reap(self) -> None:
        """Finish terminating Namespaces and CRDs that have become empty: their controllers drop
        their own finalizer, and the object goes when no finalizer is left."""
        for storage, own in ((NAMESPACES, None), (CRDS, admission.CRD_CLEANUP_FINALIZER)):
            for key, obj in list(self.objects.get(storage, {}).items()):
                if not obj["metadata"].get("deletionTimestamp") or self._contents(obj):
                    continue
                finalizers = [f for f in obj["metadata"].get("finalizers") or [] if f != own]
                if finalizers:
                    if finalizers != obj["metadata"].get("finalizers"):
                        updated = copy.deepcopy(obj)
                        updated["metadata"]["finalizers"] = finalizers
                        updated["metadata"]["resourceVersion"] = str(self._bump())
                        self.objects[storage][key] = updated
                        self._record("MODIFIED", storage, updated, obj)
                    continue
                if key in self.objects[storage]:
                    self._remove(storage, key)

    def _serve_crd(self, crd: JSON) -> None:
        from .resources import crd_types

        self.registry.remove_crd(crd["metadata"]["name"])
        for rt in crd_types(crd):
            self.registry.add(rt)
