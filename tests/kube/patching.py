"""The three patch formats kube-apiserver applies: JSON merge patch (RFC 7386), JSON patch
(RFC 6902) and strategic merge patch.

Called by storage for PATCH requests, on a deep copy of the stored object. Guarantees: merge and
JSON patch follow their RFCs (as evanphx/json-patch does for kube-apiserver); a malformed patch
raises ``ApiError`` 400 BadRequest and a JSON patch that fails to apply (a failed ``test``, a missing
path) 422, as the real handler does.

Deviation: strategic merge patch (served for built-in types only; custom resources get 415, as
from the real server) knows just the merge strategies of ObjectMeta's lists (``finalizers`` merged
as a set, ``ownerReferences`` merged by ``uid``); every other list is replaced, which is what the
built-in types served here (ConfigMap, Secret, Event, Lease, Namespace, CRD) declare anyway apart
from a few nested CRD lists. The ``$patch``, ``$retainKeys``, ``$setElementOrder/`` and
``$deleteFromPrimitiveList/`` directives are honoured.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import ApiError, bad_request


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- RFC 6902 -------------------------------------------------------------------------------------


def _unprocessable(message: str) -> ApiError:
    return ApiError(422, "Invalid", message)


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f'the JSON pointer "{path}" does not start with "/"')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str], op: str, path: str) -> Any:
    node = doc
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise _unprocessable(f'{op} operation does not apply: doc is missing path: "{path}": missing value')
    return node


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 applied to a copy of ``target``."""
    if not isinstance(operations, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation:
            raise bad_request("Unexpected kind: <nil>")
        op = operation["op"]
        path = operation.get("path", "")
        parts = _pointer(path)
        if op in ("add", "replace", "test") and "value" not in operation:
            raise bad_request(f"{op} operation has no value")
        if op == "test":
            if _walk(doc, parts, op, path) != operation["value"]:
                raise _unprocessable(f"testing value {path} failed: test failed")
            continue
        if op in ("move", "copy"):
            from_parts = _pointer(operation.get("from", ""))
            value = copy.deepcopy(_walk(doc, from_parts, op, operation.get("from", "")))
            if op == "move":
                doc = _remove(doc, from_parts, op, operation.get("from", ""))
            doc = _add(doc, parts, value, op, path)
            continue
        if op == "add":
            doc = _add(doc, parts, copy.deepcopy(operation["value"]), op, path)
        elif op == "remove":
            doc = _remove(doc, parts, op, path)
        elif op == "replace":
            _walk(doc, parts, op, path)
            doc = _remove(doc, parts, op, path)
            doc = _add(doc, parts, copy.deepcopy(operation["value"]), op, path)
        else:
            raise bad_request(f"Unexpected kind: {op}")
    return doc


def _add(doc: Any, parts: list[str], value: Any, op: str, path: str) -> Any:
    if not parts:
        return value
    parent = _walk(doc, parts[:-1], op, path)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise _unprocessable(f'{op} operation does not apply: doc is missing path: "{path}": invalid index')
    else:
        raise _unprocessable(f'{op} operation does not apply: doc is missing path: "{path}"')
    return doc


def _remove(doc: Any, parts: list[str], op: str, path: str) -> Any:
    if not parts:
        return None
    parent = _walk(doc, parts[:-1], op, path)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        del parent[int(last)]
    else:
        raise _unprocessable(f'{op} operation does not apply: doc is missing path: "{path}": missing value')
    return doc


# --- strategic merge patch ------------------------------------------------------------------------

# ObjectMeta lists that carry a patch strategy: path -> merge key (None: a list of primitives).
_MERGE_LISTS: dict[tuple[str, ...], str | None] = {
    ("metadata", "finalizers"): None,
    ("metadata", "ownerReferences"): "uid",
}


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A strategic merge patch of a built-in object (see the module docstring)."""
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch must be a JSON object")
    return _smp(target if isinstance(target, dict) else {}, patch, ())


def _smp(target: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return {}
    result = copy.deepcopy(target)
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _smp(result[key], value, (*path, key))
        elif isinstance(value, dict):
            result[key] = _smp({}, value, (*path, key))
        elif isinstance(value, list) and (*path, key) in _MERGE_LISTS:
            result[key] = _merge_list(result.get(key) or [], value, _MERGE_LISTS[(*path, key)])
        else:
            result[key] = copy.deepcopy(value)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(current: list[Any], patch: list[Any], key: str | None) -> list[Any]:
    result = copy.deepcopy(current)
    if key is None:
        for item in patch:
            if item not in result:
                result.append(item)
        return result
    for item in patch:
        if not isinstance(item, dict):
            continue
        if item.get("$patch") == "delete":
            result = [r for r in result if not (isinstance(r, dict) and r.get(key) == item.get(key))]
            continue
        for i, existing in enumerate(result):
            if isinstance(existing, dict) and existing.get(key) == item.get(key):
                result[i] = _smp(existing, item, ())
                break
        else:
            result.append(copy.deepcopy(item))
    return result
