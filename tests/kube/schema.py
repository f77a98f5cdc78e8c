"""Structural-schema processing of objects: pruning, defaulting and validation, as the
apiextensions-apiserver does it for custom resources.

Called by storage on every create, update and patch (main resource and status subresource), with
the CRD's ``openAPIV3Schema`` (or a built-in type's small schema). Guarantees, in the order the real
server applies them:

1. ``prune`` drops fields the schema does not declare (unless ``x-kubernetes-preserve-unknown-fields``)
   and reports their paths, for ``fieldValidation=Strict`` (reject) or ``Warn`` (warning headers);
   at the root ``apiVersion``, ``kind`` and ``metadata`` are kept, ``metadata`` reduced to the fields
   of ObjectMeta.
2. ``default`` removes ``null`` from fields that are not ``nullable`` and fills in ``default`` values
   where a field is absent, walking into the values it filled in.
3. ``validate`` returns ``FieldError``s worded as kube-openapi words them after the apiextensions
   conversion to ``field.Error`` (``spec.tasks[0].name in body should match '^...$'``).

Deviations: ``x-kubernetes-validations`` (CEL rules), ``allOf``/``anyOf``/``oneOf``/``not`` and the
list/map-type extensions (``x-kubernetes-list-type`` uniqueness) are not evaluated; of the string
formats only ``date-time``, ``date``, ``byte`` and ``uuid`` are checked.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from datetime import datetime
from typing import Any

from .errors import FieldError, invalid, not_supported, required
from .gofmt import go_number, json_type

Schema = dict[str, Any]

OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")


def child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _preserves(schema: Schema) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


# --- pruning -------------------------------------------------------------------------------------


def prune(obj: dict[str, Any], schema: Schema) -> list[str]:
    """Prune ``obj`` (a whole object) in place; return the dropped fields' paths."""
    dropped: list[str] = []
    for key in list(obj):
        if key in ("apiVersion", "kind"):
            continue
        if key == "metadata":
            meta = obj["metadata"]
            if isinstance(meta, dict):
                for mkey in list(meta):
                    if mkey not in OBJECT_META_FIELDS:
                        dropped.append(f"metadata.{mkey}")
                        del meta[mkey]
            continue
        sub = schema.get("properties", {}).get(key)
        if sub is None and not _preserves(schema):
            dropped.append(key)
            del obj[key]
        elif sub is not None:
            _prune_value(obj[key], sub, key, dropped)
    return dropped


def _prune_value(value: Any, schema: Schema, path: str, dropped: list[str]) -> None:
    if isinstance(value, dict):
        props: dict[str, Schema] = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        for key in list(value):
            if key in props:
                _prune_value(value[key], props[key], child(path, key), dropped)
            elif isinstance(additional, dict):
                _prune_value(value[key], additional, child(path, key), dropped)
            elif additional is True or _preserves(schema):
                continue
            elif schema.get("x-kubernetes-embedded-resource") and key in ("apiVersion", "kind", "metadata"):
                # An embedded object keeps its type and metadata, as the root does.
                continue
            else:
                dropped.append(child(path, key))
                del value[key]
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _prune_value(item, schema["items"], f"{path}[{i}]", dropped)


# --- defaulting ----------------------------------------------------------------------------------


def default(obj: Any, schema: Schema) -> None:
    """Drop non-nullable nulls and apply defaults in place (see the module docstring)."""
    if isinstance(obj, dict):
        props: dict[str, Schema] = schema.get("properties", {})
        for key, sub in props.items():
            if key in obj and obj[key] is None and not sub.get("nullable"):
                del obj[key]
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
        for key, value in obj.items():
            if key in props:
                default(value, props[key])
            elif isinstance(schema.get("additionalProperties"), dict):
                default(value, schema["additionalProperties"])
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for item in obj:
            default(item, schema["items"])


# --- validation ----------------------------------------------------------------------------------


def validate(obj: Any, schema: Schema, path: str = "") -> list[FieldError]:
    """Validate ``obj`` against ``schema``; the root's ``metadata`` is left to metadata validation."""
    errors: list[FieldError] = []
    if path == "" and isinstance(obj, dict):
        trimmed = {k: v for k, v in obj.items() if k != "metadata"}
        props = {k: v for k, v in schema.get("properties", {}).items() if k != "metadata"}
        _validate(trimmed, {**schema, "properties": props}, path, errors)
    else:
        _validate(obj, schema, path, errors)
    return errors


def _type_error(path: str, value: Any, expected: str) -> FieldError:
    return FieldError("TypeInvalid", path, value, f'{path} in body must be of type {expected}: "{json_type(value)}"')


def _type_ok(value: Any, expected: str) -> bool:
    if expected == "string":
        return isinstance(value, str)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected == "array":
        return isinstance(value, list)
    if expected == "object":
        return isinstance(value, dict)
    return True


def _validate(value: Any, schema: Schema, path: str, errors: list[FieldError]) -> None:
    if value is None:
        if not schema.get("nullable") and schema.get("type"):
            errors.append(_type_error(path, value, schema["type"]))
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or _type_ok(value, "integer")):
            errors.append(_type_error(path, value, "integer,string"))
            return
    elif schema.get("type") and not _type_ok(value, schema["type"]):
        errors.append(_type_error(path, value, schema["type"]))
        return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(not_supported(path, value, list(schema["enum"])))
    if isinstance(value, str):
        _validate_string(value, schema, path, errors)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _validate_number(value, schema, path, errors)
    elif isinstance(value, list):
        _validate_array(value, schema, path, errors)
    elif isinstance(value, dict):
        _validate_object(value, schema, path, errors)


def _validate_string(value: str, schema: Schema, path: str, errors: list[FieldError]) -> None:
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        # apiextensions maps kube-openapi's TooLong to field.TooLongMaxLength.
        errors.append(FieldError("TooLong", path, value, f"may not be longer than {schema['maxLength']}"))
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(invalid(path, value, f"{path} in body should be at least {schema['minLength']} chars long"))
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        errors.append(invalid(path, value, f"{path} in body should match '{schema['pattern']}'"))
    fmt = schema.get("format")
    if fmt and not _format_ok(value, fmt):
        errors.append(FieldError("TypeInvalid", path, value, f'{path} in body must be of type {fmt}: "{value}"'))


def _format_ok(value: str, fmt: str) -> bool:
    if fmt == "date-time":
        return _RFC3339.match(value) is not None
    if fmt == "date":
        try:
            datetime.strptime(value, "%Y-%m-%d")
        except ValueError:
            return False
        return True
    if fmt == "byte":
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        return True
    if fmt == "uuid":
        return _UUID.match(value) is not None
    return True


def _validate_number(value: float, schema: Schema, path: str, errors: list[FieldError]) -> None:
    if "minimum" in schema:
        bound = schema["minimum"]
        if schema.get("exclusiveMinimum") and value <= bound:
            errors.append(invalid(path, value, f"{path} in body should be greater than {go_number(bound)}"))
        elif value < bound:
            errors.append(invalid(path, value, f"{path} in body should be greater than or equal to {go_number(bound)}"))
    if "maximum" in schema:
        bound = schema["maximum"]
        if schema.get("exclusiveMaximum") and value >= bound:
            errors.append(invalid(path, value, f"{path} in body should be less than {go_number(bound)}"))
        elif value > bound:
            errors.append(invalid(path, value, f"{path} in body should be less than or equal to {go_number(bound)}"))
    if "multipleOf" in schema and schema["multipleOf"] and (value / schema["multipleOf"]) % 1 != 0:
        errors.append(invalid(path, value, f"{path} in body should be a multiple of {go_number(schema['multipleOf'])}"))


def _validate_array(value: list[Any], schema: Schema, path: str, errors: list[FieldError]) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(invalid(path, value, f"{path} in body should have at least {schema['minItems']} items"))
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(FieldError("TooMany", path, len(value), f"must have at most {schema['maxItems']} items"))
    if schema.get("uniqueItems"):
        seen: list[Any] = []
        for item in value:
            if item in seen:
                errors.append(invalid(path, value, f"{path} in body shouldn't contain duplicates"))
                break
            seen.append(item)
    if isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _validate(item, schema["items"], f"{path}[{i}]", errors)


def _validate_object(value: dict[str, Any], schema: Schema, path: str, errors: list[FieldError]) -> None:
    for name in schema.get("required", []):
        if name not in value:
            errors.append(required(child(path, name)))
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        errors.append(invalid(path, value, f"{path} in body should have at least {schema['minProperties']} properties"))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errors.append(invalid(path, value, f"{path} in body should have at most {schema['maxProperties']} properties"))
    props: dict[str, Schema] = schema.get("properties", {})
    additional = schema.get("additionalProperties")
    for key, item in value.items():
        if key in props:
            _validate(item, props[key], child(path, key), errors)
        elif isinstance(additional, dict):
            _validate(item, additional, child(path, key), errors)
