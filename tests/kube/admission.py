"""What kube-apiserver does to an object between receiving it and storing it: decoding (type
checks, pruning, defaulting), ObjectMeta validation, the built-in types' own preparation and
validation, and the two views of Events.

Called by storage on every write, after pruning and defaulting. Guarantees, as the real registry
strategies do:

- names are DNS-1123 subdomains (Namespaces: labels), label keys and values, annotation keys and
  finalizer names are checked, each failure a ``FieldError`` under ``metadata.*``;
- Secrets: ``stringData`` is folded into base64 ``data`` and dropped, ``type`` defaults to
  ``Opaque`` and cannot change;
- Namespaces get the ``kubernetes`` finalizer, ``phase: Active`` and the
  ``kubernetes.io/metadata.name`` label;
- CRDs are checked (name is ``plural.group``, scope, one storage version, a schema per version) and
  get the ``customresourcecleanup.apiextensions.k8s.io`` finalizer and an Established status;
- Leases' and Events' micro-time fields are re-rendered as kube-apiserver renders them
  (``2006-01-02T15:04:05.000000Z``);
- ``events.k8s.io/v1`` Events are stored in their core ``v1`` form and converted on the way out,
  so both APIs see the same objects, and the ``events.k8s.io`` required fields are enforced.

Deviation: ``immutable: true`` ConfigMaps and Secrets are not protected against edits.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from datetime import UTC, datetime
from typing import Any

from . import schema
from .errors import FieldError, bad_request, forbidden, invalid, not_supported, required
from .gofmt import normalize
from .resources import ResourceType
from .tables import parse_time

JSON = dict[str, Any]

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
    "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
_QUALIFIED_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)

CRD_CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


def name_errors(name: str, *, label: bool, path: str = "metadata.name") -> list[FieldError]:
    if label:
        if len(name) > 63:
            return [invalid(path, name, "must be no more than 63 characters")]
        return [] if _DNS1123_LABEL.match(name) else [invalid(path, name, LABEL_MSG)]
    if len(name) > 253:
        return [invalid(path, name, "must be no more than 253 characters")]
    return [] if _DNS1123_SUBDOMAIN.match(name) else [invalid(path, name, SUBDOMAIN_MSG)]


def _qualified_name_errors(path: str, key: str) -> list[FieldError]:
    prefix, _, name = key.rpartition("/")
    errors = []
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        errors.append(invalid(path, key, "prefix part " + SUBDOMAIN_MSG))
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        errors.append(invalid(path, key, _QUALIFIED_MSG))
    return errors


def metadata_errors(rt: ResourceType, meta: JSON) -> list[FieldError]:
    """ValidateObjectMeta for a create or an update."""
    errors: list[FieldError] = []
    name = meta.get("name", "")
    if not name:
        errors.append(required("metadata.name", "name or generateName is required"))
    else:
        errors += name_errors(name, label=rt.kind == "Namespace" and rt.group == "")
    for key, value in (meta.get("labels") or {}).items():
        errors += _qualified_name_errors("metadata.labels", key)
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            errors.append(invalid("metadata.labels", value, _LABEL_VALUE_MSG))
    for key in meta.get("annotations") or {}:
        errors += _qualified_name_errors("metadata.annotations", key)
    for i, finalizer in enumerate(meta.get("finalizers") or []):
        errors += _qualified_name_errors(f"metadata.finalizers[{i}]", str(finalizer))
    return errors


def metadata_update_errors(old: JSON, new: JSON) -> list[FieldError]:
    """ValidateObjectMetaUpdate's rules the clients here can trip."""
    errors: list[FieldError] = []
    old_meta, new_meta = old["metadata"], new["metadata"]
    if new_meta.get("uid") != old_meta.get("uid"):
        errors.append(invalid("metadata.uid", new_meta.get("uid"), "field is immutable"))
    if old_meta.get("deletionTimestamp"):
        added = [f for f in new_meta.get("finalizers") or [] if f not in (old_meta.get("finalizers") or [])]
        if added:
            quoted = ", ".join(f'"{f}"' for f in added)
            errors.append(
                forbidden(
                    "metadata.finalizers",
                    f"no new finalizers can be added if the object is being deleted, found new finalizers "
                    f"[]string{{{quoted}}}",
                )
            )
    return errors


# --- decoding ------------------------------------------------------------------------------------


def decode(rt: ResourceType, body: Any, namespace: str, validation: str) -> tuple[JSON, list[str]]:
    """What kube-apiserver's decoder does to a request body for ``rt``: the type checks, pruning
    (with ``fieldValidation``: Strict rejects unknown fields, Warn returns them as warnings) and
    defaulting. Raises 400 BadRequest as the decoder does."""
    if not isinstance(body, dict):
        raise bad_request(f"the body of the request was not a {rt.kind} object")
    obj = normalize(body)
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if rt.custom and (not api_version or not kind):
        missing = "Kind" if not kind else "Version"
        raise bad_request(f"Object '{missing}' is missing in '{json.dumps(body, separators=(',', ':'))}'")
    if (api_version and api_version != rt.group_version) or (kind and kind != rt.kind):
        raise bad_request(
            f"the API version in the data ({api_version}) does not match the expected API version ({rt.group_version})"
            if api_version != rt.group_version
            else f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
        )
    obj["apiVersion"], obj["kind"] = rt.group_version, rt.kind
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise bad_request(
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: metadata must be an object'
        )
    meta.pop("managedFields", None)
    if rt.namespaced:
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    dropped = schema.prune(obj, rt.schema)
    if dropped and validation == "Strict":
        fields = ", ".join(f'unknown field "{d}"' for d in dropped)
        raise bad_request(
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: strict decoding error: {fields}'
        )
    warnings = [f'unknown field "{d}"' for d in dropped] if validation != "Ignore" else []
    schema.default(obj, rt.schema)
    if not rt.custom:
        # Typed decoding: a wrongly typed field fails the decode (400), it is not a 422.
        type_errors = [e for e in schema.validate(obj, rt.schema) if e.type == "TypeInvalid"]
        if type_errors:
            raise bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {type_errors[0].detail}'
            )
    return obj, warnings


# --- times ----------------------------------------------------------------------------------------


def _render_time(value: Any, micro: bool) -> Any:
    if not isinstance(value, str):
        return value
    when = parse_time(value)
    if when is None:
        return value
    when = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def _rerender(obj: JSON, path: tuple[str, ...], micro: bool) -> None:
    node: Any = obj
    for p in path[:-1]:
        node = node.get(p) if isinstance(node, dict) else None
    if isinstance(node, dict) and node.get(path[-1]) is not None:
        node[path[-1]] = _render_time(node[path[-1]], micro)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- Events: two views of one object ----------------------------------------------------------------

_EVENT_FIELDS = (
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
)


def events_v1_to_core(obj: JSON) -> JSON:
    core = copy.deepcopy(obj)
    core["apiVersion"], core["kind"] = "v1", "Event"
    for new, old in _EVENT_FIELDS:
        if new in core:
            core[old] = core.pop(new)
    return core


def core_to_events_v1(obj: JSON) -> JSON:
    view = copy.deepcopy(obj)
    view["apiVersion"], view["kind"] = "events.k8s.io/v1", "Event"
    for new, old in _EVENT_FIELDS:
        if old in view:
            view[new] = view.pop(old)
    return view


def to_view(rt: ResourceType, stored: JSON) -> JSON:
    """The stored object as ``rt`` shows it (a copy)."""
    if rt.group == "events.k8s.io":
        return core_to_events_v1(stored)
    return copy.deepcopy(stored)


def to_storage(rt: ResourceType, obj: JSON) -> JSON:
    if rt.group == "events.k8s.io":
        return events_v1_to_core(obj)
    return obj


# --- per-type preparation and validation -----------------------------------------------------------


def prepare(rt: ResourceType, obj: JSON, old: JSON | None) -> list[FieldError]:
    """Type-specific defaulting and validation of ``obj`` (in ``rt``'s view, before conversion to
    storage); ``old`` is the stored object on an update. Returns the validation errors."""
    key = (rt.group, rt.plural)
    if key == ("", "secrets"):
        return _secret(obj, old)
    if key == ("", "namespaces"):
        return _namespace(obj, old)
    if key == ("coordination.k8s.io", "leases"):
        for f in ("acquireTime", "renewTime"):
            _rerender(obj, ("spec", f), micro=True)
        return []
    if key == ("", "events"):
        return _core_event(obj)
    if key == ("events.k8s.io", "events"):
        return _events_v1(obj, old)
    if key == ("apiextensions.k8s.io", "customresourcedefinitions"):
        return _crd(obj, old)
    return []


def _secret(obj: JSON, old: JSON | None) -> list[FieldError]:
    string_data = obj.pop("stringData", None) or {}
    if string_data:
        data = obj.setdefault("data", {})
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()
    obj.setdefault("type", "Opaque")
    if old is not None and obj["type"] != old.get("type", "Opaque"):
        return [invalid("type", obj["type"], "field is immutable")]
    return []


def _namespace(obj: JSON, old: JSON | None) -> list[FieldError]:
    name = obj["metadata"].get("name", "")
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    if old is None:
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}
    return []


def _core_event(obj: JSON) -> list[FieldError]:
    for path, micro in (
        (("eventTime",), True),
        (("series", "lastObservedTime"), True),
        (("firstTimestamp",), False),
        (("lastTimestamp",), False),
    ):
        _rerender(obj, path, micro)
    errors: list[FieldError] = []
    involved_ns = (obj.get("involvedObject") or {}).get("namespace")
    if involved_ns and involved_ns != obj["metadata"].get("namespace"):
        errors.append(invalid("involvedObject.namespace", involved_ns, "does not match event.namespace"))
    if obj.get("type") and obj["type"] not in ("Normal", "Warning"):
        errors.append(not_supported("type", obj["type"], ["Normal", "Warning"]))
    return errors


def _events_v1(obj: JSON, old: JSON | None) -> list[FieldError]:
    for path in (("eventTime",), ("series", "lastObservedTime")):
        _rerender(obj, path, micro=True)
    for path in (("deprecatedFirstTimestamp",), ("deprecatedLastTimestamp",)):
        _rerender(obj, path, micro=False)
    errors: list[FieldError] = []
    for f in ("eventTime", "reportingController", "reportingInstance", "action", "reason"):
        if not obj.get(f):
            errors.append(required(f, ""))
    if obj.get("type") not in ("Normal", "Warning"):
        errors.append(not_supported("type", obj.get("type", ""), ["Normal", "Warning"]))
    if len(obj.get("note") or "") > 1024:
        errors.append(FieldError("TooLong", "note", obj["note"], "may not be longer than 1024"))
    return errors


def _crd(obj: JSON, old: JSON | None) -> list[FieldError]:
    errors: list[FieldError] = []
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group", "")
    if not group:
        errors.append(required("spec.group", ""))
    for f in ("plural", "kind"):
        if not names.get(f):
            errors.append(required(f"spec.names.{f}", ""))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        errors.append(not_supported("spec.scope", spec.get("scope", ""), ["Cluster", "Namespaced"]))
    expected = f"{names.get('plural', '')}.{group}"
    if obj["metadata"].get("name") != expected:
        errors.append(invalid("metadata.name", obj["metadata"].get("name"), 'must be spec.names.plural+"."+spec.group'))
    versions = spec.get("versions") or []
    if not versions:
        errors.append(required("spec.versions", "must have exactly one version marked as storage version"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        errors.append(invalid("spec.versions", versions, "must have exactly one version marked as storage version"))
    for i, v in enumerate(versions):
        if not ((v.get("schema") or {}).get("openAPIV3Schema")):
            errors.append(required(f"spec.versions[{i}].schema.openAPIV3Schema", "schemas are required"))
    if old is not None and old.get("spec", {}).get("scope") != spec.get("scope"):
        errors.append(invalid("spec.scope", spec.get("scope"), "field is immutable"))
    finalizers = obj["metadata"].setdefault("finalizers", [])
    if old is None and CRD_CLEANUP_FINALIZER not in finalizers:
        finalizers.append(CRD_CLEANUP_FINALIZER)
    obj["spec"].setdefault("conversion", {"strategy": "None"})
    stored = [v["name"] for v in versions if v.get("storage")]
    previous = (old or {}).get("status", {}).get("storedVersions", [])
    condition_time = (old or {}).get("status", {}).get("conditions", [{}])[0].get("lastTransitionTime") or now_rfc3339()
    # The real apiextensions controllers set these asynchronously; here the CRD is Established at once.
    obj["status"] = {
        "acceptedNames": copy.deepcopy(names),
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": condition_time,
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": condition_time,
            },
        ],
        "storedVersions": previous + [v for v in stored if v not in previous],
    }
    return errors
