"""API errors of the test Kubernetes API server, worded the way kube-apiserver words them.

Called by every other module of the server (storage, schema validation, handlers). Guarantees:
every failure a client can see is an ``ApiError`` that renders as a ``kind: Status`` object with the
reason, code, message and details (``name``/``group``/``kind``, ``causes`` with ``field``,
``message`` and ``reason``) that k8s.io/apimachinery's ``errors`` package would produce, so clients
that branch on them (kubectl's error printer, client-go's ``IsConflict``, the python client's
``ApiException.status``) see the real thing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .gofmt import go_repr

JSON = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    """A qualified resource or kind as the messages name it: ``workflows.hpc.reconciler.dev`` or
    ``secrets`` (core), ``Workflow.hpc.reconciler.dev`` or ``ConfigMap``."""

    group: str
    name: str

    def __str__(self) -> str:
        return f"{self.name}.{self.group}" if self.group else self.name


# field.ErrorType -> (the CauseType in the Status, the text ErrorBody starts with)
_FIELD_TYPES: dict[str, tuple[str, str]] = {
    "Required": ("FieldValueRequired", "Required value"),
    "Invalid": ("FieldValueInvalid", "Invalid value"),
    "TypeInvalid": ("FieldValueTypeInvalid", "Invalid value"),
    "NotSupported": ("FieldValueNotSupported", "Unsupported value"),
    "Forbidden": ("FieldValueForbidden", "Forbidden"),
    "TooLong": ("FieldValueTooLong", "Too long"),
    "TooMany": ("FieldValueTooMany", "Too many"),
    "Duplicate": ("FieldValueDuplicate", "Duplicate value"),
    "NotFound": ("FieldValueNotFound", "Not found"),
}

_OMIT = object()


@dataclass(frozen=True)
class FieldError:
    """One ``field.Error``: its ``body()`` is ``ErrorBody()`` (the value is shown for every type but
    Required, Forbidden and TooLong, as apimachinery does)."""

    type: str
    field: str
    value: Any = _OMIT
    detail: str = ""

    def body(self) -> str:
        text = _FIELD_TYPES[self.type][1]
        if self.type not in ("Required", "Forbidden", "TooLong") and self.value is not _OMIT:
            text += f": {go_repr(self.value)}"
        if self.detail:
            text += f": {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"

    def cause(self) -> JSON:
        return {"reason": _FIELD_TYPES[self.type][0], "message": self.body(), "field": self.field}


def required(path: str, detail: str = "") -> FieldError:
    return FieldError("Required", path, _OMIT, detail)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("Invalid", path, value, detail)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError("Forbidden", path, _OMIT, detail)


def not_supported(path: str, value: Any, allowed: list[Any]) -> FieldError:
    quoted = [json.dumps(v) if isinstance(v, str) else json.dumps(v, separators=(",", ":")) for v in allowed]
    return FieldError("NotSupported", path, value, "supported values: " + ", ".join(quoted) if quoted else "")


class ApiError(Exception):
    """A failed request: ``status`` is the ``Status`` body, ``code`` its HTTP code."""

    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> JSON:
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(resource: Resource, name: str) -> JSON:
    # StatusDetails.kind holds the resource here, not the kind: apimachinery's own quirk.
    details: JSON = {"name": name}
    if resource.group:
        details["group"] = resource.group
    details["kind"] = resource.name
    return details


def not_found(resource: Resource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{resource} "{name}" not found', _details(resource, name))


def no_such_resource() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(resource: Resource, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{resource} "{name}" already exists', _details(resource, name))


CONFLICT_MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"


def conflict(resource: Resource, name: str, why: str = CONFLICT_MODIFIED) -> ApiError:
    return ApiError(
        409, "Conflict", f'Operation cannot be fulfilled on {resource} "{name}": {why}', _details(resource, name)
    )


def invalid_object(kind: Resource, name: str, errors: list[FieldError]) -> ApiError:
    """``errors.NewInvalid``: one error inline, several as ``[a, b]`` (duplicates dropped)."""
    unique: list[FieldError] = []
    seen: set[str] = set()
    for err in errors:
        if str(err) not in seen:
            seen.add(str(err))
            unique.append(err)
    if not unique:
        message = f'{kind} "{name}" is invalid'
    elif len(unique) == 1:
        message = f'{kind} "{name}" is invalid: {unique[0]}'
    else:
        message = f'{kind} "{name}" is invalid: [' + ", ".join(str(e) for e in unique) + "]"
    details: JSON = {"name": name}
    if kind.group:
        details["group"] = kind.group
    details["kind"] = kind.name
    details["causes"] = [e.cause() for e in errors]
    return ApiError(422, "Invalid", message, details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def forbidden_request(message: str, resource: Resource | None = None, name: str = "") -> ApiError:
    return ApiError(403, "Forbidden", message, _details(resource, name) if resource else None)


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> ApiError:
    return ApiError(405, "MethodNotAllowed", message, {})


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: {', '.join(accepted)}",
        {"causes": [{"reason": "UnsupportedMediaType", "message": content_type}]} if content_type else None,
    )


def not_acceptable(message: str) -> ApiError:
    return ApiError(406, "NotAcceptable", message)
